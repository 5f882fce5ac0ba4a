"""``cona bench zk`` in quick mode: the keys issue 8 promises, with values that make sense.

No timing threshold (figures are measured by ``cona bench zk``, not by tests). What must hold
whatever the machine: every promised key is there and positive; a ring of 16 costs more than
a ring of 4 to prove, verify and check on chain; the gas grows linearly with the ring (the
slope is the per-key cost of 4 ecMul + 2 ecAdd + a keccak, between 20k and 40k gas); the
proof is exactly 103 + 96n bytes; the p50 aliases are the n = 16 figures.
"""

from __future__ import annotations

import pytest

from bench import zk as bench_zk
from zk import proof_length

pytestmark = pytest.mark.bench

SIZES = (4, 16, 32)
PROMISED = ({"prove_ms_p50", "verify_ms_p50"} | {f"prove_ms_{n}" for n in SIZES}
            | {f"verify_ms_{n}" for n in SIZES} | {f"verify_gas_{n}" for n in SIZES})


@pytest.fixture(scope="module")
def figures() -> dict:
    return bench_zk.run(quick=True)


def test_every_promised_key_is_a_positive_number(figures: dict):
    missing = PROMISED - set(figures)
    assert not missing, sorted(missing)
    for key in PROMISED:
        assert isinstance(figures[key], (int, float)) and figures[key] > 0, (key, figures[key])


def test_the_figures_are_consistent(figures: dict):
    assert figures["prove_ms_p50"] == figures["prove_ms_16"]
    assert figures["verify_ms_p50"] == figures["verify_ms_16"]
    for what in ("prove_ms", "verify_ms", "verify_gas"):
        assert figures[f"{what}_4"] < figures[f"{what}_16"] < figures[f"{what}_32"], what
    for n in SIZES:
        assert figures[f"proof_bytes_{n}"] == proof_length(n) == 103 + 96 * n
        # the transaction adds intrinsic gas, calldata and the nullifier's store to the bare call
        assert figures[f"verify_gas_{n}"] > figures[f"verify_call_gas_{n}"] + 21_000
    assert 20_000 < figures["gas_per_key"] < 40_000
    slope_16 = (figures["verify_gas_16"] - figures["verify_gas_4"]) / 12
    assert abs(slope_16 - figures["gas_per_key"]) / figures["gas_per_key"] < 0.05  # linear in n
