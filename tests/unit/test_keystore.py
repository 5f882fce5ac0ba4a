"""The agent's keystore: V3 format, 0600, no overwrite, passphrase from a file, clear errors."""

from __future__ import annotations

import json
import stat

import pytest
from eth_keyfile import decode_keyfile_json

from marketplace.errors import InputError
from provider_agent import keystore
from provider_agent.keystore import KeystoreError

pytestmark = pytest.mark.unit
N = 2**10  # a cheap scrypt cost for tests; the default is geth's standard 2**18

# the first well-known development account of the test mnemonic (anvil, hardhat)
DEV_KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
DEV_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def test_create_then_unlock_gives_the_same_key(tmp_path):
    path = tmp_path / "agent" / "key.json"
    made = keystore.create(path, "correct horse", key=DEV_KEY, scrypt_n=N)
    assert made.address == DEV_ADDRESS
    assert keystore.address(path) == DEV_ADDRESS
    assert keystore.unlock(path, "correct horse").key == DEV_KEY
    # a standard V3 file: another implementation decrypts it
    assert bytes(decode_keyfile_json(json.loads(path.read_text()), b"correct horse")) == DEV_KEY


def test_file_is_private_and_holds_no_clear_key(tmp_path):
    path = tmp_path / "key.json"
    keystore.create(path, "pw", key=DEV_KEY, scrypt_n=N)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert DEV_KEY.hex() not in path.read_text()
    assert not list(tmp_path.glob(".keystore-*")), "no temp file left behind"


def test_repr_never_shows_the_key(tmp_path):
    ident = keystore.create(tmp_path / "k.json", "pw", key=DEV_KEY, scrypt_n=N)
    assert DEV_KEY.hex() not in repr(ident) and DEV_KEY.hex() not in str(ident)


def test_refuses_to_overwrite(tmp_path):
    path = tmp_path / "key.json"
    keystore.create(path, "pw", scrypt_n=N)
    before = path.read_bytes()
    with pytest.raises(KeystoreError, match="already exists"):
        keystore.create(path, "pw", scrypt_n=N)
    assert path.read_bytes() == before


def test_wrong_passphrase_is_one_clear_error(tmp_path):
    path = tmp_path / "key.json"
    keystore.create(path, "right", scrypt_n=N)
    with pytest.raises(KeystoreError, match="wrong passphrase") as info:
        keystore.unlock(path, "wrong")
    assert info.value.fields["field"] == "passphrase"


@pytest.mark.parametrize("content, message", [
    (None, "no keystore"),
    ("not json", "cannot read"),
    ('{"version": 1}', "not a version 3"),
    ('{"version": 3, "address": "zz"}', "missing fields"),
])
def test_bad_keystore_files(tmp_path, content, message):
    path = tmp_path / "key.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(KeystoreError, match=message):
        keystore.unlock(path, "pw")


def test_passphrase_from_file_first_line(tmp_path):
    f = tmp_path / "pass"
    f.write_text("s3cret\nignored\n")
    assert keystore.read_passphrase(f) == "s3cret"
    f.write_text("")
    with pytest.raises(InputError, match="empty"):
        keystore.read_passphrase(f)
    with pytest.raises(InputError, match="cannot read"):
        keystore.read_passphrase(tmp_path / "missing")
