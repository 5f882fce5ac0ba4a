"""The matching config: which plugin runs at each extension point, with which weight.

The core takes a parsed value (``MatchingConfig`` or a plain dict through ``from_dict``);
reading YAML is the edge's job. Extension points run in the Kubernetes scheduling
framework's order: queue sort, pre-filter, filter, post-filter, score (+ normalize),
reserve, permit, bind.

Invariants:
- every plugin name is one the registry knows (a typo raises ``MatchingConfigError`` with
  a "did you mean"); weights are finite and >= 0; at least one filter runs;
- ``canonical()`` is a fixed-order JSON value: it goes into each round's digest, so a
  replay with another config is detected.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, fields
from typing import Any

from marketplace.matching.errors import MatchingConfigError

#: the plugins each extension point accepts (the registry in ``plugins.py`` implements them)
KNOWN: dict[str, tuple[str, ...]] = {
    "filter": ("HardwareFit", "FreeCapacity", "DomainLatency", "PriceCeiling", "ProviderStatus", "ProviderLoad"),
    "post_filter": ("ReservationPreemption",),
    "score": ("Fragmentation", "BestFit", "Price", "PathLatency", "LoadBalance", "Reliability"),
    "permit": ("StakeCoversLeases",),
}


@dataclass(frozen=True, slots=True)
class MatchingConfig:
    """Plugins per extension point (in run order) and the knobs they read.

    ``score`` pairs a plugin with its weight. ``ageing_s`` is the wait that earns an order
    one tier (queue ageing, see ``queue.py``). ``percentage_of_providers_to_score``: 0 means
    adaptive as kube-scheduler (50% - n/125, at least 5%), else a fixed 1..100;
    ``min_feasible_to_score`` is the floor (100 in kube-scheduler). ``tie_break`` orders
    providers whose weighted totals are equal (lexicographically, by raw score).
    """

    filter: tuple[str, ...] = KNOWN["filter"]
    post_filter: tuple[str, ...] = ("ReservationPreemption",)
    score: tuple[tuple[str, float], ...] = (
        # LoadBalance (spreading) is available but off: on the Alibaba trace it strands GPUs
        ("Fragmentation", 10.0), ("Price", 2.0), ("PathLatency", 2.0), ("Reliability", 1.0),
    )
    #: score plugins whose raw value (higher wins) breaks ties of the weighted total, in order,
    #: before the seeded hash: FGD's "smallest fragmentation increase, then best fit"
    tie_break: tuple[str, ...] = ("BestFit",)
    permit: tuple[str, ...] = ("StakeCoversLeases",)
    ageing_s: float = 60.0
    percentage_of_providers_to_score: int = 0
    min_feasible_to_score: int = 100
    #: providers whose latest LSA reports a higher load take no new leases
    max_load: float = 0.9
    #: an LSA older than this (engine seconds) no longer vouches for the provider (None: no limit)
    max_lsa_age_s: float | None = None
    min_stake: int = 0
    #: stake must cover this many thousandths of the value of the leases a round gives it
    collateral_milli: int = 0
    #: orders taken from the queue per round (None: all)
    batch_size: int | None = 512
    #: task types kept in the fragmentation score's workload distribution
    fragmentation_types: int = 12
    seed: int = 0
    #: the baseline, not a policy to run: take the first feasible provider in id order, no scoring
    first_fit: bool = False

    def __post_init__(self) -> None:
        for point in ("filter", "post_filter", "permit"):
            names = tuple(getattr(self, point))
            object.__setattr__(self, point, names)
            for name in names:
                _known(point, name)
            if len(set(names)) != len(names):
                raise MatchingConfigError(f"{point} lists a plugin twice: {list(names)}", field=point)
        object.__setattr__(self, "tie_break", tuple(self.tie_break))
        for name in self.tie_break:
            _known("score", name)
        if len(set(self.tie_break)) != len(self.tie_break):
            raise MatchingConfigError(f"tie_break lists a plugin twice: {list(self.tie_break)}", field="tie_break")
        if not self.filter:
            raise MatchingConfigError("at least one filter must run", field="filter")
        score: list[tuple[str, float]] = []
        for item in self.score:
            if isinstance(item, str):
                name, weight = item, 1.0
            else:
                name, weight = item[0], item[1]
            _known("score", name)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                    or weight < 0:
                raise MatchingConfigError(f"score weight of {name} must be a finite number >= 0, got {weight!r}",
                                          field=f"score.{name}")
            score.append((name, float(weight)))
        if len({n for n, _ in score}) != len(score):
            raise MatchingConfigError("score lists a plugin twice", field="score")
        object.__setattr__(self, "score", tuple(score))
        if not (isinstance(self.ageing_s, (int, float)) and self.ageing_s > 0 and math.isfinite(self.ageing_s)):
            raise MatchingConfigError(f"ageing_s must be a positive number, got {self.ageing_s!r}", field="ageing_s")
        if not 0 <= self.percentage_of_providers_to_score <= 100:
            raise MatchingConfigError("percentage_of_providers_to_score must be within 0..100",
                                      field="percentage_of_providers_to_score")
        if self.min_feasible_to_score < 1:
            raise MatchingConfigError("min_feasible_to_score must be at least 1", field="min_feasible_to_score")
        if not 0.0 <= self.max_load <= 1.0:
            raise MatchingConfigError("max_load must be within 0..1", field="max_load")
        if self.batch_size is not None and self.batch_size < 1:
            raise MatchingConfigError("batch_size must be at least 1 (or null for all)", field="batch_size")
        if self.fragmentation_types < 1:
            raise MatchingConfigError("fragmentation_types must be at least 1", field="fragmentation_types")

    @classmethod
    def from_dict(cls, data: Any) -> MatchingConfig:
        """From a parsed YAML/JSON mapping. ``score`` is a mapping name -> weight or a list of
        ``[name, weight]`` pairs (a mapping keeps its order: YAML mappings are ordered)."""
        if not isinstance(data, dict):
            raise MatchingConfigError(f"the matching config is a mapping, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                raise MatchingConfigError(f"unknown matching config key {key!r}", field=str(key),
                                          hint=f"did you mean {close[0]!r}?" if close else None)
            if key == "score" and isinstance(value, dict):
                value = tuple(value.items())
            elif key in ("filter", "post_filter", "permit", "score", "tie_break") and value is not None:
                if isinstance(value, str) or not isinstance(value, (list, tuple)):
                    raise MatchingConfigError(f"{key} must be a list", field=key)
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            kwargs[key] = value
        return cls(**kwargs)

    def weights(self) -> dict[str, float]:
        return dict(self.score)

    def canonical(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "score":
                value = [[n, repr(w)] for n, w in value]
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, float):
                value = repr(value)
            out[f.name] = value
        return out


def _known(point: str, name: Any) -> None:
    options = KNOWN[point]
    if name not in options:
        close = difflib.get_close_matches(str(name), options, n=1)
        raise MatchingConfigError(
            f"unknown {point} plugin {name!r}", field=point,
            hint=f"did you mean {close[0]!r}?" if close else f"{point} plugins are {', '.join(options)}",
        )
