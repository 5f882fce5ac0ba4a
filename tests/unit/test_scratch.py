"""A run's workspace: inputs placed read-only, the scratch capped, outputs collected safely, nothing left."""

from __future__ import annotations

import os
import stat

import pytest

from marketplace.errors import InputError
from provider_agent.runtime.scratch import MAX_DEPTH, OutputCaps, Workspace

pytestmark = pytest.mark.unit


def test_inputs_are_placed_read_only_and_bad_names_refused(tmp_path):
    src = tmp_path / "artifact.bin"
    src.write_bytes(b"from the artifact store")
    (tmp_path / "runs").mkdir()
    space = Workspace(tmp_path / "runs", 1 << 20, {"a.txt": b"A", "deep/b.bin": src})
    try:
        assert (space.input / "a.txt").read_bytes() == b"A"
        assert (space.input / "deep" / "b.bin").read_bytes() == b"from the artifact store"
        assert stat.S_IMODE(os.stat(space.input / "a.txt").st_mode) == 0o444
        assert stat.S_IMODE(os.stat(space.input / "deep").st_mode) == 0o555
        assert space.out.is_dir()
    finally:
        space.close()
    assert not space.root.exists()
    for bad in ("../x", "/etc/passwd", "a//b", ""):
        with pytest.raises(InputError, match="plain relative path"):
            Workspace(tmp_path / "runs", 1 << 20, {bad: b""})
    assert list((tmp_path / "runs").iterdir()) == []  # a refused workspace leaves nothing


def test_collection_skips_what_is_not_a_plain_regular_file(tmp_path):
    space = Workspace(tmp_path, 1 << 20)
    try:
        (space.out / "ok.txt").write_bytes(b"fine")
        os.symlink("/etc/passwd", space.out / "link")
        os.mkfifo(space.out / "fifo")
        (space.out / os.fsdecode(b"bad\xffname")).write_bytes(b"x")
        got = space.collect(OutputCaps())
        assert [(f.name, f.data) for f in got.files] == [("ok.txt", b"fine")]
        assert "link: a symbolic link" in got.skipped and "fifo: not a regular file" in got.skipped
        assert "not a plain name" in got.skipped and got.over_cap == ""
        deep = space.out
        for i in range(MAX_DEPTH):
            deep = deep / f"d{i}"
        deep.mkdir(parents=True)
        assert "nested deeper" in space.collect(OutputCaps()).over_cap
    finally:
        space.close()


def test_a_mounted_scratch_stops_writes_at_its_size_and_a_plain_one_is_checked_after(tmp_path):
    capped = Workspace(tmp_path, 256 * 1024)
    try:
        if not capped.mounted:
            pytest.skip("this process may not mount a tmpfs (not root)")
        with pytest.raises(OSError, match="No space left"):
            (capped.work / "big").write_bytes(bytes(512 * 1024))
        assert capped.full() and capped.used_bytes() >= 200 * 1024
    finally:
        capped.close()
    assert str(capped.work) not in open("/proc/self/mounts").read()
    plain = Workspace(tmp_path, 256 * 1024, mount=False)
    try:
        (plain.work / "big").write_bytes(bytes(512 * 1024))  # nothing stops it: the check comes after
        assert plain.full()
    finally:
        plain.close()
