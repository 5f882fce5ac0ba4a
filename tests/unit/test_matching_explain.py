"""explain(order): per provider, every failing filter with numbers, or its per-plugin scores."""

from __future__ import annotations

import numpy as np
import pytest

from marketplace.matching import MatchingConfig, Scheduler
from marketplace.matching import trace
from tests.unit.matching_fixtures import gpu, nodes, order, pods, provider, routing, workload

pytestmark = pytest.mark.unit


def test_explain_agrees_with_the_vectorized_filters_on_real_orders():
    s = Scheduler(trace.providers(nodes(), 200, routing().nodes), routing=routing(), workload=workload(),
                  config=MatchingConfig(batch_size=50))
    orders = trace.orders(pods(), 120, routing().nodes)
    for o in orders[:100]:
        s.submit(o)
    s.schedule_round(1e7)  # some capacity is now taken
    for o in orders[100:]:
        e = s.explain(o)
        feasible = {v.provider_id for v in e.verdicts if v.feasible}
        mask = s.feasible(o, o.submitted_at)
        assert feasible == {s.index.ids[i] for i in np.flatnonzero(mask)}
        for v in e.verdicts:
            if v.feasible:
                assert [line.plugin for line in v.scores] == [n for n, _ in s.config.profile.score] + list(s.config.profile.tie_break)
                assert all(0.0 <= line.normalized <= 100.0 for line in v.scores)
                assert 0.0 <= v.total <= 100.0
            else:
                assert v.rejections


def test_explain_gives_numbers():
    s = Scheduler([provider("openb-node-0000"), provider("openb-node-0022")])
    e = s.explain(order("x", gpu(4, cpu_milli=100000)))
    v = e.by_provider()
    assert "needs 4 GPU, has 2" in " ".join(r.message for r in v["openb-node-0000"].rejections)
    assert v["openb-node-0022"].feasible and e.best == "openb-node-0022"


def test_explain_picks_what_the_fast_path_binds():
    """With every feasible provider scored, explain's pick and per-plugin raws are the round's
    own: the memoized placement effects (FGD delta) agree with a fresh simulation."""
    from marketplace.matching.placement import simulate
    cfg = MatchingConfig(batch_size=1, percentage_of_providers_to_score=100)
    s = Scheduler(trace.providers(nodes()[:150], 150), workload=workload(), config=cfg)
    for o in trace.orders(pods(), 400)[::2]:
        e = s.explain(o)
        s.submit(o)
        d = s.schedule_round(o.submitted_at).decisions[0]
        assert d.provider_id == e.best, o.order_id
    # a fresh simulation of the last state gives the memo's numbers
    o = trace.orders(pods(), 402)[401]
    rows = np.flatnonzero(s.feasible(o, 0.0))
    free, _, cpu, mem = simulate(s.index, o.requirement, rows)
    after = s.index.frag_of(rows, free=free, cpu=cpu, mem=mem)
    e = s.explain(o).by_provider()
    for k, i in enumerate(rows.tolist()):
        got = {line.plugin: line.raw for line in e[s.index.ids[i]].scores}
        # the default scores FGD as the paper does: the gradient through a sigmoid, whole points
        assert got["FGDScore"] == np.floor(100.0 / (1.0 + np.exp((after[k] - s.index.frag[i]) / 1000.0)))
