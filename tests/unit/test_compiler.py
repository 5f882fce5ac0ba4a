"""The compile pipeline: committed artifacts are fresh, staleness and compiler errors are reported clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from marketplace.chain.compiler import (
    SourceTree,
    check_artifacts,
    compile_project,
    ensure_fresh,
    load_artifact,
    run_compiler,
)
from marketplace.errors import ArtifactError, CompilerError
from marketplace.settings import ProjectConfig

ROOT = Path(__file__).resolve().parents[2]


def test_committed_artifacts_match_their_sources():
    """Fails when a contract changed and `cona compile` was not run (or its output not committed)."""
    problems = check_artifacts(ProjectConfig.load(ROOT))
    assert problems == [], "stale artifacts:\n" + "\n".join(problems)


def _scratch_project(tmp_path: Path, sources: dict[str, str]) -> ProjectConfig:
    shutil.copy(ROOT / "brownie-config.yaml", tmp_path / "brownie-config.yaml")
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    for name, text in sources.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return ProjectConfig.load(tmp_path)


GOOD = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;
import {Helper} from "./lib/Helper.sol";
contract Good { function twice(uint256 x) external pure returns (uint256) { return Helper.double(x); } }
"""
HELPER = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;
library Helper { function double(uint256 x) internal pure returns (uint256) { return 2 * x; } }
"""


@pytest.mark.chain
def test_compile_writes_artifacts_then_detects_a_changed_import(tmp_path: Path):
    cfg = _scratch_project(tmp_path, {"contracts/Good.sol": GOOD, "contracts/lib/Helper.sol": HELPER})
    report = compile_project(cfg)
    assert report.artifacts == ("Good",)
    art = load_artifact(cfg, "Good")
    assert art.bytecode.startswith("0x6080") and art.compiler_version == "0.8.28"
    assert set(art.source_hashes) == {"contracts/Good.sol", "contracts/lib/Helper.sol"}
    ensure_fresh(cfg)
    # a change in an imported file makes the importer's artifact stale
    (tmp_path / "contracts/lib/Helper.sol").write_text(HELPER.replace("2 * x", "x + x"))
    with pytest.raises(ArtifactError) as info:
        ensure_fresh(cfg)
    assert "contracts/lib/Helper.sol changed" in str(info.value) and "cona compile" in str(info.value)


@pytest.mark.chain
def test_compiler_errors_are_file_and_line(tmp_path: Path):
    broken = GOOD.replace("return Helper.double(x);", "return Helper.double(x)\n")
    cfg = _scratch_project(tmp_path, {"contracts/Good.sol": broken, "contracts/lib/Helper.sol": HELPER})
    before = sorted((tmp_path / "contracts/build").glob("*.json")) if (tmp_path / "contracts/build").exists() else []
    with pytest.raises(CompilerError) as info:
        compile_project(cfg)
    assert "contracts/Good.sol:5: ParserError" in str(info.value)
    after = sorted((tmp_path / "contracts/build").glob("*.json")) if (tmp_path / "contracts/build").exists() else []
    assert before == after  # nothing half-written


def test_source_without_artifact_and_orphan_artifact_are_stale(tmp_path: Path):
    cfg = _scratch_project(tmp_path, {"contracts/New.sol": GOOD})
    build = tmp_path / "contracts/build"
    build.mkdir(parents=True)
    (build / "Gone.json").write_text(json.dumps({
        "sourceName": "contracts/Gone.sol", "sourceHashes": {}, "compiler": {"version": "0.8.28"}}))
    problems = check_artifacts(cfg)
    assert any("contracts/New.sol: has no artifact" in p for p in problems)
    assert any("Gone.json: its source contracts/Gone.sol is no longer compiled" in p for p in problems)


def test_missing_compiler_is_a_clear_error(tmp_path: Path):
    with pytest.raises(CompilerError) as info:
        run_compiler(tmp_path, "0.8.28", {"language": "Solidity", "sources": {}})
    assert "npm ci" in str(info.value)


def test_unknown_artifact_suggests_a_name():
    with pytest.raises(ArtifactError, match="did you mean ChainProbe"):
        load_artifact(ProjectConfig.load(ROOT), "chainprobe")


def test_import_resolution_follows_solc_rules(tmp_path: Path):
    assert SourceTree.resolve("contracts/a/B.sol", "../C.sol") == "contracts/C.sol"
    assert SourceTree.resolve("contracts/B.sol", "./lib/D.sol") == "contracts/lib/D.sol"
    assert SourceTree.resolve("contracts/B.sol", "@openzeppelin/contracts/x.sol") == "@openzeppelin/contracts/x.sol"
    tree = SourceTree(tmp_path, ())
    with pytest.raises(CompilerError, match="cannot find import"):
        tree.locate("contracts/Nope.sol")
