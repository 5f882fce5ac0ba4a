"""Inter-domain policy and damping: AS relationships, Gao-Rexford export rules, MRAI and flap damping.

**Relationships.** Each neighbour of an AS is its ``CUSTOMER`` (pays it for transit), its
``PROVIDER`` (is paid by it), a settlement-free ``PEER``, or a ``SIBLING`` (the same
organisation). A route takes a **class** from the neighbour it was learned from; the
class is both the route's preference (the "local preference" of Gao and Rexford, "Stable
Internet routing without global coordination", IEEE/ACM ToN 2001) and the key of the
export rule:

=================  ================  ==========================================
learned from       class             exported to
=================  ================  ==========================================
(originated here)  ``LOCAL``         everyone
a customer         ``CUSTOMER``      everyone
a peer             ``PEER``          customers and siblings only
a provider         ``PROVIDER``      customers and siblings only
a sibling          the sibling's     as that class (a sibling's own route
                   class             counts as ``CUSTOMER``)
=================  ================  ==========================================

Preference: ``LOCAL`` < ``CUSTOMER`` < ``PEER`` < ``PROVIDER`` (lower wins), before path
length. Siblings give each other mutual transit (Gao, "On inferring autonomous system
relationships in the Internet", 2001) but a route keeps the class it had at the sibling,
carried in the advertisement like an RFC 8195 informational community; so a provider's
route crossing a sibling link is still not exported upward: every path stays valley-free.
With no relationships given a neighbour is a ``SIBLING``, which exports everything:
plain shortest-path-vector behaviour.

**MRAI** (RFC 4271 section 9.2.1.1): per neighbour, after an UPDATE carrying
advertisements, the next one waits ``mrai_s`` seconds times a jitter factor drawn in
``[1 - mrai_jitter, 1]`` (section 10 of RFC 4271, 0.75-1.0 by default); changes made
meanwhile are batched and only the latest state is sent when the timer expires. Routers
implement the timer per neighbour, not per destination, as deployed BGP does. Withdrawals
are not delayed (RFC 1771 section 9.2.3.1; draft-ietf-idr-mrai-dep).

**Route flap damping** (RFC 2439, thresholds from RFC 7196): per (neighbour, origin,
device class) a penalty grows by ``withdrawal_penalty`` on each withdrawal and by
``path_change_penalty`` when the AS path changes (capacity updates of the same path are
not flaps: a market's free capacity moves all the time), and halves every
``half_life_s``. Above ``suppress`` the route is kept but not used; it is used again
when the penalty has decayed below ``reuse``. The penalty is capped so that no route is
suppressed longer than ``max_suppress_s``. RFC 7196 raised the suppress threshold to
6,000 because the old 2,000 suppressed routes after ordinary path exploration (Mao et al.,
"Route flap damping exacerbates Internet routing convergence", SIGCOMM 2002).

Invariants: ``exports`` never lets a ``PEER`` or ``PROVIDER`` route reach a peer or a
provider; a damper's penalty is never above its ceiling and never negative.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from enum import Enum, IntEnum

from marketplace.routing.errors import DomainError

log = logging.getLogger(__name__)


class Relation(Enum):
    """What a neighbour is to this AS."""

    CUSTOMER = "customer"
    PROVIDER = "provider"
    PEER = "peer"
    SIBLING = "sibling"

    @property
    def reverse(self) -> "Relation":
        """What this AS is to the neighbour."""
        return _REVERSE[self]


_REVERSE = {Relation.CUSTOMER: Relation.PROVIDER, Relation.PROVIDER: Relation.CUSTOMER,
            Relation.PEER: Relation.PEER, Relation.SIBLING: Relation.SIBLING}


class RouteClass(IntEnum):
    """The class of a route at one AS; lower is preferred. Integer values are wire codes."""

    LOCAL = 0
    CUSTOMER = 1
    PEER = 2
    PROVIDER = 3


_LEARNED = {Relation.CUSTOMER: RouteClass.CUSTOMER, Relation.PEER: RouteClass.PEER,
            Relation.PROVIDER: RouteClass.PROVIDER}


def learned_class(relation: Relation, sender_class: RouteClass) -> RouteClass:
    """The class of a route received from a neighbour with ``relation`` that had
    ``sender_class`` there (only read across a sibling link)."""
    if relation is Relation.SIBLING:
        return RouteClass.CUSTOMER if sender_class is RouteClass.LOCAL else sender_class
    return _LEARNED[relation]


def exports(route_class: RouteClass, relation: Relation) -> bool:
    """May a route of ``route_class`` be advertised to a neighbour with ``relation``?"""
    return route_class <= RouteClass.CUSTOMER or relation is Relation.CUSTOMER or relation is Relation.SIBLING


@dataclass(frozen=True, slots=True)
class DampingConfig:
    """RFC 2439 parameters with the RFC 7196 suppress threshold (seconds, penalty units)."""

    half_life_s: float = 900.0
    suppress: float = 6000.0
    reuse: float = 750.0
    max_suppress_s: float = 3600.0
    withdrawal_penalty: float = 1000.0
    path_change_penalty: float = 500.0
    #: the penalty of an origin's own (root-cause) withdrawal; None: ``withdrawal_penalty``. A
    #: market sets 0: a domain whose free capacity runs out and comes back is the market
    #: working, not an unstable route (session resets and path changes are still damped)
    origin_withdrawal_penalty: float | None = None

    def __post_init__(self) -> None:
        if not (self.half_life_s > 0 and self.max_suppress_s > 0):
            raise DomainError("damping: half_life_s and max_suppress_s must be > 0", field="damping")
        if not (0 < self.reuse < self.suppress):
            raise DomainError(f"damping: need 0 < reuse < suppress, got reuse={self.reuse} "
                              f"suppress={self.suppress}", field="damping")
        if self.withdrawal_penalty < 0 or self.path_change_penalty < 0 or (self.origin_withdrawal_penalty or 0) < 0:
            raise DomainError("damping: penalties must be >= 0", field="damping")

    @property
    def ceiling(self) -> float:
        """The highest penalty kept: it decays to ``reuse`` in exactly ``max_suppress_s``."""
        return self.reuse * 2.0 ** (self.max_suppress_s / self.half_life_s)


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """Timers and limits of one ``DomainRouter`` (seconds of whatever clock the caller passes)."""

    #: minimum route advertisement interval per neighbour; RFC 4271 suggests 30 s for eBGP
    mrai_s: float = 30.0
    #: the interval is ``mrai_s`` times a factor drawn uniformly in [1 - mrai_jitter, 1]
    mrai_jitter: float = 0.25
    #: None turns route flap damping off
    damping: DampingConfig | None = field(default_factory=DampingConfig)
    #: how long a withdrawn origin sequence number keeps refusing older summaries
    tombstone_s: float = 600.0
    #: an origin's withdrawal names the sequence it withdraws (root cause); False sends plain
    #: BGP-style withdrawals, which hunt through alternative paths (kept to measure the difference)
    root_cause_withdrawals: bool = True
    #: longer AS paths are refused (the longest real AS paths are about 40 hops with prepending)
    max_path_len: int = 64
    #: seeds the jitter (mixed with the AS number), so a run is reproducible
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.mrai_s >= 0 and math.isfinite(self.mrai_s)):
            raise DomainError(f"mrai_s must be a finite number >= 0, got {self.mrai_s}", field="mrai_s")
        if not (0 <= self.mrai_jitter < 1):
            raise DomainError(f"mrai_jitter must be in [0, 1), got {self.mrai_jitter}", field="mrai_jitter")
        if not self.tombstone_s > 0:
            raise DomainError("tombstone_s must be > 0", field="tombstone_s")
        if self.max_path_len < 1:
            raise DomainError("max_path_len must be >= 1", field="max_path_len")


class FlapDamper:
    """Penalties per key (a neighbour with a route's origin and class), RFC 2439 section 4.

    Pure: time comes in as ``now``. ``penalize`` returns True when it made the key
    suppressed; ``due(now)`` returns the keys whose suppression has ended since, for the
    router to reselect them.
    """

    __slots__ = ("config", "_penalty", "_suppressed")

    def __init__(self, config: DampingConfig) -> None:
        self.config = config
        #: key -> (penalty, time it was last updated)
        self._penalty: dict[tuple, tuple[float, float]] = {}
        #: key -> time its penalty decays to the reuse threshold
        self._suppressed: dict[tuple, float] = {}

    def penalty(self, key: tuple, now: float) -> float:
        p, t = self._penalty.get(key, (0.0, now))
        return p * 2.0 ** (-(now - t) / self.config.half_life_s) if now > t else p

    def penalize(self, key: tuple, amount: float, now: float) -> bool:
        if amount <= 0:
            return False
        cfg = self.config
        p = min(self.penalty(key, now) + amount, cfg.ceiling)
        self._penalty[key] = (p, now)
        if p > cfg.suppress or key in self._suppressed:
            newly = key not in self._suppressed
            self._suppressed[key] = now + cfg.half_life_s * math.log2(p / cfg.reuse)
            return newly
        return False

    def suppressed(self, key: tuple, now: float) -> bool:
        until = self._suppressed.get(key)
        return until is not None and now < until

    def next_reuse(self) -> float | None:
        return min(self._suppressed.values()) if self._suppressed else None

    def due(self, now: float) -> list[tuple]:
        """Keys whose suppression ended at or before ``now`` (and forgets their suppression)."""
        done = [k for k, until in self._suppressed.items() if until <= now]
        for k in done:
            del self._suppressed[k]
        return done


def market_config(mrai_s: float = 1.0, **kw: object) -> DomainConfig:
    """The routers of a market's engines: MRAI about 1 s (a summary follows providers joining and
    leaving within a second or two, where the Internet's 30 s would hide them for minutes), and
    damping that leaves an origin's own withdrawals unpenalised (capacity running out is no flap)."""
    return DomainConfig(mrai_s=mrai_s, damping=DampingConfig(origin_withdrawal_penalty=0.0), **kw)  # type: ignore[arg-type]
