"""Signing Compute LSAs and checking their signatures (secp256k1, Ethereum addresses).

The SIGNATURE TLV is the last TLV: 65 bytes r, s, v over
``keccak256(LSA[0 : length-68])`` with the lifetime (bytes 0-1) and the checksum (bytes
28-29) zeroed, i.e. the header, whose length counts the signature TLV, and every TLV
before the signature.

Invariants:
- ``v`` is 27 + the recovery id and ``s`` is in the lower half of the group order
  (EIP-2), so nobody can derive a second valid signature, and so a second checksum, for
  the same content and win a checksum tie with it;
- the originator id is the Ethereum address of the signing key, and
  ``recover_originator`` accepts a signature only if it recovers to that address, so an
  LSA is bound to the account the registry knows; a purge (lifetime 0, nothing else
  changed) still carries the originator's signature;
- public-key recovery (libsecp256k1 through coincurve) costs ~50 us, which is why the
  decoder does not do it and the LSDB does it only for LSAs that would change it.
"""

from __future__ import annotations

import coincurve
from eth_utils import keccak

from marketplace.convergence.errors import BadSignature, BadSignatureTlv, LsaEncodeError
from marketplace.convergence.lsa.header import decode_header
from marketplace.convergence.lsa.values import ComputeLsa
from marketplace.convergence.lsa.wire import OFF_CHECKSUM, SIG_TLV_SIZE, SIGNATURE_SIZE, TLV, U16, Tlv

# secp256k1 group order: signatures with s > n/2 are refused (EIP-2)
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = _N // 2

#: own keys and test keys, with their addresses; bounded so it cannot grow without end
_KEYS: dict[bytes, tuple[coincurve.PrivateKey, bytes]] = {}
_KEYS_MAX = 1024


def signing_key(key: bytes) -> tuple[coincurve.PrivateKey, bytes]:
    """The secp256k1 key of a 32-byte secret and its Ethereum address (the originator id)."""
    key = bytes(key)
    entry = _KEYS.get(key)
    if entry is None:
        if len(key) != 32:
            raise LsaEncodeError(f"a secp256k1 secret is 32 bytes, got {len(key)}", field="key")
        try:
            private = coincurve.PrivateKey(key)
        except ValueError:
            raise LsaEncodeError("the key is not a valid secp256k1 secret", field="key") from None
        entry = (private, address_of_public(private.public_key.format(compressed=False)))
        if len(_KEYS) < _KEYS_MAX:
            _KEYS[key] = entry
    return entry


def address_of_public(public: bytes) -> bytes:
    """Ethereum address (20 bytes) of an uncompressed 65-byte secp256k1 public key."""
    return keccak(public[1:])[-20:]


def address_of(key: bytes) -> bytes:
    """The Ethereum address (the originator id) of a 32-byte secp256k1 secret."""
    return signing_key(key)[1]


def signature_tlv(private: coincurve.PrivateKey, unsigned: bytes) -> bytes:
    """The SIGNATURE TLV of ``unsigned`` (the LSA before it, lifetime and checksum still 0)."""
    sig = private.sign_recoverable(keccak(unsigned), hasher=None)  # r(32) s(32) recid(1), s already low
    return TLV.pack(Tlv.SIGNATURE, SIGNATURE_SIZE) + sig[:64] + bytes((27 + sig[64],))


def signing_hash(raw: bytes) -> bytes:
    """keccak256 of the LSA up to its signature TLV, with lifetime and checksum zeroed."""
    sig_at = len(raw) - SIG_TLV_SIZE
    return keccak(b"\x00\x00" + raw[2:OFF_CHECKSUM] + b"\x00\x00" + raw[OFF_CHECKSUM + 2 : sig_at])


def recover_originator(lsa_or_raw: ComputeLsa | bytes) -> bytes:
    """Check the signature and return the originator id it recovers to.

    Raises ``BadSignature`` when the signature is malformed, malleable (high s), does not
    recover, or recovers to another address than the header's originator.
    """
    if isinstance(lsa_or_raw, ComputeLsa):
        raw, originator = lsa_or_raw.raw, lsa_or_raw.header.originator
    else:
        raw = bytes(lsa_or_raw)
        originator = decode_header(raw).originator
        at = len(raw) - SIG_TLV_SIZE
        if raw[at] != Tlv.SIGNATURE or U16.unpack_from(raw, at + 1)[0] != SIGNATURE_SIZE:
            raise BadSignatureTlv("the LSA does not end with a signature TLV", offset=at)
    sig = raw[-SIGNATURE_SIZE:]
    v = sig[64]
    s = int.from_bytes(sig[32:64], "big")
    who = originator.hex()
    if v not in (27, 28):
        raise BadSignature(f"LSA from {who}: signature v={v} is not 27 or 28")
    if not 0 < s <= _HALF_N:
        raise BadSignature(f"LSA from {who}: signature s is zero or in the upper half (malleable)")
    try:
        public = coincurve.PublicKey.from_signature_and_message(
            sig[:64] + bytes((v - 27,)), signing_hash(raw), hasher=None
        )
    except Exception as exc:  # coincurve raises ValueError or its own Error for a non-recoverable signature
        raise BadSignature(f"LSA from {who}: signature does not recover ({exc})") from None
    recovered = address_of_public(public.format(compressed=False))
    if recovered != originator:
        raise BadSignature(f"LSA from {who}: signature recovers to {recovered.hex()}, not the originator")
    return recovered
