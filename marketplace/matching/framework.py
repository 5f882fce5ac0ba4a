"""The scheduling framework: one Protocol per extension point, and the state plugins share.

The matcher follows the Kubernetes scheduling framework. For each order a round runs

    QueueSort      the order in which queued orders are taken (key)
    PreFilter      refuse at once an order no provider can EVER satisfy
    Filter         a vectorized verdict over every provider (mask), explained per provider (check)
    PostFilter     only when no provider passes: make room (pre-emption), naming the victims
    Score          raw values over candidate providers (higher is better)
    NormalizeScore raw values to 0..100 before the weighted mean
    Reserve        take the capacity (Unreserve gives it back)

and then, for the round's reservations, ``Permit`` (allow or deny each) and ``Bind`` (one
call for the whole round; the ``Binder`` port in ``binder.py``, implemented by the edge).
Each point is a Protocol here; implementations are plugins (``plugins/``, ``queue.py``,
``binder.py``), found by name in the one registry (``registry.py``), which also names the
policies: a policy is the set of plugins that runs at every point. Plugins subclass their
Protocol for its default methods; they reach the running framework through ``Handle``.

Shared state. Data that plugins compute once and reuse across orders (a hardware shape's
static fit verdict, a latency mask, the price column) lives in ``SharedState`` under typed
``StateKey``s: each key is one plugin's datum with a ``Lifetime`` saying when the framework
drops it. Per-order data is ``CycleState``.

Invariants: a Filter's ``ever`` mask contains its ``mask`` (what can pass now could pass
ever), so an order the PreFilter lets through may still find nothing now, never the reverse;
entries of ``Lifetime.MARKET`` are keyed on ``ProviderIndex.version``, so a provider fact
that changes is never read stale even before the framework drops them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Hashable, Mapping, Protocol, Sequence, TypeVar

import numpy as np

from marketplace.matching.index import ProviderIndex
from marketplace.matching.model import Order, Placement, Rejection, Reservation, ReservationState
from marketplace.matching.placement import memo_key, req_ids

if TYPE_CHECKING:
    from marketplace.errors import Unschedulable
    from marketplace.matching.config import MatchingConfig
    from marketplace.matching.placement import PlacementEffects, Placer

log = logging.getLogger(__name__)

T = TypeVar("T")


class ExtensionPoint(str, Enum):
    """The framework's extension points, in the order a round runs them."""

    QUEUE_SORT = "queue_sort"
    PRE_FILTER = "pre_filter"
    FILTER = "filter"
    POST_FILTER = "post_filter"
    SCORE = "score"
    NORMALIZE_SCORE = "normalize_score"
    RESERVE = "reserve"
    PERMIT = "permit"
    BIND = "bind"


class Lifetime(Enum):
    """How long a ``SharedState`` entry stays."""

    #: until a provider fact changes (``Scheduler.update_provider``); sub-keys carry ``index.version``
    MARKET = "market"
    #: as MARKET, and dropped when the routing table changes (it reads path latencies)
    MARKET_ROUTES = "market-routes"
    #: one round (it reads the round's clock or per-round facts)
    ROUND = "round"
    #: one round, and dropped when the routing table changes
    ROUND_ROUTES = "round-routes"


#: the lifetimes a new round keeps, and those a routing change drops
_KEPT_ACROSS_ROUNDS = frozenset({Lifetime.MARKET, Lifetime.MARKET_ROUTES})
_READ_ROUTES = frozenset({Lifetime.MARKET_ROUTES, Lifetime.ROUND_ROUTES})


class StateKey(Generic[T]):
    """One plugin's datum in ``SharedState``: a typed key (compared by identity) with a lifetime.

    Declared once, at module level, next to the plugin that writes it."""

    __slots__ = ("name", "lifetime")

    def __init__(self, name: str, lifetime: Lifetime) -> None:
        self.name = name
        self.lifetime = lifetime

    def __repr__(self) -> str:
        return f"StateKey({self.name!r}, {self.lifetime.name})"


class SharedState:
    """Values plugins reuse across the orders of a round (and across rounds for ``MARKET``),
    each under a ``StateKey`` and a hashable sub-key (what the value depends on). Entries are
    kept per lifetime, so a new round drops the round's entries without walking the others."""

    __slots__ = ("_by",)

    def __init__(self) -> None:
        self._by: dict[Lifetime, dict[tuple[StateKey, Hashable], Any]] = {lt: {} for lt in Lifetime}

    def get(self, key: StateKey[T], sub: Hashable) -> T | None:
        return self._by[key.lifetime].get((key, sub))

    def put(self, key: StateKey[T], sub: Hashable, value: T) -> T:
        self._by[key.lifetime][(key, sub)] = value
        return value

    def end_round(self) -> None:
        """A new round: only the ``MARKET*`` entries stay."""
        for lt in Lifetime:
            if lt not in _KEPT_ACROSS_ROUNDS and self._by[lt]:
                self._by[lt] = {}

    def routes_changed(self) -> None:
        for lt in _READ_ROUTES:
            self._by[lt] = {}

    def clear(self) -> None:
        for lt in Lifetime:
            self._by[lt] = {}

    def __len__(self) -> int:
        return sum(len(d) for d in self._by.values())


class CycleState:
    """One order's scheduling cycle (k8s CycleState): the order, the index, the clock, the
    interned keys of its requirement, and the shared state."""

    __slots__ = ("order", "req", "ix", "config", "now", "hw_key", "shape", "shared", "asks", "_dist")

    def __init__(self, order: Order, ix: ProviderIndex, config: MatchingConfig, now: float,
                 shared: SharedState) -> None:
        self.order = order
        req = self.req = order.requirement
        self.ix = ix
        self.config = config
        self.now = now
        #: interned hardware_key / PlacementMemo key of the requirement (placement.req_ids)
        self.hw_key = req_ids(req)[0]
        self.shape = memo_key(ix, req)
        self.shared = shared
        lat = req.max_latency_ms
        #: what the filters that do not read free capacity read of the order (the buyer's node
        #: only under a latency bound, the runtimes its workload needs), with the provider facts'
        #: version: their verdicts' key
        self.asks = (self.hw_key, None if lat is None else order.buyer_node, req.domain, lat, req.max_price,
                     ix.version, order.workload)
        self._dist: np.ndarray | None = None

    def distances(self) -> np.ndarray | None:
        """Latency (ms) from the buyer's node to every topology node, or None if unknown."""
        if self._dist is None and self.order.buyer_node is not None and self.ix.routing is not None:
            self._dist = self.ix.routing.distances_from(self.order.buyer_node)
        return self._dist

    def latency_of(self, rows: np.ndarray) -> np.ndarray:
        """Path latency from the buyer to each row's attachment node (inf: unknown/unreachable)."""
        dist = self.distances()
        if dist is None:
            return np.full(len(rows), np.inf)
        ix = self.ix
        if ix.attach_all:  # every provider names its node (the common case): one gather
            return dist[ix.attach[rows]]
        att = ix.attach[rows]
        return np.where(att >= 0, dist[np.maximum(att, 0)], np.inf)


@dataclass(slots=True)
class Held:
    """Capacity held for an order: a reservation, then (once bound) a lease."""

    reservation: Reservation
    state: ReservationState
    row: int
    #: the lease's value (price x devices x hours), what a provider's stake must cover
    value: float = 0.0


@dataclass(frozen=True, slots=True)
class Nomination:
    """A PostFilter's answer: freeing ``victims`` (unbound reservations on ``row``) lets the
    order fit there."""

    row: int
    victims: tuple[Held, ...]


class Handle(Protocol):
    """What plugins may ask of the running framework (k8s framework.Handle)."""

    index: ProviderIndex
    config: MatchingConfig
    filters: Sequence[FilterPlugin]
    placer: Placer

    def feasible_mask(self, st: CycleState, *, capacity: bool = True) -> np.ndarray:
        """Providers every filter passes (``capacity=False``: leaving out the filters that read
        free capacity, i.e. what pre-emption could change)."""
        ...

    def rejections(self, st: CycleState, i: int, *, unresolvable_only: bool = False) -> tuple[Rejection, ...]:
        ...

    def unbound(self) -> Mapping[int, Mapping[str, Held]]:
        """Unbound reservations per provider row (the only capacity pre-emption may take)."""
        ...

    def live_on(self, row: int) -> list[Held]:
        """Every reservation and lease holding capacity on ``row``."""
        ...


# ============================================================================ extension points


class Plugin(Protocol):
    #: the name the registry and the config know it by (reason codes are prefixed with it)
    name: ClassVar[str]

    @classmethod
    def new(cls, config: MatchingConfig) -> Plugin:
        """The plugin for a scheduler with ``config`` (most plugins read the config at run time)."""
        return cls()


class QueueSortPlugin(Plugin, Protocol):
    def key(self, order: Order) -> tuple:
        """The heap key: smaller is served first. Time-invariant, and total: it ends with the
        order id (``OrderQueue`` reads the id from it)."""
        ...

    def priority(self, order: Order, now: float) -> float:
        """The effective priority at ``now`` (for display)."""
        ...


class PreFilterPlugin(Plugin, Protocol):
    def pre_filter(self, st: CycleState, fw: Handle) -> Unschedulable | None:
        """``Unschedulable`` (with per-provider reasons) when no provider can ever take the order."""
        ...


class FilterPlugin(Plugin, Protocol):
    #: reads free capacity (its mask is never cached across orders)
    dynamic: ClassVar[bool] = False

    def mask(self, st: CycleState) -> np.ndarray | None:
        """Passes per provider (``None``: the order asks nothing of this filter)."""
        ...

    def ever(self, st: CycleState) -> np.ndarray | None:
        """Providers that could EVER pass (``None``: every failure of this filter is resolvable).
        Contains ``mask``; reads no clock and no free capacity (it is kept across rounds)."""
        return None

    def reads_clock(self, config: MatchingConfig) -> bool:
        """The mask depends on the cycle's ``now`` (a static mask is then not shared across clocks)."""
        return False

    def check(self, st: CycleState, i: int) -> Rejection | tuple[Rejection, ...] | None:
        """The verdict on provider ``i``, with reason codes and numbers (what ``explain`` shows)."""
        ...


class PostFilterPlugin(Plugin, Protocol):
    def post_filter(self, st: CycleState, fw: Handle) -> Nomination | None:
        """Where the order fits once the nominated victims are gone (None: nowhere). Touches
        nothing: the framework drops the victims and places the order."""
        ...


class ScorePlugin(Plugin, Protocol):
    #: reads the fragmentation model (the framework then keeps it in the index)
    needs_fragmentation: ClassVar[bool] = False

    def score(self, st: CycleState, rows: np.ndarray, effects: PlacementEffects) -> np.ndarray:
        """Raw values over candidate ``rows`` (higher is better)."""
        ...

    def constant(self, st: CycleState) -> float | None:
        """The raw value when it is the same on EVERY provider (then on any candidate set),
        else None. Only plugins whose raw reads provider facts alone can say so."""
        return None


class NormalizeScorePlugin(Plugin, Protocol):
    def normalize(self, raw: np.ndarray) -> np.ndarray:
        """Raw values over the candidates to 0..100."""
        ...

    def level(self, constant: float) -> float:
        """``normalize`` of candidates that all have the raw value ``constant``."""
        ...


class ReservePlugin(Plugin, Protocol):
    def reserve(self, fw: Handle, order: Order, row: int, placement: Placement) -> None:
        ...

    def unreserve(self, fw: Handle, order: Order, row: int, placement: Placement) -> None:
        """Undo ``reserve`` (the framework calls it at most once per reservation)."""
        ...


class PermitPlugin(Plugin, Protocol):
    def permit(self, fw: Handle, held: Held) -> str | None:
        """None to allow the reservation, else the reason code of the denial."""
        ...
