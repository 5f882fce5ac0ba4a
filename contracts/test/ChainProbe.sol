// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ChainProbe: a small contract the chain conformance suite and `cona bench chain` use.
/// @notice Test-only. It exercises every path the chain port must support: deploy with
/// constructor arguments, calls, state-changing transactions, indexed events, value transfer,
/// custom-error reverts with arguments, string reverts, panics and block time.
contract ChainProbe {
    error NotOwner(address caller, uint256 code);
    error TooLarge(uint256 value, uint256 limit);

    event Bumped(address indexed by, uint256 indexed counter, uint256 value);
    event Received(address indexed from, uint256 amount);

    address public immutable owner;
    uint256 public immutable limit;
    uint256 public counter;
    mapping(address => uint256) public total;

    constructor(uint256 limit_) {
        owner = msg.sender;
        limit = limit_;
    }

    /// Increments the counter by `value`; reverts with TooLarge above the limit.
    function bump(uint256 value) external returns (uint256) {
        if (value > limit) revert TooLarge(value, limit);
        counter += 1;
        total[msg.sender] += value;
        emit Bumped(msg.sender, counter, value);
        return counter;
    }

    function ownerOnly(uint256 code) external view returns (bool) {
        if (msg.sender != owner) revert NotOwner(msg.sender, code);
        return true;
    }

    function fail(string calldata reason) external pure {
        require(false, reason);
    }

    function divide(uint256 a, uint256 b) external pure returns (uint256) {
        return a / b;
    }

    function deposit() external payable {
        emit Received(msg.sender, msg.value);
    }

    function now_() external view returns (uint256) {
        return block.timestamp;
    }
}
