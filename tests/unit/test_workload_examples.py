"""The example buyer modules are what their sources build to, under the recorded toolchains."""

from __future__ import annotations

import hashlib

import pytest

from provider_agent.workloads.examples import LANGS, build_example, check_examples, load_example, \
    recorded_toolchain, toolchain

pytestmark = pytest.mark.unit


def test_committed_examples_match_the_manifest():
    assert check_examples() == []


@pytest.mark.parametrize("lang", sorted(LANGS))
def test_the_source_rebuilds_to_the_committed_bytes(lang):
    here = toolchain(lang)
    if here is None:
        pytest.skip(f"the {lang} toolchain is not installed (make bootstrap installs it)")
    if here != recorded_toolchain(lang):
        pytest.skip(f"{lang}: built with {recorded_toolchain(lang)}, this machine has {here}; another compiler "
                    "version gives other bytes")
    built = build_example(lang)
    assert hashlib.sha256(built).hexdigest() == hashlib.sha256(load_example(lang)).hexdigest()
