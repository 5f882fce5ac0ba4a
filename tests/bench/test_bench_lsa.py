"""``bench/lsa.py`` in quick mode: it runs, checks its own decodes, and reports its promised keys."""

from __future__ import annotations

import pytest

from bench import lsa

pytestmark = pytest.mark.bench


def test_lsa_bench_quick_reports_rates():
    figures = lsa.run(quick=True)
    for key in ("lsa_decode_per_s", "lsa_verify_per_s", "lsa_decode_cold_per_s"):
        assert isinstance(figures[key], float) and figures[key] > 0, key
    # verifying includes decoding plus an ECDSA recovery, so it can never be the faster one
    assert figures["lsa_verify_per_s"] < figures["lsa_decode_per_s"]
    assert figures["lsa_count"] == 3 * 20 * 4 and 0 < figures["lsa_bytes_h100"] <= 1492
