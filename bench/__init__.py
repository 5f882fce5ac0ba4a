"""Benchmarks. Each module has ``run(quick: bool = False) -> dict`` and is run by ``cona bench NAME``.

Figures are measured, never asserted in tests: ``tests/unit/test_bench_smoke.py`` only
checks that every benchmark runs (quick mode) and returns the keys it promises.
"""
