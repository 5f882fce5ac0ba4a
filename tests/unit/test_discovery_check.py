"""`cona-agent discover --check DIR --json`: every fixture folder against its expected.json."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from provider_agent.cli import app
from tests.unit._hw import FIXTURES
from tests.unit._hw_damage import fixture_dirs

pytestmark = pytest.mark.unit


def test_every_fixture_is_right():
    result = CliRunner().invoke(app, ["discover", "--check", str(FIXTURES), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["fixtures"] == len(fixture_dirs()) >= 30
    assert out["right"] == out["fixtures"], [r for r in out["results"] if not r["right"]]


def test_a_wrong_expectation_is_counted_and_named(tmp_path):
    shutil.copytree(FIXTURES / "nvidia-t4-xml", tmp_path / "t4")
    shutil.copytree(FIXTURES / "rocm-mi100-6.0.2", tmp_path / "mi100")
    (tmp_path / "t4" / "expected.json").write_text('{"devices": 2, "memory_mib": [15360]}')
    result = CliRunner().invoke(app, ["discover", "--check", str(tmp_path), "--json"])
    assert result.exit_code == 1
    out = json.loads(result.output)
    assert (out["fixtures"], out["right"]) == (2, 1)
    (bad,) = [r for r in out["results"] if not r["right"]]
    assert bad["fixture"] == "t4" and bad["mismatches"] == ["devices: expected 2, found 1"]
    text = CliRunner().invoke(app, ["discover", "--check", str(tmp_path)])
    assert "WRONG  t4" in text.output and "1 of 2 fixtures right" in text.output


@pytest.mark.parametrize("content, field", [
    ('{"device": 1}', "device"), ('[1]', "expected.json"), ('{"devices": "one"}', "devices"),
    ('{"models": "T4"}', "models"), ("{not json", "expected.json"),
])
def test_bad_expected_json_is_an_error_naming_the_field(tmp_path, content, field):
    shutil.copytree(FIXTURES / "nvidia-t4-xml", tmp_path / "t4")
    (tmp_path / "t4" / "expected.json").write_text(content)
    result = CliRunner().invoke(app, ["discover", "--check", str(tmp_path), "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stderr)["error"]["field"] == field


def test_check_dir_without_fixtures(tmp_path):
    result = CliRunner().invoke(app, ["discover", "--check", str(tmp_path)])
    assert result.exit_code == 2 and "expected.json" in result.output
    missing = CliRunner().invoke(app, ["discover", "--check", str(tmp_path / "nope")])
    assert missing.exit_code == 2
