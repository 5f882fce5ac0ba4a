// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ITierGate: what the market asks of the zero-knowledge tier gate.
/// @notice The market calls `consume` when an order claims a tier above 0. The gate checks a
/// proof of membership in the tier group committed for `epoch`, bound to this chain, the gate's
/// caller (the market), `orderDigest` and `beneficiary`, spends its nullifier, and returns it.
/// It reverts with a named custom error on any failure. `proof` carries the ring and the
/// signature in the encoding documented in docs/zk.md.
interface ITierGate {
    function consume(
        uint8 tier,
        uint64 epoch,
        bytes32 orderDigest,
        address beneficiary,
        bytes calldata proof
    ) external returns (bytes32 nullifier);

    function currentEpoch() external view returns (uint64);
}
