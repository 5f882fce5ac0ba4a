// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

interface IDepositor {
    function deposit(uint256 amount) external payable;
    function withdraw(uint256 amount) external;
}

/// @title RefusingReceiver: an account that rejects ETH (test-only). Its withdrawal must revert
/// without losing its balance: pull payments make a refusing receiver harm only itself.
contract RefusingReceiver {
    function fund(IDepositor market) external payable {
        market.deposit{value: msg.value}(msg.value);
    }

    function pull(IDepositor market, uint256 amount) external {
        market.withdraw(amount);
    }

    receive() external payable {
        revert("no thanks");
    }
}
