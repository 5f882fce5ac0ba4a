"""The supervisor (``marketplace/supervisor.py``) with real processes: a child started with
``restart=True`` (``cona up``'s demo agents) is started again after a SIGKILL, with the same command
and log file; one that keeps dying waits longer each time; ``stop`` and ``stop_all`` end the restarts
before they stop the children, and leave nothing running."""

from __future__ import annotations

import sys
import time

import pytest

from marketplace import supervisor as sup
from marketplace.supervisor import Supervisor

pytestmark = pytest.mark.e2e

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]


def _until(cond, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_killed_child_is_started_again_and_a_stopped_one_is_not(tmp_path):
    s = Supervisor(tmp_path / "logs", grace=2.0)
    try:
        kept = s.start("kept", SLEEPER, restart=True)
        once = s.start("once", SLEEPER)
        first = kept.pid
        _until(lambda: kept.log_path.read_text().count("up") == 1)
        s.kill(kept)
        _until(lambda: kept.alive() and kept.pid != first)
        assert kept.restarts == 1
        _until(lambda: kept.log_path.read_text().count("up") == 2)  # same log, appended
        s.kill(once)
        time.sleep(sup.RESTART_FIRST_S + 3 * sup.WATCH_PERIOD_S)
        assert not once.alive()  # not restartable: stays down
        s.stop(kept)
        time.sleep(sup.RESTART_FIRST_S + 3 * sup.WATCH_PERIOD_S)
        assert not kept.alive()  # stopped on purpose: not started again
    finally:
        s.stop_all()
    assert not any(c.alive() for c in s.children)


def test_a_child_that_keeps_dying_backs_off_and_stop_all_ends_it(tmp_path):
    s = Supervisor(tmp_path / "logs", grace=2.0)
    crash = s.start("crash", [sys.executable, "-c", "raise SystemExit(3)"], restart=True)
    try:
        _until(lambda: crash.restarts >= 3)
        gaps = []
        t = time.monotonic()
        for n in (4, 5):
            _until(lambda: crash.restarts >= n, timeout=30)
            gaps.append(time.monotonic() - t)
            t = time.monotonic()
        assert gaps[1] > gaps[0] >= sup.RESTART_FIRST_S * 2 ** 3 * 0.9  # doubling
    finally:
        s.stop_all()
    count = crash.restarts
    time.sleep(sup.RESTART_FIRST_S * 2 + 3 * sup.WATCH_PERIOD_S)
    assert crash.restarts == count and not crash.alive()
