"""Who speaks for a domain: signed OPENs on peering sessions, signed handovers between engines.

An engine proves which domain it runs the way only it can: with its orchestrator key, which the
market's timelock registered on chain and the federation document lists for that domain. Two
statements are signed (secp256k1, recoverable, over keccak-256 of a tagged message bound to the
chain id and the market's address, so a signature is good for one market only):

- ``DomainOpen`` (``open_for`` / ``check_open``), sent on every peering circuit once its
  adjacency is up: "I am domain D, talking to domain R, at time T";
- a handover (``sign_handover`` / ``check_handover``): "domain D hands order N, whose spec hashes
  to S, to domain R, at time T".

A check returns the refusal's reason, or None when the statement holds:

=========================  ========================================================
``peer-domain-mismatch``   the OPEN names another domain than the circuit's HELLO
``wrong-receiver``         addressed to another domain than this one
``stale``                  its time is more than ``MAX_SKEW_S`` from ours (a replay)
``bad-signature``          the signature does not recover to the address it names
``domain-mismatch``        the key is not the one the federation lists for that domain:
                           an engine lying about its domain
``not-an-orchestrator``    the contract does not list the key as an orchestrator
=========================  ========================================================

Invariants: nothing here raises on bad input (a malformed signature is ``bad-signature``); the
on-chain check is the caller's ``is_orchestrator`` (cached there), so this module stays pure.
"""

from __future__ import annotations

import struct
from typing import Callable

from coincurve import PrivateKey, PublicKey
from eth_utils import keccak, to_canonical_address, to_checksum_address

from marketplace.federation.config import Federation
from marketplace.peering.wire import DomainOpen

#: how far a signed statement's time may be from the receiver's clock (seconds)
MAX_SKEW_S = 60
OPEN_TAG = b"cona-domain-open/1"
HANDOVER_TAG = b"cona-handover/1"


def _digest(tag: bytes, chain_id: int, market: str, body: bytes) -> bytes:
    return keccak(tag + struct.pack("!Q", chain_id) + to_canonical_address(market) + body)


def _sign(key: bytes, digest: bytes) -> bytes:
    sig = PrivateKey(key).sign_recoverable(digest, hasher=None)
    return sig[:64] + bytes([sig[64] + 27])


def _signer(signature: bytes, digest: bytes) -> str | None:
    if len(signature) != 65 or signature[64] not in (27, 28):
        return None
    try:
        pub = PublicKey.from_signature_and_message(signature[:64] + bytes([signature[64] - 27]), digest, hasher=None)
    except Exception:  # coincurve raises a bare Exception for an unrecoverable signature
        return None
    return to_checksum_address(keccak(pub.format(compressed=False)[1:])[-20:])


def address_of(key: bytes) -> str:
    return to_checksum_address(keccak(PrivateKey(key).public_key.format(compressed=False)[1:])[-20:])


def open_for(key: bytes, fed: Federation, domain: int, receiver: int, now: float) -> DomainOpen:
    """This engine's signed OPEN to ``receiver``."""
    unsigned = DomainOpen(domain, receiver, int(now), to_canonical_address(address_of(key)), b"\0" * 65)
    sig = _sign(key, _digest(OPEN_TAG, fed.chain_id, fed.market, unsigned.signed_bytes()))
    return DomainOpen(domain, receiver, int(now), unsigned.address, sig)


def _identity(fed: Federation, domain: int, signer: str | None,
              is_orchestrator: Callable[[str], bool]) -> str | None:
    if signer is None:
        return "bad-signature"
    entry = fed.domains.get(domain)
    if entry is None or entry.orchestrator != signer:
        return "domain-mismatch"
    if not is_orchestrator(signer):
        return "not-an-orchestrator"
    return None


def check_open(msg: DomainOpen, *, fed: Federation, heard: int, me: int, now: float,
               is_orchestrator: Callable[[str], bool]) -> str | None:
    """The refusal's reason for an OPEN heard on a circuit whose HELLO said ``heard``, or None."""
    if msg.domain != heard:
        return "peer-domain-mismatch"
    if msg.receiver != me:
        return "wrong-receiver"
    if abs(now - msg.timestamp) > MAX_SKEW_S:
        return "stale"
    signer = _signer(msg.signature, _digest(OPEN_TAG, fed.chain_id, fed.market, msg.signed_bytes()))
    if signer is not None and signer != to_checksum_address(msg.address):
        signer = None
    return _identity(fed, msg.domain, signer, is_orchestrator)


def _handover_body(order: int, spec_digest: bytes, sender: int, receiver: int, timestamp: int) -> bytes:
    return struct.pack("!QIIQ", order, sender, receiver, timestamp) + spec_digest


def sign_handover(key: bytes, fed: Federation, *, order: int, spec_digest: bytes, sender: int, receiver: int,
                  now: float) -> dict[str, object]:
    """The signed fields of ``POST /v1/handovers`` (the spec itself travels beside them)."""
    stamp = int(now)
    sig = _sign(key, _digest(HANDOVER_TAG, fed.chain_id, fed.market,
                             _handover_body(order, spec_digest, sender, receiver, stamp)))
    return {"order": order, "from_domain": sender, "to_domain": receiver, "timestamp": stamp,
            "signature": "0x" + sig.hex()}


def check_handover(*, fed: Federation, order: int, spec_digest: bytes, sender: int, receiver: int,
                   timestamp: int, signature: bytes, me: int, now: float,
                   is_orchestrator: Callable[[str], bool]) -> str | None:
    """The refusal's reason for a handover, or None when domain ``sender``'s engine signed it for us."""
    if receiver != me:
        return "wrong-receiver"
    if abs(now - timestamp) > MAX_SKEW_S:
        return "stale"
    signer = _signer(signature, _digest(HANDOVER_TAG, fed.chain_id, fed.market,
                                        _handover_body(order, spec_digest, sender, receiver, timestamp)))
    return _identity(fed, sender, signer, is_orchestrator)
