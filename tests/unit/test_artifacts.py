"""The artifact store: content-addressed, checked per kind, quotas, expiry, never half-written; the signed
upload authorization; OCI archives built from a root file system."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest
import wasmtime

from marketplace.artifacts import (ArtifactRejected, ArtifactStore, Kind, StoreLimits, UploadClaim, sign_upload,
                                   verify_upload)
from marketplace.artifacts.oci import build_archive
from marketplace.chain.writer import Signer
from marketplace.errors import InputError, LimitExceeded, NotFound
from provider_agent.runtime.images import archive_arches, inspect_archive
from provider_agent.workloads.examples import EXAMPLES
from tests.unit.test_container_images import make_archive

pytestmark = pytest.mark.unit

WC_C = (EXAMPLES / "wordcount-c.wasm").read_bytes()
ALICE, BOB = "0x" + "a1" * 20, "0x" + "b2" * 20


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store(tmp_path: Path, **limits) -> tuple[ArtifactStore, Clock]:
    clock = Clock()
    return ArtifactStore(tmp_path / "artifacts", StoreLimits(**limits), clock), clock


def test_bytes_are_kept_under_their_digest_once_and_read_only(tmp_path):
    s, _ = store(tmp_path)
    a = s.put(b"hello", Kind.DATA, ALICE)
    assert a.digest == "sha256:" + sha(b"hello") and a.size == 5 and a.owners == (ALICE,)
    assert s.path(a.digest).read_bytes() == b"hello"
    assert oct(s.path(a.digest).stat().st_mode & 0o777) == "0o444"
    again = s.put(b"hello", Kind.DATA, BOB)
    assert again.owners == (ALICE, BOB) and len(s) == 1
    assert s.usage(ALICE) == s.usage(BOB) == 5
    assert s.info(sha(b"hello")).digest == a.digest  # bare hex names it too
    with pytest.raises(NotFound) as info:
        s.info("sha256:" + "0" * 64)
    assert info.value.fields["field"] == "digest"
    with pytest.raises(NotFound):
        s.info("sha256:xyz")


def test_a_module_is_checked_and_its_imports_kept(tmp_path):
    s, _ = store(tmp_path)
    a = s.put(WC_C, Kind.WASM, ALICE)
    assert "wasi_snapshot_preview1.fd_write" in a.facts["wasm"]["imports"]
    for bad, why in ((b"\x00asm\x01\x00\x00\x00garbage", "not a valid WebAssembly module"),
                     (b"not wasm at all", "not a valid WebAssembly module")):
        with pytest.raises(ArtifactRejected, match=why) as info:
            s.put(bad, Kind.WASM, ALICE)
        assert info.value.fields["field"] == "body"
    # a module that imports what no run offers is refused at upload (a socket call)
    sock = wasmtime.wat2wasm('(module (import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32 i32) '
                             '(result i32))) (func (export "_start")))')
    with pytest.raises(ArtifactRejected, match="sock_accept"):
        s.put(sock, Kind.WASM, ALICE)
    assert len(s) == 1 and not list(s.tmp.iterdir())


def test_an_archive_is_checked_and_its_architectures_kept(tmp_path):
    s, _ = store(tmp_path)
    assert archive_arches(make_archive(tmp_path / "multi.tar", arch="arm64", index_of=("amd64", "arm64"))) == (
        "amd64", "arm64")
    a = s.put(make_archive(tmp_path / "arm.tar", arch="arm64").read_bytes(), Kind.OCI, ALICE)
    assert a.facts["oci"]["arches"] == ["arm64"]  # kept whatever the market's own machine is
    make_archive(tmp_path / "bad.tar", tamper="layer")
    with pytest.raises(ArtifactRejected, match="^the archive is not a usable OCI archive: layer .* does not hash"):
        s.put((tmp_path / "bad.tar").read_bytes(), Kind.OCI, ALICE)
    with pytest.raises(ArtifactRejected, match="not a readable tar"):
        s.put(b"garbage" * 100, Kind.OCI, ALICE)


def test_the_same_bytes_as_another_kind_are_checked_as_that_kind(tmp_path):
    s, _ = store(tmp_path)
    s.put(WC_C, Kind.DATA, ALICE)
    a = s.put(WC_C, Kind.WASM, ALICE)
    assert a.kinds == ("data", "wasm") and "wasm" in a.facts and s.usage(ALICE) == len(WC_C)


def test_limits_per_kind_per_owner_and_in_all(tmp_path):
    s, _ = store(tmp_path, max_bytes={Kind.WASM: 10, Kind.OCI: 10, Kind.DATA: 100}, quota_bytes=150, total_bytes=180)
    with pytest.raises(LimitExceeded) as info:
        s.put(b"x" * 11, Kind.WASM, ALICE)
    assert info.value.limit == "max_wasm_bytes" and info.value.maximum == 10 and info.value.http_status == 413
    s.put(b"a" * 100, Kind.DATA, ALICE)
    s.put(b"b" * 50, Kind.DATA, ALICE)
    with pytest.raises(LimitExceeded) as info:
        s.put(b"c", Kind.DATA, ALICE)
    assert info.value.limit == "quota_bytes"
    s.put(b"a" * 100, Kind.DATA, BOB)  # the same bytes: BOB is charged, the store is not
    with pytest.raises(LimitExceeded) as info:
        s.put(b"d" * 40, Kind.DATA, BOB)
    assert info.value.limit == "total_bytes"
    assert s.total() == 150 and not list(s.tmp.iterdir())


def test_a_digest_that_does_not_match_the_bytes_is_refused(tmp_path):
    s, _ = store(tmp_path)
    up = s.begin(Kind.DATA)
    up.write(b"what arrived")
    with pytest.raises(ArtifactRejected, match="not the signed"):
        s.commit(up, ALICE, sha256=sha(b"what was signed"))
    up = s.begin(Kind.DATA)
    up.write(b"abc")
    with pytest.raises(ArtifactRejected, match="3 bytes arrived, 4 were signed"):
        s.commit(up, ALICE, sha256=sha(b"abc"), size=4)
    assert len(s) == 0 and not list(s.tmp.iterdir()) and not list(s.blobs.iterdir())


def test_expiry_spares_what_live_orders_name(tmp_path):
    s, clock = store(tmp_path, ttl_s=100)
    a, b = s.put(b"named", Kind.DATA, ALICE), s.put(b"orphan", Kind.DATA, ALICE)
    clock.t += 99
    assert s.sweep([a.digest]) == []
    clock.t += 2
    assert s.sweep([a.digest]) == [b.digest]
    clock.t += 1000  # a pinned artifact's clock restarted while it was pinned
    assert s.sweep([a.digest]) == [] and s.get(a.digest) is not None
    clock.t += 1000
    assert s.sweep([]) == [a.digest] and len(s) == 0 and s.usage(ALICE) == 0
    assert not list(s.blobs.iterdir()) and not list(s.meta.iterdir())


def test_a_crash_leaves_no_half_written_artifact(tmp_path):
    s, _ = store(tmp_path)
    kept = s.put(b"whole", Kind.DATA, ALICE)
    up = s.begin(Kind.DATA)
    up.write(b"half an upl")  # the process dies here: a temporary
    (s.blobs / sha(b"renamed, no meta")).write_bytes(b"renamed, no meta")  # died between blob and meta
    (s.meta / f"{sha(b'lost')}.json").write_text(json.dumps({**kept.to_dict(), "digest": "sha256:" + sha(b"lost")}))
    (s.meta / f"{'1' * 64}.json").write_text("{torn")
    again = ArtifactStore(s.root, StoreLimits())
    assert len(again) == 1 and again.get(kept.digest) == kept
    assert not list(again.tmp.iterdir()) and sorted(p.name for p in again.blobs.iterdir()) == [kept.hex]
    assert sorted(p.name for p in again.meta.iterdir()) == [f"{kept.hex}.json"]


def test_the_upload_authorization_binds_the_bytes_and_the_account():
    key = Signer(bytes(range(1, 33)))
    now = time.time()
    claim = UploadClaim(31337, "0x" + "5f" * 20, "wasm", sha(b"m"), 1, int(now) + 600)
    sig = sign_upload(key, claim)
    assert verify_upload(claim, key.address, sig, now) == key.address
    assert b"CONA artifact upload\nchain: 31337\n" in claim.message()
    other = UploadClaim(31337, "0x" + "5f" * 20, "wasm", sha(b"n"), 1, int(now) + 600)
    with pytest.raises(InputError) as info:
        verify_upload(other, key.address, sig, now)  # another digest: another signer recovers
    assert info.value.fields["field"] == "X-Cona-Signature"
    for bad_claim, field in ((UploadClaim(31337, "0x" + "5f" * 20, "wasm", sha(b"m"), 1, int(now) - 1), "X-Cona-Expires"),
                             (UploadClaim(31337, "0x" + "5f" * 20, "wasm", sha(b"m"), 1, int(now) + 10**6), "X-Cona-Expires")):
        with pytest.raises(InputError) as info:
            verify_upload(bad_claim, key.address, sign_upload(key, bad_claim), now)
        assert info.value.fields["field"] == field
    with pytest.raises(InputError) as info:
        verify_upload(claim, key.address, sig[:64] + b"\x05", now)
    assert info.value.fields["field"] == "X-Cona-Signature"
    with pytest.raises(InputError) as info:
        verify_upload(claim, "nope", sig, now)
    assert info.value.fields["field"] == "X-Cona-Uploader"


def test_an_oci_archive_from_a_root_file_system_is_reproducible_and_complete(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(root / "bin" / "tool", 0o755)
    os.symlink("tool", root / "bin" / "alias")
    first = build_archive(root, tmp_path / "a.tar", cmd=["/bin/tool"], arch="amd64")
    os.utime(root / "bin" / "tool", (1, 1))  # times never reach the archive
    assert build_archive(root, tmp_path / "b.tar", cmd=["/bin/tool"], arch="amd64") == first
    assert sha((tmp_path / "a.tar").read_bytes()) == first
    info = inspect_archive(tmp_path / "a.tar", first, "amd64")
    assert archive_arches(tmp_path / "a.tar") == ("amd64",) and info.os == "linux"
    with tarfile.open(tmp_path / "a.tar") as outer:
        layer = outer.extractfile(f"blobs/sha256/{json.loads(outer.extractfile(f'blobs/sha256/{info.manifest_digest[7:]}').read())['layers'][0]['digest'][7:]}")
        with tarfile.open(fileobj=layer) as tar:
            members = {m.name: m for m in tar.getmembers()}
    assert {"work", "input", "proc", "bin/tool", "bin/alias"} <= set(members)
    assert members["bin/alias"].issym() and members["bin/tool"].mode == 0o755 and members["bin/tool"].mtime == 0
    fifo = root / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="neither a file"):
        build_archive(root, tmp_path / "c.tar")
    shutil.rmtree(root)
    with pytest.raises(InputError, match="not a directory"):
        build_archive(root, tmp_path / "d.tar")
