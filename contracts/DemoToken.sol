// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title DemoToken: the ERC-20 payment asset for local chains (never deploy it on a real network).
/// @notice The owner mints to test accounts; CONA's market accepts it when deployed with its address.
contract DemoToken is ERC20, Ownable {
    constructor(address owner_) ERC20("CONA Demo Credit", "CDC") Ownable(owner_) {}

    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
