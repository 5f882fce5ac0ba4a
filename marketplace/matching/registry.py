"""The one registry: every plugin of every extension point by name, and the named policies.

A *policy* is a ``Profile`` (Kubernetes: a scheduler profile): which plugins run at each
extension point, in order, with the score weights and tie-breaks, and how candidates are
sampled. ``MatchingConfig.policy`` selects one by name; the config's plugin lists, when
given, override the policy's. Built in:

    default    the project's matcher: FGD as the paper scores it (FGDScore 10: the
               fragmentation gradient through a sigmoid, in whole points) + Price 2 +
               PathLatency 2 + Reliability 1, ties to the lower id (NodeOrder: consolidation,
               as first fit); every feasible provider scored up to ``min_feasible_to_score``
               (2,000), a rotating sample above it. Against ties to the smaller node
               (SmallerNode, the default before): that one fills the small nodes first, which on
               the gpuspec lists are the T4 nodes a third of the spec'd pods need (docs/matching.md,
               "Reproducing the FGD paper")
    first-fit  the baseline: the lowest-id feasible provider, nothing scored (fractional
               devices inside it are still chosen by FGD, as the default policy chooses them)
    balanced   the default plus LoadLatency 6: among providers the default ranks alike, the
               least loaded and nearest (the convergence layer's load balancing; inside a
               provider, devices are still chosen by FGD)

A new policy (issue 19's baselines: random, DotProd, best fit, GPU packing, GPU clustering,
FGD alone) is its plugins registered here (``Registry.register``) and one
``Registry.register_policy``.

Invariants: a name is registered once per extension point; every plugin a registered policy
or a config names is registered (an unknown name raises ``MatchingConfigError`` with a "did
you mean"); a first-feasible policy scores nothing.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

from marketplace.matching.binder import InMemoryBinder
from marketplace.matching.errors import MatchingConfigError
from marketplace.matching.framework import ExtensionPoint
from marketplace.matching.plugins.baselines import BASELINES, FGDScore, NodeOrder
from marketplace.matching.plugins.filters import FILTERS
from marketplace.matching.plugins.permit import StakeCoversLeases
from marketplace.matching.plugins.preemption import ReservationPreemption
from marketplace.matching.plugins.prefilter import EverFeasible
from marketplace.matching.plugins.reserve import ProviderCapacity
from marketplace.matching.plugins.scores import SCORES, LoadLatency, MinMax, PathLatency, Price, Reliability
from marketplace.matching.queue import TierAgeing

if TYPE_CHECKING:
    from marketplace.matching.config import MatchingConfig

log = logging.getLogger(__name__)

P = ExtensionPoint


class Sampling(str, Enum):
    """How the providers to score are found among the feasible ones."""

    #: up to ``num_to_score`` feasible providers from a rotating start (percentageOfNodesToScore)
    ROTATING = "rotating"
    #: no scoring: the lowest-id feasible provider whose devices fit
    FIRST_FEASIBLE = "first-feasible"
    #: every feasible provider is scored (percentageOfNodesToScore 100, as the FGD paper's simulator)
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Profile:
    """The plugins of every extension point, in run order (see the module docstring)."""

    queue_sort: str
    pre_filter: tuple[str, ...]
    filter: tuple[str, ...]
    post_filter: tuple[str, ...]
    #: (plugin, weight); weight 0 keeps a plugin listed but not run
    score: tuple[tuple[str, float], ...]
    normalize_score: str
    #: score plugins whose raw value (higher wins) breaks ties of the weighted total, in order,
    #: before the seeded hash
    tie_break: tuple[str, ...]
    reserve: tuple[str, ...]
    permit: tuple[str, ...]
    sampling: Sampling = Sampling.ROTATING
    #: keep the fragmentation model even when no score reads it: fractional devices are then
    #: chosen inside a provider by FGD (``ProviderIndex.fgd_slot``) rather than best fit
    track_fragmentation: bool = False

    def with_overrides(self, **lists: Any) -> Profile:
        """This profile with the plugin lists given (not None) instead of its own."""
        return replace(self, **{k: v for k, v in lists.items() if v is not None})


#: the profile fields that name plugins of one extension point, and that point
POINT_OF_FIELD: dict[str, ExtensionPoint] = {
    "queue_sort": P.QUEUE_SORT, "pre_filter": P.PRE_FILTER, "filter": P.FILTER, "post_filter": P.POST_FILTER,
    "score": P.SCORE, "normalize_score": P.NORMALIZE_SCORE, "tie_break": P.SCORE, "reserve": P.RESERVE,
    "permit": P.PERMIT,
}


class Registry:
    """Plugins by extension point and name, and policies by name."""

    def __init__(self) -> None:
        self._plugins: dict[ExtensionPoint, dict[str, type]] = {p: {} for p in ExtensionPoint}
        self._policies: dict[str, Profile] = {}

    def register(self, point: ExtensionPoint, cls: type) -> type:
        """Add a plugin class (it has a ``name`` and a ``new(config)`` factory)."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name or not callable(getattr(cls, "new", None)):
            raise TypeError(f"{cls!r} is not a plugin: it needs a class attribute name and a new(config) factory")
        if name in self._plugins[point]:
            raise ValueError(f"{point.value} plugin {name!r} is registered twice")
        self._plugins[point][name] = cls
        return cls

    def register_policy(self, name: str, profile: Profile) -> None:
        if name in self._policies:
            raise ValueError(f"policy {name!r} is registered twice")
        self.check_profile(profile)
        self._policies[name] = profile

    def names(self, point: ExtensionPoint) -> tuple[str, ...]:
        return tuple(self._plugins[point])

    def policies(self) -> tuple[str, ...]:
        return tuple(self._policies)

    def plugin(self, point: ExtensionPoint, name: str, *, field: str | None = None) -> type:
        cls = self._plugins[point].get(name)
        if cls is None:
            raise _unknown(f"{point.value} plugin", name, self.names(point), field or point.value)
        return cls

    def create(self, point: ExtensionPoint, name: str, config: MatchingConfig) -> Any:
        """A plugin instance for a scheduler with ``config``."""
        return self.plugin(point, name).new(config)

    def policy(self, name: str) -> Profile:
        profile = self._policies.get(name)
        if profile is None:
            raise _unknown("policy", name, self.policies(), "policy")
        return profile

    def check_profile(self, profile: Profile) -> None:
        """Every name is a registered plugin of its point, no list names one twice, a filter
        runs, and a first-feasible profile scores nothing; else ``MatchingConfigError``."""
        for fname, point in POINT_OF_FIELD.items():
            value = getattr(profile, fname)
            if isinstance(value, str):
                self.plugin(point, value, field=fname)
                continue
            names = [v[0] for v in value] if fname == "score" else list(value)
            for name in names:
                self.plugin(point, name, field=fname)
            if len(set(names)) != len(names):
                raise MatchingConfigError(f"{fname} lists a plugin twice: {names}", field=fname)
        if not profile.filter:
            raise MatchingConfigError("at least one filter must run", field="filter")
        if profile.sampling is Sampling.FIRST_FEASIBLE and (profile.score or profile.tie_break):
            raise MatchingConfigError("a first-feasible policy takes the lowest-id feasible provider: it runs no "
                                      "score or tie_break plugins", field="score")


def _unknown(what: str, name: Any, options: tuple[str, ...], field: str) -> MatchingConfigError:
    close = difflib.get_close_matches(str(name), options, n=1)
    if close:
        hint = f"did you mean {close[0]!r}?"
    else:
        hint = f"known: {', '.join(options)}" if options else f"no {what} is registered"
    return MatchingConfigError(f"unknown {what} {name!r}", field=field, hint=hint)


DEFAULT_POLICY = "default"

#: the project's matcher (docs/matching.md)
DEFAULT = Profile(
    queue_sort=TierAgeing.name,
    pre_filter=(EverFeasible.name,),
    filter=tuple(f.name for f in FILTERS),
    post_filter=(ReservationPreemption.name,),
    # LoadBalance (spreading) is available but off: on the Alibaba trace it strands GPUs
    score=((FGDScore.name, 10.0), (Price.name, 2.0), (PathLatency.name, 2.0), (Reliability.name, 1.0)),
    normalize_score=MinMax.name,
    # equal FGD points: the lower id (consolidation, as first fit); SmallerNode stays available
    tie_break=(NodeOrder.name,),
    reserve=(ProviderCapacity.name,),
    permit=(StakeCoversLeases.name,),
)

#: the baseline: the first feasible provider in id order, with the default's device choice inside it
FIRST_FIT = replace(DEFAULT, score=(), tie_break=(), sampling=Sampling.FIRST_FEASIBLE, track_fragmentation=True)

#: the default with the convergence layer's spreading by advertised load and path latency
BALANCED = replace(DEFAULT, score=DEFAULT.score + ((LoadLatency.name, 6.0),))

REGISTRY = Registry()
for _point, _classes in ((P.QUEUE_SORT, (TierAgeing,)), (P.PRE_FILTER, (EverFeasible,)), (P.FILTER, FILTERS),
                         (P.POST_FILTER, (ReservationPreemption,)), (P.SCORE, SCORES + BASELINES),
                         (P.NORMALIZE_SCORE, (MinMax,)),
                         (P.RESERVE, (ProviderCapacity,)), (P.PERMIT, (StakeCoversLeases,)),
                         (P.BIND, (InMemoryBinder,))):
    for _cls in _classes:
        REGISTRY.register(_point, _cls)
REGISTRY.register_policy(DEFAULT_POLICY, DEFAULT)
REGISTRY.register_policy("first-fit", FIRST_FIT)
REGISTRY.register_policy("balanced", BALANCED)

#: the FGD paper's schedulers (plugins/baselines.py), each one Score plugin over every feasible
#: provider, equal scores to the first provider in id order (the simulator's consistent choice:
#: with it the simulator's published figures are reproduced, with random ties they are not, see
#: docs/matching.md), devices inside a node best fit; "fgd" on the fragmentation model of the
#: workload the scheduler is given, with FGD's in-node device choice
PAPER_POLICIES = {"random": "Random", "dot-product": "DotProduct", "best-fit": "CpuGpuBestFit",
                  "gpu-packing": "GpuPacking", "gpu-clustering": "GpuClustering", "fgd": "FGDScore"}
for _policy, _plugin in PAPER_POLICIES.items():
    REGISTRY.register_policy(_policy, replace(DEFAULT, score=((_plugin, 1.0),), tie_break=(NodeOrder.name,),
                                              sampling=Sampling.ALL))
