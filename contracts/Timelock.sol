// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

/// @title Timelock: the admin of the market's roles and settings.
/// @notice OpenZeppelin's TimelockController, unchanged. The market, the registry and the tier gate
/// give their DEFAULT_ADMIN_ROLE (role grants) and their settings roles to it, so every such change
/// is scheduled in public (`CallScheduled`) and can execute only `minDelay` seconds later: users see
/// it coming and can leave first. The deployment chooses the delay (0 on a local development chain,
/// at least a day elsewhere); the operator's key proposes and executes.
contract Timelock is TimelockController {
    /// @param minDelay seconds between scheduling and execution
    /// @param proposers who may schedule (and cancel)
    /// @param executors who may execute once the delay has passed
    constructor(uint256 minDelay, address[] memory proposers, address[] memory executors)
        TimelockController(minDelay, proposers, executors, address(0))
    {}
}
