"""`cona up`, the main job: it comes up with its demo agents as real processes, and Ctrl-C stops
everything it started, leaving no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from marketplace.chain.backends import free_port
from marketplace.settings import PACKAGE_ROOT
from tests.e2e.up_env import descendants

pytestmark = pytest.mark.e2e


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_up_serves_the_market_and_ctrl_c_leaves_nothing_running(tmp_path):
    port = free_port()
    env = {**os.environ, "CONA_DATA_DIR": str(tmp_path / "state"), "CONA_CHAIN": "embedded"}
    log = open(tmp_path / "up.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "marketplace.cli.main", "up", "--port", str(port),
                             "--providers", "2"], cwd=PACKAGE_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    api = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while "CONA is up" not in (tmp_path / "up.log").read_text():
            assert proc.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "cona up did not come up in 120 s"
            time.sleep(0.2)
        providers = httpx.get(f"{api}/v1/providers", timeout=5).json()
        assert sorted(p["hostname"] for p in providers) == ["h100-server", "l40s-server"]
        assert httpx.get(f"{api}/readyz", timeout=5).json()["status"] == "ready"
        page = httpx.get(f"{api}/", timeout=5)
        assert page.status_code == 200 and "CONA" in page.text
        agents = descendants(proc.pid)
        assert len(agents) >= 2, "the demo agents run as processes of their own"

        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in agents) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in agents if _alive(p)], "a process outlived cona up"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
