"""The matching config: the policy, the plugin lists that override it, and the knobs plugins read.

The core takes a parsed value (``MatchingConfig`` or a plain dict through ``from_dict``);
reading YAML is the edge's job. ``policy`` names a registered policy (``registry.py``: which
plugin runs at each extension point of the Kubernetes scheduling framework, in order); the
lists ``filter``, ``post_filter``, ``score``, ``tie_break`` and ``permit``, when given,
replace the policy's. ``profile`` is the result, what the scheduler runs.

Invariants:
- every plugin or policy name is one the registry knows (a typo raises
  ``MatchingConfigError`` with a "did you mean"); weights are finite and >= 0; at least one
  filter runs;
- ``canonical()`` is a fixed-order JSON value naming the policy and the plugin lists the
  profile runs: it goes into each round's digest and each recorded batch, so a replay with
  another config is detected; read back (floats are recorded as their repr), it gives a
  config that runs the same profile.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping

from marketplace.matching.errors import MatchingConfigError
from marketplace.matching.framework import ExtensionPoint
from marketplace.matching.registry import DEFAULT_POLICY, REGISTRY, Profile

#: the config fields that override the policy's plugin lists
LISTS = ("filter", "post_filter", "score", "tie_break", "permit")


@dataclass(frozen=True, slots=True)
class MatchingConfig:
    """The policy, the plugin lists that override it (None: the policy's), and the knobs.

    ``score`` pairs a plugin with its weight. ``ageing_s`` is the wait that earns an order
    one tier (queue ageing, see ``queue.py``). ``percentage_of_providers_to_score``: 0 means
    adaptive as kube-scheduler (50% - n/125, at least 5%), else a fixed 1..100;
    ``min_feasible_to_score`` is the floor (100 in kube-scheduler; 2,000 here: a market of up
    to 2,000 providers is scored whole, which on the FGD paper's protocol leaves fewer GPUs
    unallocated than a 40 % sample; at 10k providers it scores 2,000 instead of 500 for
    5,608 instead of 6,979 orders/s, docs/matching.md "Benchmark"). ``tie_break`` orders
    providers whose weighted totals are equal (lexicographically, by raw score).
    """

    #: a registered policy (``REGISTRY.policies()``): "default" or the "first-fit" baseline
    policy: str = DEFAULT_POLICY
    filter: tuple[str, ...] | None = None
    post_filter: tuple[str, ...] | None = None
    score: tuple[tuple[str, float], ...] | None = None
    tie_break: tuple[str, ...] | None = None
    permit: tuple[str, ...] | None = None
    ageing_s: float = 60.0
    percentage_of_providers_to_score: int = 0
    min_feasible_to_score: int = 2000
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
    #: what runs: the policy's profile with the lists above in place of its own
    profile: Profile = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lists: dict[str, Any] = {}
        for name in ("filter", "post_filter", "tie_break", "permit"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
                    raise MatchingConfigError(f"{name} must be a list of plugin names", field=name)
                lists[name] = tuple(value)
        if self.score is not None:
            lists["score"] = _weights(self.score)
        for name, value in lists.items():
            object.__setattr__(self, name, value)
        profile = REGISTRY.policy(self.policy).with_overrides(**lists)
        REGISTRY.check_profile(profile)
        object.__setattr__(self, "profile", profile)
        self._check_knobs()

    def _check_knobs(self) -> None:
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
        ``[name, weight]`` pairs (a mapping keeps its order: YAML mappings are ordered).

        ``first_fit`` (a boolean) is read as in configs recorded before policies existed:
        true is the ``first-fit`` policy, false changes nothing."""
        if not isinstance(data, dict):
            raise MatchingConfigError(f"the matching config is a mapping, got {type(data).__name__}")
        names = [f.name for f in fields(cls) if f.init]
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "first_fit":
                if not isinstance(value, bool):
                    raise MatchingConfigError(f"first_fit must be true or false, got {value!r}", field=key)
                if value:
                    kwargs.setdefault("policy", "first-fit")
                continue
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                raise MatchingConfigError(f"unknown matching config key {key!r}", field=str(key),
                                          hint=f"did you mean {close[0]!r}?" if close else None)
            if key == "score" and isinstance(value, dict):
                value = tuple(value.items())
            elif key in LISTS and value is not None:
                if isinstance(value, str) or not isinstance(value, (list, tuple)):
                    raise MatchingConfigError(f"{key} must be a list", field=key)
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            kwargs[key] = value
        if data.get("first_fit") is True and kwargs["policy"] != "first-fit":
            raise MatchingConfigError(f"first_fit: true contradicts policy {kwargs['policy']!r}", field="first_fit")
        return cls(**kwargs)

    def weights(self) -> dict[str, float]:
        return dict(self.profile.score)

    def canonical(self) -> dict[str, Any]:
        """Every knob, the policy's name, and the plugin lists the profile runs."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if not f.init:
                continue
            value = getattr(self.profile, f.name) if f.name in LISTS else getattr(self, f.name)
            if f.name == "score":
                value = [[n, repr(w)] for n, w in value]
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, float):
                value = repr(value)
            out[f.name] = value
        return out


def _weights(items: Any) -> tuple[tuple[str, float], ...]:
    """``score`` as (name, weight) pairs: a bare name weighs 1; weights are finite and >= 0."""
    if isinstance(items, Mapping):
        items = items.items()
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise MatchingConfigError("score must be a list of [plugin, weight] pairs", field="score")
    out: list[tuple[str, float]] = []
    for item in items:
        name, weight = (item, 1.0) if isinstance(item, str) else (item[0], item[1])
        REGISTRY.plugin(ExtensionPoint.SCORE, name, field="score")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                or weight < 0:
            raise MatchingConfigError(f"score weight of {name} must be a finite number >= 0, got {weight!r}",
                                      field=f"score.{name}")
        out.append((name, float(weight)))
    if len({n for n, _ in out}) != len(out):
        raise MatchingConfigError("score lists a plugin twice", field="score")
    return tuple(out)
