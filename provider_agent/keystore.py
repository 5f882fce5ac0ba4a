"""The agent's identity: one secp256k1 key in an encrypted Ethereum V3 keystore file.

The key is the provider's on-chain account: it registers and stakes, signs its Compute
LSAs and heartbeats, accepts and completes leases. So it never leaves the keystore in
clear: not in a command-line argument, not in a log line, not in an error message.

Invariants:
- the keystore file is written atomically (temp file, fsync, rename) with mode 0600,
  so a crash never leaves a half-written key and no other user can read it;
- ``init`` refuses to overwrite an existing keystore (a lost key is lost stake);
- the passphrase comes from a file (first line, trailing newline dropped) or from an
  interactive prompt, never from ``argv`` where ``ps`` would show it;
- a wrong passphrase is one clear ``KeystoreError``, never a MAC traceback.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_keyfile import create_keyfile_json, decode_keyfile_json
from eth_utils import to_checksum_address

from marketplace.errors import AgentError
from marketplace.passphrase import read_passphrase  # noqa: F401  (re-exported for the agent CLI)

#: scrypt work factor: geth's "standard" (2**18) costs ~1 s here; 2**14 is geth's "light".
DEFAULT_SCRYPT_N = 2**18


class KeystoreError(AgentError, ValueError):
    http_status = 422
    code = "keystore"


@dataclass(frozen=True, slots=True)
class Identity:
    """An unlocked key. ``repr`` shows the address only."""

    address: str
    key: bytes

    def __repr__(self) -> str:
        return f"Identity({self.address})"

    __str__ = __repr__


def _address_of(key: bytes) -> str:
    from eth_keys import keys

    return keys.PrivateKey(key).public_key.to_checksum_address()


def create(path: Path, passphrase: str, *, key: bytes | None = None, scrypt_n: int = DEFAULT_SCRYPT_N) -> Identity:
    """Make a new key (or wrap ``key``) into a V3 keystore at ``path``; refuses to overwrite."""
    path = Path(path)
    if path.exists():
        raise KeystoreError(f"a keystore already exists at {path}", field="keystore",
                            hint="use it, or move it away first: a lost key is lost stake")
    key = secrets.token_bytes(32) if key is None else key
    if len(key) != 32:
        raise KeystoreError("a private key is 32 bytes", field="key")
    doc: dict[str, Any] = create_keyfile_json(key, passphrase.encode(), kdf="scrypt", iterations=scrypt_n)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".keystore-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Identity(_address_of(key), key)


def address(path: Path) -> str:
    """The keystore's address, read without the passphrase."""
    doc = _read(Path(path))
    try:
        return to_checksum_address(doc["address"])
    except (KeyError, ValueError):
        raise KeystoreError(f"{path} has no valid address field", field="keystore") from None


def unlock(path: Path, passphrase: str) -> Identity:
    """Decrypt the keystore at ``path``."""
    path = Path(path)
    doc = _read(path)
    try:
        key = bytes(decode_keyfile_json(doc, passphrase.encode()))
    except ValueError as exc:
        if "MAC" in str(exc):
            raise KeystoreError(f"wrong passphrase for {path}", field="passphrase") from None
        raise KeystoreError(f"{path} is not a usable V3 keystore: {exc}", field="keystore") from None
    except (KeyError, TypeError):
        raise KeystoreError(f"{path} is not a V3 keystore (missing fields)", field="keystore") from None
    return Identity(_address_of(key), key)


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeystoreError(f"no keystore at {path}", field="keystore",
                            hint="create one with `cona-agent init`") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise KeystoreError(f"cannot read the keystore {path}: {exc}", field="keystore") from None
    if not isinstance(doc, dict) or doc.get("version") != 3:
        raise KeystoreError(f"{path} is not a version 3 keystore", field="keystore")
    return doc
