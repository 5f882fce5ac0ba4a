"""Compute-aware path selection: the provider and the path are chosen together.

``select`` takes the buyer's attachment node and the candidate providers (each attached to
a node of the topology) and returns the feasible ones ranked by path latency, each with its
path and a load-balancing weight. The filter runs before distance is looked at, so a job is
never sent to a nearer provider that cannot run it (a GPU job to a CPU-only node): the
nearest *feasible* provider wins, the way IETF CATS steers to the best service instance
rather than the nearest one.

Invariants:
- every returned choice passed ``fits`` (and ``device_class`` when given), has free
  capacity > 0, is reachable, and is within ``max_latency_ms`` when a bound is given;
- choices are sorted by (latency, provider id), so ranking is deterministic;
- candidates whose latency is within ``tolerance_ms`` of the best form tier 0, the
  equal-cost set; their ``weight`` is their share of the tier's free capacity (weights of
  a tier sum to 1), as weighted ECMP and CATS load-aware steering share load; later tiers
  are grouped the same way;
- every rejected candidate is reported with a reason (``Rejection``), so "why not me?"
  always has an answer.

``pick_balanced`` chooses one choice of tier 0 by weight, deterministically for a given
seed (``random.Random``) or counter (an integer: the n-th job of a stream).
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from marketplace.resources.model import DeviceClass
from marketplace.routing.errors import InvalidTopology, UnknownNode
from marketplace.routing.spf import RoutingTable

log = logging.getLogger(__name__)

#: the golden-ratio conjugate: counter * PHI mod 1 is a low-discrepancy sequence, so a counter
#: spreads picks over the weights as evenly as possible without any state
_PHI = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True, slots=True)
class Candidate:
    """A provider attached to ``node``. ``free`` is its free capacity in the unit the caller
    balances on (e.g. free GPU milli-units); ``device_classes`` what it offers."""

    provider_id: str
    node: str
    free: float
    device_classes: frozenset[DeviceClass] = frozenset()
    price: float | None = None
    data: Any = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Choice:
    """A feasible provider with its path. ``weight`` is its share of its tier's free capacity."""

    provider_id: str
    node: str
    latency_ms: float
    path: tuple[str, ...]
    weight: float
    tier: int = 0
    candidate: Candidate | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A candidate left out, and why: ``unknown-node``, ``no-capacity``, ``device-class``,
    ``does-not-fit``, ``unreachable`` or ``latency-bound``."""

    provider_id: str
    node: str
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Selection:
    choices: tuple[Choice, ...]
    rejected: tuple[Rejection, ...]


def evaluate(table: RoutingTable, source_node: str, candidates: Iterable[Candidate], *,
             max_latency_ms: float | None = None, fits: Callable[[Candidate], bool] | None = None,
             device_class: DeviceClass | None = None, tolerance_ms: float = 0.0) -> Selection:
    """Rank the feasible candidates from ``source_node`` and explain every rejection."""
    if tolerance_ms < 0 or (max_latency_ms is not None and not max_latency_ms >= 0):
        raise InvalidTopology("tolerance_ms and max_latency_ms must be >= 0",
                              tolerance_ms=tolerance_ms, max_latency_ms=max_latency_ms)
    dist = table.distances_from(source_node)
    index = table.node_index
    ok: list[tuple[float, Candidate]] = []
    rejected: list[Rejection] = []
    for c in candidates:
        i = index.get(c.node)
        if i is None:
            rejected.append(Rejection(c.provider_id, c.node, "unknown-node", f"node {c.node!r} not in topology"))
        elif not c.free > 0:
            rejected.append(Rejection(c.provider_id, c.node, "no-capacity", f"free={c.free}"))
        elif device_class is not None and device_class not in c.device_classes:
            have = ",".join(sorted(d.name for d in c.device_classes)) or "none"
            rejected.append(Rejection(c.provider_id, c.node, "device-class",
                                      f"needs {device_class.name}, offers {have}"))
        elif fits is not None and not fits(c):
            rejected.append(Rejection(c.provider_id, c.node, "does-not-fit"))
        elif dist[i] == math.inf:
            rejected.append(Rejection(c.provider_id, c.node, "unreachable", f"from {source_node!r}"))
        elif max_latency_ms is not None and dist[i] > max_latency_ms:
            rejected.append(Rejection(c.provider_id, c.node, "latency-bound",
                                      f"{dist[i]:.3f} ms > {max_latency_ms} ms"))
        else:
            ok.append((float(dist[i]), c))
    for r in rejected:
        log.debug("from %s: provider %s at %s rejected: %s %s", source_node, r.provider_id, r.node, r.reason,
                  r.detail)
    ok.sort(key=lambda x: (x[0], x[1].provider_id))
    choices: list[Choice] = []
    start, tier = 0, 0
    while start < len(ok):
        end = start
        while end < len(ok) and ok[end][0] - ok[start][0] <= tolerance_ms:
            end += 1
        group = ok[start:end]
        total = sum(c.free for _, c in group)
        for lat, c in group:
            choices.append(Choice(c.provider_id, c.node, lat, tuple(table.path(source_node, c.node)),
                                  c.free / total, tier, c))
        start, tier = end, tier + 1
    return Selection(tuple(choices), tuple(rejected))


def select(table: RoutingTable, source_node: str, candidates: Iterable[Candidate], *,
           max_latency_ms: float | None = None, fits: Callable[[Candidate], bool] | None = None,
           device_class: DeviceClass | None = None, tolerance_ms: float = 0.0) -> list[Choice]:
    """The feasible candidates ranked by latency; see ``evaluate`` for the rejections."""
    if source_node not in table.node_index:
        raise UnknownNode(source_node, hint="the buyer must attach to a node of the topology")
    return list(evaluate(table, source_node, candidates, max_latency_ms=max_latency_ms, fits=fits,
                         device_class=device_class, tolerance_ms=tolerance_ms).choices)


def pick_balanced(choices: Sequence[Choice], rng_or_counter: random.Random | int) -> Choice:
    """One choice of the best tier, with probability proportional to its weight.

    With an integer counter the pick is ``counter * PHI mod 1`` on the cumulative weights:
    deterministic, and over consecutive counters each choice's share converges to its
    weight (a low-discrepancy sequence). With a ``random.Random`` it is a seeded draw."""
    if not choices:
        raise InvalidTopology("pick_balanced: no choices to pick from")
    best = [c for c in choices if c.tier == choices[0].tier]
    if isinstance(rng_or_counter, bool) or not isinstance(rng_or_counter, (int, random.Random)):
        raise InvalidTopology(f"pick_balanced needs a random.Random or an int counter, got {rng_or_counter!r}")
    u = (rng_or_counter * _PHI) % 1.0 if isinstance(rng_or_counter, int) else rng_or_counter.random()
    total = sum(c.weight for c in best)
    acc = 0.0
    for c in best:
        acc += c.weight / total
        if u < acc:
            return c
    return best[-1]
