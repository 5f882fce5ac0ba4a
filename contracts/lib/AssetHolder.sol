// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title AssetHolder: moves the payment asset in and out, for ETH and for one ERC-20 alike.
/// @notice `asset == address(0)` means native ETH. Funds come in with `_pullIn` (msg.value for
/// ETH, transferFrom for a token) and leave only with `_payOut` (a pull-payment `withdraw` calls
/// it for the caller itself). Balances of the contracts that inherit it are tracked by them.
abstract contract AssetHolder {
    using SafeERC20 for IERC20;

    error WrongEtherAmount(uint256 sent, uint256 expected);
    error EtherNotAccepted();
    error TransferFailed(address to, uint256 amount);
    error ZeroAmount();

    /// @notice The payment asset: address(0) for native ETH, else an ERC-20.
    address public immutable asset;

    constructor(address asset_) {
        asset = asset_;
    }

    function _pullIn(address from, uint256 amount) internal {
        if (amount == 0) revert ZeroAmount();
        if (asset == address(0)) {
            if (msg.value != amount) revert WrongEtherAmount(msg.value, amount);
        } else {
            if (msg.value != 0) revert EtherNotAccepted();
            IERC20(asset).safeTransferFrom(from, address(this), amount);
        }
    }

    function _payOut(address to, uint256 amount) internal {
        if (asset == address(0)) {
            (bool ok, ) = payable(to).call{value: amount}("");
            if (!ok) revert TransferFailed(to, amount);
        } else {
            IERC20(asset).safeTransfer(to, amount);
        }
    }

    function _held() internal view returns (uint256) {
        return asset == address(0) ? address(this).balance : IERC20(asset).balanceOf(address(this));
    }
}
