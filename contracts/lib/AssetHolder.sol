// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title AssetHolder: moves the payment asset in and out, for ETH and for one ERC-20 alike.
/// @notice `asset == address(0)` means native ETH. Funds come in with `_pullIn` (msg.value for
/// ETH, transferFrom for a token) and leave only with `_payOut` (a pull-payment `withdraw` calls
/// it for the caller itself). Balances of the contracts that inherit it are tracked by them.
/// A token that delivers less than was sent (a fee-on-transfer token) is credited only what
/// arrived: `_pullIn` returns the balance increase, never the nominal amount, so the books
/// (`held == owed`) stay exact. Rebasing tokens change balances without transfers and cannot be
/// kept exact by any ledger; they are not supported (docs/trust.md).
abstract contract AssetHolder {
    using SafeERC20 for IERC20;

    /// @notice Where burned value goes: an address nobody holds a key to.
    address public constant BURN = 0x000000000000000000000000000000000000dEaD;

    error WrongEtherAmount(uint256 sent, uint256 expected);
    error EtherNotAccepted();
    error TransferFailed(address to, uint256 amount);
    error ZeroAmount();
    error NothingArrived(uint256 sent);

    /// @notice The payment asset: address(0) for native ETH, else an ERC-20.
    address public immutable asset;

    constructor(address asset_) {
        asset = asset_;
    }

    /// @dev Takes `amount` from `from` and returns what actually arrived.
    function _pullIn(address from, uint256 amount) internal returns (uint256 received) {
        if (amount == 0) revert ZeroAmount();
        if (asset == address(0)) {
            if (msg.value != amount) revert WrongEtherAmount(msg.value, amount);
            return amount;
        }
        if (msg.value != 0) revert EtherNotAccepted();
        uint256 before = IERC20(asset).balanceOf(address(this));
        IERC20(asset).safeTransferFrom(from, address(this), amount);
        received = IERC20(asset).balanceOf(address(this)) - before;
        // slither-disable-next-line incorrect-equality a zero check on an amount, not a comparison with a balance
        if (received == 0) revert NothingArrived(amount);
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
