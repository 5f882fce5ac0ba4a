"""Signed heartbeats: a provider's "I am alive and running these leases", between LSAs.

Compute LSAs are refreshed every few minutes; a lease needs failure detection in
seconds. So an agent also sends a small heartbeat every ``interval`` seconds, signed
with its on-chain key (EIP-191 ``personal_sign``, so any wallet can check it), and the
engine declares a provider failed when no valid heartbeat arrived for ``miss_limit``
intervals. Detection bound: a provider that dies right after a heartbeat is declared
failed between ``miss_limit * interval`` and ``miss_limit * interval + check_period``
seconds later.

The signed message is fixed text, one field per line, so a human can read what a key
signed::

    CONA heartbeat v1
    provider: 0x<40 hex, checksummed>
    sequence: <uint64>
    timestamp: <unix seconds>
    leases: <comma-separated order ids, ascending, or empty>

Invariants:
- a heartbeat's signer must be its ``provider`` (``verify`` recovers and compares);
- sequences strictly increase per provider (``HeartbeatMonitor.observe`` rejects
  replays and reordering); timestamps too far from the receiver's clock are refused;
- pure: the clock is passed in, nothing here reads time or touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from coincurve import PrivateKey, PublicKey
from eth_utils import keccak, to_checksum_address

from marketplace.errors import DecodeError, Rejected

PREFIX = "CONA heartbeat v1"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    provider: str
    sequence: int
    timestamp: int
    leases: tuple[int, ...] = ()
    signature: bytes = b""

    def message(self) -> bytes:
        leases = ",".join(str(i) for i in sorted(self.leases))
        return (f"{PREFIX}\nprovider: {to_checksum_address(self.provider)}\nsequence: {self.sequence}\n"
                f"timestamp: {self.timestamp}\nleases: {leases}").encode()

    def digest(self) -> bytes:
        msg = self.message()
        return keccak(b"\x19Ethereum Signed Message:\n" + str(len(msg)).encode() + msg)

    def to_dict(self) -> dict[str, object]:
        return {"provider": to_checksum_address(self.provider), "sequence": self.sequence,
                "timestamp": self.timestamp, "leases": sorted(self.leases),
                "signature": "0x" + self.signature.hex()}

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> "Heartbeat":
        """Parse an untrusted dict (an HTTP body); every fault names its field."""
        if not isinstance(raw, dict):
            raise DecodeError("a heartbeat is a JSON object", field="heartbeat")
        try:
            provider = to_checksum_address(str(raw["provider"]))
        except (KeyError, ValueError, TypeError):
            raise DecodeError("provider must be an address", field="provider") from None
        ints = {}
        for name in ("sequence", "timestamp"):
            v = raw.get(name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**64:
                raise DecodeError(f"{name} must be an integer within 0..2^64-1", field=name)
            ints[name] = v
        leases = raw.get("leases", [])
        if not isinstance(leases, list) or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                                    for x in leases):
            raise DecodeError("leases must be a list of order ids", field="leases")
        sig_text = raw.get("signature")
        try:
            sig = bytes.fromhex(str(sig_text).removeprefix("0x"))
        except ValueError:
            raise DecodeError("signature must be hex", field="signature") from None
        if len(sig) != 65:
            raise DecodeError(f"signature must be 65 bytes, got {len(sig)}", field="signature")
        return cls(provider, ints["sequence"], ints["timestamp"], tuple(sorted(leases)), sig)


def sign(key: bytes, *, sequence: int, timestamp: int, leases: Iterable[int] = ()) -> Heartbeat:
    """A heartbeat signed by ``key`` (32-byte secp256k1 secret); v is 27/28 as wallets make it."""
    pk = PrivateKey(key)
    provider = to_checksum_address(keccak(pk.public_key.format(compressed=False)[1:])[-20:])
    hb = Heartbeat(provider, sequence, timestamp, tuple(sorted(leases)))
    sig = pk.sign_recoverable(hb.digest(), hasher=None)
    return Heartbeat(provider, sequence, timestamp, hb.leases, sig[:64] + bytes([sig[64] + 27]))


def signer_of(hb: Heartbeat) -> str:
    """The address that signed ``hb``; a malformed signature is a ``DecodeError``."""
    sig = hb.signature
    if len(sig) != 65 or sig[64] not in (27, 28, 0, 1):
        raise DecodeError("signature must be 65 bytes with v in {27, 28}", field="signature")
    v = sig[64] - 27 if sig[64] >= 27 else sig[64]
    try:
        pub = PublicKey.from_signature_and_message(sig[:64] + bytes([v]), hb.digest(), hasher=None)
    except Exception:  # coincurve raises a bare Exception for an unrecoverable signature
        raise DecodeError("signature does not recover to a key", field="signature") from None
    return to_checksum_address(keccak(pub.format(compressed=False)[1:])[-20:])


@dataclass
class _Peer:
    sequence: int
    last_seen: float
    leases: tuple[int, ...]


@dataclass
class HeartbeatMonitor:
    """Liveness of providers from their heartbeats. ``clock`` values are seconds (floats).

    ``observe`` accepts or rejects one heartbeat; ``failed(now)`` lists the providers whose
    last valid heartbeat is older than ``miss_limit * interval`` (each reported once until a
    new heartbeat revives it).
    """

    interval: float = 1.0
    miss_limit: int = 3
    max_skew: float = 30.0
    _peers: dict[str, _Peer] = field(default_factory=dict)
    _declared: set[str] = field(default_factory=set)

    @property
    def bound(self) -> float:
        return self.interval * self.miss_limit

    def observe(self, hb: Heartbeat, now: float) -> _Peer:
        provider = to_checksum_address(hb.provider)
        if signer_of(hb) != provider:
            raise Rejected(f"heartbeat for {provider} is not signed by it", reason="bad-signature",
                           provider=provider)
        if abs(hb.timestamp - now) > self.max_skew:
            raise Rejected(f"heartbeat timestamp {hb.timestamp} is more than {self.max_skew:.0f} s from now",
                           reason="clock-skew", provider=provider)
        peer = self._peers.get(provider)
        if peer is not None and hb.sequence <= peer.sequence:
            raise Rejected(f"heartbeat sequence {hb.sequence} is not above {peer.sequence}",
                           reason="stale-sequence", provider=provider)
        peer = _Peer(hb.sequence, now, hb.leases)
        self._peers[provider] = peer
        self._declared.discard(provider)
        return peer

    def watch(self, provider: str, now: float) -> None:
        """Start the clock for a provider that has not sent anything yet (e.g. just assigned)."""
        provider = to_checksum_address(provider)
        if provider not in self._peers:
            self._peers[provider] = _Peer(-1, now, ())

    def forget(self, provider: str) -> None:
        provider = to_checksum_address(provider)
        self._peers.pop(provider, None)
        self._declared.discard(provider)

    def last_seen(self, provider: str) -> float | None:
        peer = self._peers.get(to_checksum_address(provider))
        return None if peer is None else peer.last_seen

    def failed(self, now: float) -> list[str]:
        out = []
        for provider in sorted(self._peers):
            if provider not in self._declared and now - self._peers[provider].last_seen > self.bound:
                self._declared.add(provider)
                out.append(provider)
        return out
