"""Where an order goes: its own domain, or another one by summary, best first or spread by load.

An engine that receives an order knows its own providers in detail and every other domain by
the summaries its ``DomainRouter`` selected (free and total capacity of a device class, the
lowest price, the lowest latency from the border, the AS path). ``options`` turns them into
comparable ``DomainOption``s for one order, leaving out every domain that cannot take it:

- not the domain the order names (``Requirement.domain``), when it names one;
- less free capacity than the order needs, a lowest price above its ceiling, or a latency
  (the buyer's distance to its own domain's border plus the summary's) above its bound;
- a domain the caller excludes (one that refused a handover of this order).

``choose`` then picks one:

- ``BEST_FIRST``: the own domain when it can serve the order now, else the first remaining
  domain in the router's ranking (route class, AS path length, latency, price): "best first";
- ``BALANCED``: every remaining option, the own domain included, weighted by its free capacity
  (weighted ECMP, as CATS load-aware steering shares load) times ``1 / (1 + latency / scale)``,
  so a domain twice as free gets twice the orders and a far one fewer; the pick is
  deterministic per ``counter`` (the order id): the low-discrepancy sequence
  ``counter * 0.618... mod 1`` over consecutive counters follows the weights within about 1%,
  without state and without a random draw that a replay could not repeat. Summaries lag the
  truth by up to an MRAI interval, which is why the spread is proportional rather than "all to
  the least loaded": a greedy choice would send a whole burst to one domain before its summary
  caught up (herding).

Pure: no clock, no I/O. Invariants: the chosen option is one of the options; with no option
there is no choice (the order stays where it is, pending or refused with the matcher's reasons).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Iterable, Sequence

from marketplace.routing.domain_values import DomainSummary

#: the golden-ratio conjugate (as ``select.pick_balanced``): counter * PHI mod 1 spreads evenly
PHI = (math.sqrt(5) - 1) / 2
#: the latency at which a domain's weight is halved
LATENCY_SCALE_MS = 10.0


class ChoicePolicy(StrEnum):
    BEST_FIRST = "best-first"
    BALANCED = "balanced"


@dataclass(frozen=True, slots=True)
class DomainOption:
    """One domain that can take the order now, as this engine sees it."""

    domain: int
    free: float
    total: float
    min_price: float
    latency_ms: float
    hops: int
    local: bool = False

    @property
    def load(self) -> float:
        return 1.0 - self.free / self.total if self.total > 0 else 1.0

    def to_dict(self) -> dict[str, object]:
        return {"domain": self.domain, "free": self.free, "total": self.total, "min_price": self.min_price,
                "latency_ms": round(self.latency_ms, 3), "hops": self.hops, "local": self.local,
                "load": round(self.load, 4)}


def options(routes: Sequence[DomainSummary], *, own: int, local: DomainOption | None, need: float,
            max_price: float | None = None, domain: int | None = None, max_latency_ms: float | None = None,
            border_latency_ms: float = 0.0, exclude: Iterable[int] = ()) -> list[DomainOption]:
    """The domains that can take an order needing ``need`` units now: ``local`` (built by the
    caller from its own providers, None when they cannot serve it now) first, then ``routes`` in
    the router's ranking. ``border_latency_ms``: from the buyer to this domain's border."""
    skip = set(exclude)
    out: list[DomainOption] = []
    if local is not None and (domain is None or domain == own) and own not in skip:
        out.append(local)
    for s in routes:
        d = s.origin_as
        if d == own or d in skip or (domain is not None and d != domain):
            continue
        latency = border_latency_ms + s.min_latency_ms
        if s.free < need or (max_price is not None and s.min_price > max_price):
            continue
        if max_latency_ms is not None and latency > max_latency_ms:
            continue
        out.append(DomainOption(d, s.free, s.total, s.min_price, latency, len(s.as_path)))
    return out


def weight(o: DomainOption, latency_scale_ms: float = LATENCY_SCALE_MS) -> float:
    """A balanced pick's weight: free capacity, discounted by latency."""
    return max(o.free, 0.0) / (1.0 + max(o.latency_ms, 0.0) / latency_scale_ms)


def choose(opts: Sequence[DomainOption], policy: ChoicePolicy, counter: int,
           latency_scale_ms: float = LATENCY_SCALE_MS) -> DomainOption | None:
    """One of ``opts`` (see the module docstring), or None when there is none."""
    if not opts:
        return None
    if policy is ChoicePolicy.BEST_FIRST:
        return next((o for o in opts if o.local), opts[0])
    weights = [weight(o, latency_scale_ms) for o in opts]
    total = sum(weights)
    if total <= 0:
        return opts[0]
    u = (counter * PHI) % 1.0 * total
    acc = 0.0
    for o, w in zip(opts, weights):
        acc += w
        if u < acc:
            return o
    return opts[-1]
