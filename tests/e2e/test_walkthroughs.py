"""The README's walkthroughs, run as written: every line of every ```sh block between the
``walkthroughs`` markers, in order, with bash, against a market this test starts itself.

The market is ``cona up`` as a subprocess (the embedded chain, the engine, the API and the
five demo provider agents) on a free port, with its own state directory and ``HOME``, so
nothing of the developer's machine is touched. Each line runs in a fresh ``bash`` that
first restores the variables earlier lines assigned (``ORDER=$(...)``), exactly as if the
reader typed the lines into one shell. The test fails on the first line that exits non-zero,
and checks the key outputs: the order reaches Settled with a refund, the result is the
SHA-256 of the input, the cancel refunds, the contributor's lease settles and is withdrawn,
the audit replays the history and the escrow balances, and the batch replays.

``CONA_WALKTHROUGH_PATH`` (optional) is put first on every line's ``PATH``: it runs the
walkthrough against another installation of the ``cona`` commands.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from marketplace.settings import PACKAGE_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

README = PACKAGE_ROOT / "README.md"
START, END = "<!-- walkthroughs:start -->", "<!-- walkthroughs:end -->"
_ASSIGN = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=")

#: what the key lines must print (regex on stdout + stderr), by the start of the command
EXPECT: list[tuple[str, str]] = [
    ("cona topology", r"Geant2012: 40 nodes, 61 links, 5 providers"),
    ("cona providers", r"2 provider\(s\)"),  # of five, the H100 and the L40S have >= 40 GB per GPU
    ("cona quote", r"provider\(s\) fit"),
    ("ORDER=$(cona order place", r"Completed"),
    ("cona order result $ORDER", r"ok \(exit 0\).* matches the chain "
                                 + hashlib.sha256(b"hello, world").hexdigest()),
    ("cona order watch $ORDER", r"order \d+ Settled .*refunded the unused [1-9]\d* wei"),
    ("cona order balance", r"[1-9]\d* wei free in the market"),
    ("cona order explain", r"needs TPU"),
    ("cona order cancel", r"cancelled by .*Cancelled refund=[1-9]\d*"),
    ("cona-agent discover", r"H100"),
    ("cona-agent register", r"registered 0x"),
    ("cona-agent status", r"ACTIVE|active"),
    ("cona order watch $LEASE", r"order \d+ Settled"),
    ("cona-agent withdraw", r"withdrew [1-9]\d* wei from the market"),
    ("WC=$(cona order place", r"Completed"),
    ("cona order result $WC", r"counts\.tsv: 15 bytes, sha256 [0-9a-f]{64} checked, written to"),
    ("cat ~/wc-out/counts.tsv", r"^fox\.txt 2 9 44$"),
    ("cona order verify $WC", r"re-run here ok with \d+ fuel; result 0x[0-9a-f]{64} matches the chain"),
    ("cona artifact image", r"^sha256:[0-9a-f]{64}$"),
    ("BOX=$(cona order place", r"Completed"),
    ("cona order result $BOX", r"ok \(exit 0\).* words\.txt: 2 bytes, sha256 [0-9a-f]{64} checked"),
    ("cat ~/box-out/words.txt", r"^9$"),
    ("cona audit order", r"the events replay to the contract's state"),
    ("cona audit provider", r"the events replay to the registry's record"),
    ("cona audit escrow", r"balanced: each contract holds what it owes"),
    ("cona audit replay", r"reproduced"),
    ("cona admin terms", r"applied ComputeMarket\.setSettings\(\(150,\s+\d+,\s+\d+,\s+\d+,\s+\d+,\s+600,"),
    ("cona audit governance", r"(?s)timelock, least delay 0 s.*\b150\b.*consistent: every change is an event"),
]


def walkthrough_lines(text: str) -> list[str]:
    """The command lines of the ```sh blocks between the markers (comments and blanks dropped)."""
    if START not in text or END not in text:
        raise AssertionError("README.md lacks the walkthrough markers")
    body = text[text.index(START) + len(START):text.index(END)]
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", body, flags=re.S):
        for line in block.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def test_the_readme_lists_the_walkthroughs() -> None:
    text = README.read_text()
    lines = walkthrough_lines(text)
    body = text[text.index(START):text.index(END)]
    for heading in ("### A buyer", "### A contributor", "### Bring your own program", "### Bring your own container",
                    "### An auditor", "### An operator"):
        assert heading in body
    for needle in ("cona order place", "--watch", "cona-agent register", "cona-agent run", "cona-agent withdraw",
                   "cona audit order", "cona audit escrow", "cona audit replay", "cona order cancel",
                   "clang --target=wasm32-wasi", "--wasm ", "--out-dir", "cona order verify", "cona artifact image",
                   "--image ", "cona admin terms", "cona audit governance"):
        assert any(needle in ln for ln in lines), needle
    # every expectation names a line that exists, so no check is silently skipped
    for prefix, _ in EXPECT:
        assert any(ln.startswith(prefix) for ln in lines), prefix


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("walk")
    home = tmp / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "CONA_DATA_DIR": str(tmp / "state"), "CONA_CHAIN": "embedded"}
    env.pop("CONA_API_URL", None)
    extra = os.environ.get("CONA_WALKTHROUGH_PATH")
    bin_dir = Path(sys.executable).parent
    env["PATH"] = (f"{extra}:" if extra else "") + f"{bin_dir}:{env.get('PATH', '')}"
    port = _free_port()
    log = open(tmp / "up.log", "wb")
    proc = subprocess.Popen(["cona", "up", "--port", str(port), "--providers", "5"], cwd=PACKAGE_ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"cona up exited with {proc.returncode}:\n{(tmp / 'up.log').read_text()[-3000:]}")
            try:
                if len(httpx.get(f"{api}/v1/providers", timeout=2).json()) == 5 and \
                        "CONA is up" in (tmp / "up.log").read_text():
                    break
            except (httpx.HTTPError, ValueError, TypeError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the market did not come up within 180 s:\n" + (tmp / "up.log").read_text()[-3000:])
            time.sleep(0.5)
        yield {"api": api, "env": env, "tmp": tmp, "home": home}
    finally:
        pid_file = home / "agent.pid"
        if pid_file.exists():  # the contributor's daemon, if a failure left it running
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_every_walkthrough_command_runs(market) -> None:
    lines = walkthrough_lines(README.read_text())
    state = market["tmp"] / "vars.sh"
    state.write_text(f"export API={market['api']}\n")
    extra = os.environ.get("CONA_WALKTHROUGH_PATH")
    started = time.monotonic()
    for line in lines:
        names = [m.group(1) for m in [_ASSIGN.match(line)] if m]
        script = (f"source {state}\n"
                  + (f'export PATH="{extra}:$PATH"\n' if extra else "")
                  + f"{line}\n"
                  + (f"rc=$?; declare -p {' '.join(names)} >> {state} 2>/dev/null; exit $rc\n" if names else ""))
        # after an `export PATH=...` line the venv's bin is first, as for a reader in the project directory
        t0 = time.monotonic()
        run = subprocess.run(["bash", "-c", script], cwd=PACKAGE_ROOT, env=market["env"], capture_output=True,
                             text=True, timeout=240)
        output = run.stdout + run.stderr
        flat = " ".join(output.split())  # rich wraps lines at 80 columns off a terminal
        assert run.returncode == 0, f"`{line}` exited {run.returncode} after {time.monotonic() - t0:.1f}s:\n{output}"
        if names and names[0] == "PATH" or line.startswith("export API"):
            _keep_exports(state, line, market)
        for prefix, pattern in EXPECT:
            if line.startswith(prefix):
                assert re.search(pattern, flat), f"`{line}` did not print /{pattern}/:\n{output}"
    elapsed = time.monotonic() - started
    assert elapsed < 300, f"the walkthroughs took {elapsed:.0f}s"


def _keep_exports(state: Path, line: str, market) -> None:
    """The set-up line exports API (kept if set: ours) and PATH (the venv first): record PATH."""
    with state.open("a") as fh:
        fh.write(f'export PATH="{PACKAGE_ROOT}/.venv/bin:$PATH"\n')
