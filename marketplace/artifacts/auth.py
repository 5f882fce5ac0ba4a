"""Who uploads an artifact: a signed upload authorization, so quotas are per account.

The uploader signs, with its Ethereum key (EIP-191 ``personal_sign``, as any wallet can), a
short text naming the market, the chain, the artifact's kind, sha256 and size, and an expiry::

    CONA artifact upload
    chain: 31337
    market: 0x5FbDB2315678afecb367f032d93F642f64180aa3
    kind: wasm
    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    size: 4
    expires: 1767225600

and sends it with the bytes (``X-Cona-Uploader``, ``X-Cona-Signature``, ``X-Cona-Expires``,
``X-Cona-Sha256`` headers). The market recomputes the sha256 and size of what arrived: bytes
that are not the ones signed are refused, so a signature cannot be reused for other bytes, and
replaying one uploads the same bytes again (deduplicated, counted once). An expired or
far-future authorization is refused: one is good for at most ``MAX_VALID_S``.

Invariant: ``verify_upload`` returns the checksummed address whose key signed exactly this
message, or raises ``InputError`` naming the header at fault.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import keccak, to_checksum_address

from marketplace.errors import InputError

#: the longest an upload authorization may be valid for (seconds after it is checked)
MAX_VALID_S = 86_400


@dataclass(frozen=True, slots=True)
class UploadClaim:
    """What an uploader signs (see the module docstring)."""

    chain_id: int
    market: str
    kind: str
    sha256: str  # 64 lower-case hex
    size: int
    expires: int

    def message(self) -> bytes:
        return (f"CONA artifact upload\nchain: {self.chain_id}\nmarket: {to_checksum_address(self.market)}\n"
                f"kind: {self.kind}\nsha256: {self.sha256}\nsize: {self.size}\nexpires: {self.expires}").encode()

    def digest(self) -> bytes:
        """The EIP-191 (``personal_sign``) hash of the message."""
        msg = self.message()
        return keccak(b"\x19Ethereum Signed Message:\n" + str(len(msg)).encode() + msg)


def sign_upload(signer, claim: UploadClaim) -> bytes:
    """r || s || v (27/28) by ``signer`` (a ``marketplace.chain.writer.Signer``)."""
    v, r, s = signer.sign_digest(claim.digest())
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes((27 + v,))


def verify_upload(claim: UploadClaim, uploader: str, signature: bytes, now: float) -> str:
    """The uploader's address, when it signed ``claim`` and the claim has not expired."""
    from eth_keys import keys
    from eth_keys.exceptions import BadSignature, ValidationError

    if claim.expires < now:
        raise InputError(f"the upload authorization expired at {claim.expires}", field="X-Cona-Expires",
                         hint="sign a new one")
    if claim.expires > now + MAX_VALID_S:
        raise InputError(f"an upload authorization is valid for at most {MAX_VALID_S} s", field="X-Cona-Expires")
    if len(signature) != 65 or signature[64] not in (27, 28):
        raise InputError("the signature must be 65 bytes r || s || v with v 27 or 28", field="X-Cona-Signature")
    try:
        who = keys.Signature(signature[:64] + bytes([signature[64] - 27])).recover_public_key_from_msg_hash(
            claim.digest()).to_checksum_address()
    except (BadSignature, ValidationError):
        raise InputError("the signature does not recover to any key", field="X-Cona-Signature") from None
    try:
        claimed = to_checksum_address(uploader)
    except ValueError:
        raise InputError(f"{uploader!r} is not an address", field="X-Cona-Uploader") from None
    if who != claimed:
        raise InputError(f"the upload is signed by {who}, not by {claimed}", field="X-Cona-Signature",
                         hint="sign the upload message of these bytes with the uploader's key")
    return who
