"""The ATC'23 FGD paper's evaluation protocol ("workload inflation") on the project's scheduler.

Weng et al., "Beware of Fragmentation" (USENIX ATC'23), evaluate on their simulator
(hkust-adsl/kubernetes-scheduler-simulator, ``TunePodsByNodeTotalResource`` and
``SortClusterPods``): the pod list is shuffled, then pods drawn uniformly with replacement
are appended until the GPU demand reaches 130 % of the cluster's GPU capacity (a list that
asks more is first cut by removing pods at random until it asks at most 130 %, then topped
up the same way, so every sequence ends with the arrival that crosses 130 %); the pods arrive
one at a time, nothing is released, a pod that cannot be placed stays unplaced, and the
share of the GPU capacity allocated is recorded against the arrived demand. Ten seeds.

Here: the same sequence from ``numpy.random.default_rng(seed)``; each arrival is one order
submitted to a ``Scheduler`` of the policy under test and matched in a round of its own
(``round_orders`` > 1 lets a policy match the arrivals of several in one round: the
engine's batches); an order the round does not bind is withdrawn (the simulator leaves a
failed pod unscheduled); an order no provider could ever take is refused at submit, with
reasons. Providers are the node list under ids prefixed by a seeded permutation (the
simulator names nodes ``%04d-`` by a random permutation, which orders ties).

``allocation`` at k % is the share of the GPU capacity allocated right after the first
arrival that brings the arrived GPU demand to k % of the capacity; ``unalloc_at_100`` is
1 - allocation at 100 %; ``until`` cuts a sequence at that arrival (the unallocation floor of
``marketplace.matching.floor`` bounds ``unalloc_at_100`` from below on it). Every placement
is checked against its order's GPU models (``gpu_spec_violations``, which must be 0).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from marketplace.errors import InputError, Unschedulable
from marketplace.matching import MatchingConfig, Order, Outcome, Scheduler, WorkloadDistribution
from marketplace.matching import trace
from marketplace.matching.trace import TraceNode, TracePod
from marketplace.resources.model import DeviceClass
from marketplace.resources.requirement import model_matches

log = logging.getLogger(__name__)

#: the paper's arrival target, in multiples of the cluster's GPU capacity
RATIO = 1.3
#: arrived demand (percent of capacity) at which the allocation is recorded
MARKS = tuple(range(0, 131, 10))


def arrivals(pods: Sequence[TracePod], capacity_milli: int, seed: int, ratio: float = RATIO) -> list[TracePod]:
    """The inflated arrival sequence of one seed (see the module docstring). ``InputError`` for
    a cluster without GPUs, a ratio that is not positive, or a pod list with no GPU pod (no
    number of draws would reach the target)."""
    if capacity_milli <= 0:
        raise InputError(f"the cluster has no GPU capacity ({capacity_milli} milli-GPUs): nothing to inflate against",
                         field="nodes")
    if not ratio > 0:
        raise InputError(f"the arrival ratio must be positive, not {ratio}", field="ratio")
    if not any(p.gpu_milli > 0 for p in pods):
        raise InputError(f"the pod list has no pod that asks a GPU ({len(pods)} pods): the arrived GPU demand "
                         "can never reach the target", field="pods")
    rng = np.random.default_rng(seed)
    seq = [pods[int(i)] for i in rng.permutation(len(pods))]
    target = ratio * capacity_milli
    total = sum(p.gpu_milli for p in seq)
    while total > target and seq:
        total -= seq.pop(int(rng.integers(len(seq)))).gpu_milli
    while total < target:
        p = pods[int(rng.integers(len(pods)))]
        seq.append(p)
        total += p.gpu_milli
    return seq


def until(seq: Sequence[TracePod], capacity_milli: int, percent: int = 100) -> list[TracePod]:
    """The arrivals of ``seq`` up to and including the first that brings the arrived GPU demand
    to ``percent`` % of ``capacity_milli`` (the arrival after whose round ``run`` records that
    mark); all of ``seq`` if none does."""
    arrived = 0
    for k, pod in enumerate(seq):
        arrived += pod.gpu_milli
        if arrived * 100 >= percent * capacity_milli:
            return list(seq[:k + 1])
    return list(seq)


@dataclass
class Run:
    """One policy on one seed's arrivals."""

    allocation: dict[int, float] = field(default_factory=dict)
    placed: int = 0
    failed: int = 0
    refused: int = 0
    violations: int = 0
    #: GPU share allocated when the first order could not be placed (None: none failed)
    first_failure: float | None = None

    @property
    def unalloc_at_100(self) -> float:
        return 1.0 - self.allocation[100]


def node_name(seed: int, count: int):
    """Provider ids ``%04d-<sn>`` by a seeded permutation, as the simulator names its nodes."""
    perm = np.random.default_rng(seed + 7919).permutation(count)
    return lambda i, node, k: f"{int(perm[i]):04d}-{node.sn}" + ("" if k == 0 else f"~{k}")


def run(nodes: Sequence[TraceNode], seq: Sequence[TracePod], config: MatchingConfig,
        workload: WorkloadDistribution | None, seed: int, *, round_orders: int = 1,
        marks: Sequence[int] = MARKS) -> Run:
    """Match ``seq`` with ``config`` (see the module docstring)."""
    s = Scheduler(trace.providers(nodes, len(nodes), name=node_name(seed, len(nodes))), config=config,
                  workload=workload)
    capacity = s.index.capacity_milli(DeviceClass.GPU)
    model_of = {p.provider_id: next((d.model for d in p.descriptor.devices if d.device_class == DeviceClass.GPU),
                                    "") for p in s.index.providers}
    out = Run()
    todo = sorted(marks)
    arrived = 0
    batch: list[Order] = []
    for k, pod in enumerate(seq):
        o = Order(f"{pod.name}~s{seed}~{k}", pod.requirement, pod.tier, None, float(k))
        arrived += pod.gpu_milli
        try:
            s.submit(o)
            batch.append(o)
        except Unschedulable:
            out.refused += 1
        crossed = bool(todo) and arrived * 100 >= todo[0] * capacity
        if batch and (len(batch) >= round_orders or crossed or k == len(seq) - 1):
            _round(s, batch, float(k), model_of, out, capacity)
            batch = []
        while todo and arrived * 100 >= todo[0] * capacity:
            out.allocation[todo.pop(0)] = s.index.used_milli(DeviceClass.GPU) / capacity
    for m in todo:  # a sequence that stops short of a mark (a list too small to reach it)
        out.allocation[m] = s.index.used_milli(DeviceClass.GPU) / capacity
    return out


def _round(s: Scheduler, batch: list[Order], now: float, model_of: dict[str, str], out: Run, capacity: int) -> None:
    by_id = {o.order_id: o for o in batch}
    result = s.schedule_round(now)
    bound = 0
    for d in result.decisions:
        if d.outcome == Outcome.BOUND:
            bound += 1
            models = by_id[d.order_id].requirement.models
            if models and not model_matches(models, model_of[d.provider_id]):
                out.violations += 1
    out.placed += bound
    if bound < len(batch):
        out.failed += len(batch) - bound
        if out.first_failure is None:
            out.first_failure = s.index.used_milli(DeviceClass.GPU) / capacity
    for oid in by_id:
        if oid in s.queue:
            s.queue.remove(oid)  # not placed in its round: left unscheduled, as the simulator leaves it
