"""The Slither gate of ``make test`` fails on a High finding and passes the project's contracts.

``make test`` builds ``.venv-slither`` before pytest runs (Slither pins web3 below the project's,
so it has its own environment) and runs the gate over ``contracts/`` first; this test shows the
gate can fail, on a deliberately unsafe contract, and that its compiler shim is the project's.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from marketplace.settings import PACKAGE_ROOT

pytestmark = pytest.mark.e2e

SLITHER = PACKAGE_ROOT / ".venv-slither" / "bin" / "slither"
GATE = PACKAGE_ROOT / "tools" / "slither" / "gate.py"


@pytest.fixture(scope="module")
def slither():
    if not SLITHER.exists():
        pytest.skip("no .venv-slither: `make test` (or `make slither`) builds it")
    return SLITHER


def test_the_gate_fails_on_a_reentrancy(slither):
    proc = subprocess.run([sys.executable, str(GATE), "--target", "tests/fixtures/solidity/"], cwd=PACKAGE_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[High] reentrancy-eth" in proc.stdout and "Reentrant.withdraw" in proc.stdout


def test_the_solc_shim_answers_as_the_pinned_compiler():
    out = subprocess.run([str(PACKAGE_ROOT / "tools" / "slither" / "solc"), "--version"], capture_output=True,
                         text=True, timeout=60).stdout
    assert "Version: 0.8.28+" in out
