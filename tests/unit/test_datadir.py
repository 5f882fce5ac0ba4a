"""The market's data directory (``marketplace/datadir.py``): one process holds it, its pid named to a
second; a holder killed with SIGKILL blocks no one; ``--fresh`` wipes the market's state and nothing
else; a state directory is kept only for the market it was claimed for."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from marketplace.datadir import LOCK_NAME, MARKET_ENTRIES, DataDir, DataDirInUse, claim_for_market
from marketplace.errors import ConfigError


def test_one_holder_at_a_time_and_the_second_is_told_who(tmp_path):
    first = DataDir(tmp_path / "d").claim()
    assert (tmp_path / "d" / LOCK_NAME).read_text().strip() == str(os.getpid())
    for attempt in (lambda: DataDir(tmp_path / "d").claim(), lambda: DataDir(tmp_path / "d").claim(fresh=True),
                    lambda: DataDir(tmp_path / "d").check_free()):
        with pytest.raises(DataDirInUse) as busy:
            attempt()
        assert f"pid {os.getpid()}" in busy.value.message and busy.value.fields["field"] == "data_dir"
    first.release()
    first.release()  # idempotent
    DataDir(tmp_path / "d").check_free()
    DataDir(tmp_path / "d").claim().release()


def test_a_holder_killed_with_sigkill_leaves_the_directory_free(tmp_path):
    code = ("import sys, time; from pathlib import Path; from marketplace.datadir import DataDir; "
            "DataDir(Path(sys.argv[1])).claim(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "d")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DataDirInUse, match=f"pid {holder.pid}"):
            DataDir(tmp_path / "d").claim()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        assert (tmp_path / "d" / LOCK_NAME).exists()  # the file stays; the lock died with its process
        DataDir(tmp_path / "d").claim().release()
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=10)
        holder.stdout.close()


def test_fresh_wipes_the_market_and_nothing_it_does_not_know(tmp_path):
    root = tmp_path / "d"
    for name in MARKET_ENTRIES:
        (root / name / "inner").mkdir(parents=True)
        (root / name / "inner" / "f").write_text("x")
    (root / "notes.txt").write_text("mine")
    (root / "photos").mkdir()
    held = DataDir(root).claim(fresh=True)
    try:
        assert sorted(p.name for p in root.iterdir()) == sorted([LOCK_NAME, "notes.txt", "photos"])
        assert held.wipe() == []  # nothing left to remove
    finally:
        held.release()
    with pytest.raises(ConfigError, match="must be held"):
        DataDir(root).wipe()


def test_a_state_directory_is_kept_only_for_its_market(tmp_path):
    d = tmp_path / "engine"
    mark = {"genesis": "0x" + "aa" * 32, "market": "0x" + "11" * 20}
    assert claim_for_market(d, mark) is False and json.loads((d / "market.json").read_text()) == mark
    (d / "journal").write_text("kept")
    assert claim_for_market(d, mark) is True and (d / "journal").exists()
    assert claim_for_market(d, {**mark, "market": "0x" + "22" * 20}) is False and not (d / "journal").exists()
    (d / "journal").write_text("x")
    (d / "market.json").write_text("{torn")
    assert claim_for_market(d, mark) is False and not (d / "journal").exists()
    (d / "journal").write_text("x")
    assert claim_for_market(d, mark, fresh=True) is False and not (d / "journal").exists()
