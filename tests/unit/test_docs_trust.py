"""docs/trust.md names a test for every bound it states: each named test must exist."""

from __future__ import annotations

import ast
import re

import pytest

from marketplace.settings import PACKAGE_ROOT

pytestmark = pytest.mark.unit

DOC = PACKAGE_ROOT / "docs" / "trust.md"
DEFAULT = PACKAGE_ROOT / "tests" / "chain" / "test_market_trust.py"


def _tests_in(path) -> set[str]:
    return {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)
            and n.name.startswith("test_")}


def test_every_test_the_trust_page_names_exists():
    text = DOC.read_text()
    named = re.findall(r"`(?:(tests/[\w/]+\.py)::)?(test_\w+)`", text)
    assert len(named) > 25
    missing = [f"{path or DEFAULT.relative_to(PACKAGE_ROOT)}::{name}" for path, name in named
               if name not in _tests_in(PACKAGE_ROOT / path if path else DEFAULT)]
    assert not missing, missing


def test_every_finding_of_the_review_has_its_test():
    names = _tests_in(DEFAULT)
    for finding in ("F1", "F2", "F3", "F4", "F5", "F6", "F7", "F8"):
        assert any(n.startswith(f"test_{finding}_") for n in names), finding
    assert sum(n.startswith("test_low_") for n in names) >= 8
