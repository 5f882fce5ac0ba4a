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
