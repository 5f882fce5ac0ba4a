"""The matcher's fast paths give the same numbers as the plain computations they stand for.

The hot path of a round computes a provider's fragmentation one node at a time in plain
Python (``node_frag1``), simulates a single new provider state in plain Python
(``PlacementMemo._fill_one``), reuses the simulated fragmentation when it reserves
(``ProviderIndex.take(frag_after=...)``) and shares one memo between asks that differ only in
memory. Each must agree bit for bit with the batch computation, on states the real trace
produces."""

from __future__ import annotations

import numpy as np
import pytest

from marketplace.matching import MatchingConfig, Scheduler
from marketplace.matching import trace
from marketplace.matching.fragmentation import FragmentationModel
from marketplace.matching.placement import PlacementMemo, memo_key, simulate
from marketplace.resources.model import DeviceClass
from tests.unit.matching_fixtures import nodes, pods, workload

pytestmark = pytest.mark.unit


def _played(n_nodes: int = 120, n_orders: int = 600) -> Scheduler:
    """A scheduler after placing real trace orders on real trace nodes (varied free states)."""
    s = Scheduler(trace.providers(nodes()[:n_nodes], n_nodes), workload=workload(None),
                  config=MatchingConfig(batch_size=50))
    for o in trace.orders(pods(), n_orders):
        s.submit(o)
    while len(s.queue):
        s.schedule_round(1e7)
    return s


def test_one_node_and_batch_fragmentation_are_the_same_bits():
    model = FragmentationModel(workload(None))
    rng = np.random.default_rng(11)
    parts = sorted({t.share_milli for t in model.dist.types} | {0, 1000})
    free = rng.choice(parts, size=(400, 8)).astype(np.int32)
    free[:, 5:] = rng.integers(0, 1001, size=(400, 3))  # parts that are no task's share too
    cpu = rng.integers(0, 128_000, 400)
    mem = rng.integers(0, 500_000, 400)
    batch = model.node_frag(free, cpu, mem)
    one = [model.node_frag1(free[i].tolist(), int(cpu[i]), int(mem[i])) for i in range(400)]
    assert batch.tolist() == one
    # a value does not depend on the batch it was computed in
    for lo, hi in ((0, 1), (3, 7), (10, 42), (100, 400)):
        assert model.node_frag(free[lo:hi], cpu[lo:hi], mem[lo:hi]).tolist() == one[lo:hi]


def test_fgd_slot_one_row_equals_the_batch_choice():
    s = _played()
    ix = s.index
    cs = ix.slots[DeviceClass.GPU]
    rows = np.arange(ix.n)
    for share in (50, 230, 500, 810):
        free = cs.free[rows]
        cpu = ix.cpu_free[rows] - 1000
        mem = ix.mem_free[rows]
        slot, after = ix.fgd_slot(free, free >= share, cpu, mem, share, ix.frag_acc[rows], with_frag=True)
        for i in rows.tolist():
            j, f = ix.fgd_slot1(free[i].tolist(), int(cpu[i]), int(mem[i]), share, int(ix.frag_acc[i]))
            assert j == slot[i]
            assert (np.isnan(f) and np.isnan(after[i])) or f == after[i]


def test_memo_and_index_fragmentation_equal_a_fresh_batch_computation():
    """After many placements (one-by-one and batch fills, reused fragmentation on reserve),
    every memo entry equals a fresh batch simulation of its state, for the memo's own asks
    and for an ask that differs only in memory, and the index's per-row fragmentation equals
    a fresh computation."""
    s = _played()
    ix = s.index
    assert ix.memo_ignores_memory  # the paper's measure reads no memory
    assert ix.frag.tolist() == ix.frag_of(np.arange(ix.n)).tolist()
    checked = 0
    for o in trace.orders(pods(), 900)[600:]:
        req = o.requirement
        memo = ix.memos.get(memo_key(ix, req))
        if memo is None:
            continue
        rows = np.flatnonzero(s.feasible(o, 1e7))
        sid = ix.state[rows]
        known = memo.known[sid] if len(sid) and sid.max() < len(memo.known) else np.zeros(len(rows), bool)
        rows, sid = rows[known], sid[known]
        if not len(rows):
            continue
        free, order, cpu, mem, after = simulate(ix, req, rows, with_frag=True)
        assert memo.after[sid].tolist() == after.tolist()
        assert memo.delta[sid].tolist() == np.round(after - ix.frag[rows], 6).tolist()
        if free is not None:
            cap = ix.slots[req.device_class].cap[rows].sum(axis=1)
            assert memo.fit[sid].tolist() == (1.0 - free.sum(axis=1) / np.maximum(cap, 1)).tolist()
            assert memo.slots[sid].tolist() == order.tolist()
        checked += len(rows)
    assert checked > 1000


def test_one_by_one_and_batch_fills_agree():
    s = _played(n_orders=300)
    ix = s.index
    for o in trace.orders(pods(), 500)[300:]:
        rows = np.flatnonzero(s.feasible(o, 1e7))
        if not len(rows):
            continue
        a = PlacementMemo(o.requirement.count)
        b = PlacementMemo(o.requirement.count)
        a.fill(ix, o.requirement, rows)
        sid = b.fill(ix, o.requirement, rows[:1])  # one new state: the plain-Python path
        for r in rows[1:].tolist():
            b.fill(ix, o.requirement, np.array([r]))
        sid = ix.state[rows]
        for name in ("known", "delta", "fit", "after", "slots"):
            assert getattr(a, name)[sid].tolist() == getattr(b, name)[sid].tolist(), name
