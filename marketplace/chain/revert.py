"""Revert decoding: raw revert bytes to ``Contract.ErrorName(arg=value, ...)``.

The decoder knows every custom error in the compiled artifacts, plus Solidity's
built-in ``Error(string)`` and ``Panic(uint256)``. Decoding never fails: bytes it
cannot decode are reported as such, with their selector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from eth_abi import decode as abi_decode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from marketplace.errors import TransactionReverted

PANIC_CODES = {
    0x00: "generic compiler panic",
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "corrupt storage byte array",
    0x31: "pop on empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to a zero-initialised internal function",
}

ERROR_STRING = bytes.fromhex("08c379a0")
PANIC = bytes.fromhex("4e487b71")


def canonical_type(inp: dict[str, Any]) -> str:
    """ABI type string, expanding tuples the way selectors need."""
    t = inp["type"]
    if t.startswith("tuple"):
        inner = ",".join(canonical_type(c) for c in inp.get("components", []))
        return f"({inner}){t[5:]}"
    return t


@dataclass(frozen=True)
class ErrorDef:
    contract: str
    name: str
    types: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def qualified(self) -> str:
        return f"{self.contract}.{self.name}"


@dataclass(frozen=True)
class DecodedRevert:
    name: str  # "ComputeMarket.NotOrderOwner", "Error", "Panic", or "unknown"
    args: dict[str, Any]
    raw: bytes

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={_fmt(v)}" for k, v in self.args.items())
        return f"{self.name}({inner})"


def _fmt(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str):
        return value if value.startswith("0x") else repr(value)
    return str(value)


class RevertDecoder:
    """Maps 4-byte selectors to custom errors found in contract ABIs."""

    def __init__(self) -> None:
        self._by_selector: dict[bytes, list[ErrorDef]] = {}

    @classmethod
    def from_abis(cls, abis: Iterable[tuple[str, list[dict[str, Any]]]]) -> "RevertDecoder":
        dec = cls()
        for contract, abi in abis:
            dec.add_abi(contract, abi)
        return dec

    def add_abi(self, contract: str, abi: list[dict[str, Any]]) -> None:
        for item in abi:
            if item.get("type") != "error":
                continue
            types = tuple(canonical_type(i) for i in item.get("inputs", []))
            names = tuple(i.get("name") or f"arg{n}" for n, i in enumerate(item.get("inputs", [])))
            selector = function_signature_to_4byte_selector(f"{item['name']}({','.join(types)})")
            defs = self._by_selector.setdefault(selector, [])
            # the same error declared in several contracts (a shared library) decodes once
            if not any(d.name == item["name"] and d.types == types for d in defs):
                defs.append(ErrorDef(contract, item["name"], types, names))

    def decode(self, data: bytes | None) -> DecodedRevert:
        data = bytes(data or b"")
        if not data:
            return DecodedRevert("revert", {}, data)
        selector, body = data[:4], data[4:]
        try:
            if selector == ERROR_STRING:
                (reason,) = abi_decode(["string"], body)
                return DecodedRevert("Error", {"reason": reason}, data)
            if selector == PANIC:
                (code,) = abi_decode(["uint256"], body)
                return DecodedRevert("Panic", {"code": code, "meaning": PANIC_CODES.get(code, "unknown")}, data)
            for err in self._by_selector.get(selector, []):
                try:
                    values = abi_decode(list(err.types), body)
                except Exception:  # eth_abi raises several types; try the next candidate
                    continue
                args = {n: _normalise(t, v) for n, t, v in zip(err.names, err.types, values)}
                return DecodedRevert(err.qualified, args, data)
        except Exception:  # malformed payload: fall through to "unknown"
            pass
        return DecodedRevert("unknown", {"selector": "0x" + selector.hex(), "data": "0x" + data.hex()}, data)

    def to_exception(self, data: bytes | None, *, context: str, tx_hash: str | None = None) -> TransactionReverted:
        decoded = self.decode(data)
        return TransactionReverted(
            f"{context} reverted: {decoded}",
            error=decoded.name,
            args=decoded.args,
            tx_hash=tx_hash,
        )


def _normalise(abi_type: str, value: Any) -> Any:
    if abi_type == "address" and isinstance(value, str):
        return to_checksum_address(value)
    return value
