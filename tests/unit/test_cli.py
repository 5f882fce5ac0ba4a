"""The CLI: thin, scriptable (--json), clear on errors, helpful on typos."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.unit


def cona(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "marketplace.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


def test_compile_check_reports_fresh_artifacts_as_json():
    proc = cona("compile", "--check", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"fresh": True, "problems": []}


def test_mistyped_command_gets_a_suggestion():
    proc = cona("compil")
    assert proc.returncode != 0
    assert "Did you mean 'compile'" in proc.stderr


def test_a_cona_error_is_one_line_with_a_hint_and_no_traceback():
    import os

    env = dict(os.environ, CONA_ROOT="/nonexistent")
    proc = cona("compile", "--check", env=env)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "hint:" in proc.stderr and "CONA_ROOT" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_refuses_the_embedded_chain_as_one_error_line():
    proc = cona("serve", "--chain", "embedded")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error:" in proc.stderr and "embedded chain lives in one process" in proc.stderr and "hint:" in proc.stderr


def test_a_group_runs_alone_with_the_same_error_handling():
    proc = subprocess.run([sys.executable, "-m", "marketplace.cli.audit", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and "replay" in proc.stdout and "escrow" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "marketplace.cli.orders", "watch", "1", "--until", "never"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "--until 'never' is not an order state" in proc.stderr
    assert "Traceback" not in proc.stderr
