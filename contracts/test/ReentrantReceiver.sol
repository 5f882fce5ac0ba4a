// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

interface IWithdrawable {
    function deposit(uint256 amount) external payable;
    function withdraw(uint256 amount) external;
}

/// @title ReentrantReceiver: a malicious account for the reentrancy tests (test-only).
/// @notice It deposits into the market, then withdraws; when the ETH arrives it tries to
/// withdraw again from inside `receive`. The market's guard must make the whole withdrawal fail.
contract ReentrantReceiver {
    IWithdrawable public immutable target;
    uint256 public attempts;

    constructor(IWithdrawable target_) {
        target = target_;
    }

    function fund() external payable {
        target.deposit{value: msg.value}(msg.value);
    }

    function attack(uint256 amount) external {
        target.withdraw(amount);
    }

    receive() external payable {
        attempts += 1;
        if (attempts < 3) {
            target.withdraw(msg.value);
        }
    }
}
