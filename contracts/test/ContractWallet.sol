// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

interface IMarketFunds {
    function deposit(uint256 amount) external payable;
    function withdraw(uint256 amount) external;
}

/// @title ContractWallet: a smart-contract wallet for tests (ERC-1271), whose owner key signs for it.
contract ContractWallet is IERC1271 {
    address public immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    receive() external payable {}

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        (address signer, ECDSA.RecoverError err, ) = ECDSA.tryRecover(hash, signature);
        return err == ECDSA.RecoverError.NoError && signer == owner ? IERC1271.isValidSignature.selector : bytes4(0);
    }

    function depositTo(IMarketFunds market, uint256 amount) external {
        require(msg.sender == owner, "owner");
        market.deposit{value: amount}(amount);
    }
}
