"""The Filter plugins: which providers can take an order now, and why the others cannot.

Every filter has two faces that must agree:
- ``mask(st)``: a vectorized verdict over ALL providers (bool array, True = passes; ``None``
  when the order asks nothing of this filter, so every provider passes). This is the hot path.
- ``check(st, i)``: the verdict on provider ``i`` as a ``Rejection`` (plugin, status code,
  stable reason code, message with numbers), or ``None``. This is what ``explain`` shows.
and ``ever(st)`` says which providers could EVER pass (``None``: every failure of this filter
is resolvable); it contains ``mask``. An order whose ``ever`` masks leave no provider is
refused at once (the ``EverFeasible`` pre-filter).

Hardware checks (device class and count, VRAM and memory, precision, FLOPS, features,
share, host CPU) are delegated to ``marketplace.resources.fit.fit``: its static verdict is
computed once per distinct hardware shape and broadcast, and its ``free=`` verdict explains
the capacity filter. Masks that do not read free capacity are kept in the shared state
under this module's keys (keyed on the index version, so never stale).

Reason codes (stable; docs/matching.md lists them): HardwareFit passes fit's codes through
(device-class, count, share, vram, memory, precision, flops, features, cpu); RuntimeSupport
passes ``runtimes.unmet``'s (runtime, wasm-modules, nondeterministic, program, image,
platform, network, devices); FreeCapacity:
free, system-memory-free; DomainLatency: domain, latency, unreachable, no-buyer-node;
PriceCeiling: price, no-price; ProviderStatus: retired, draining, offline, stake;
ProviderLoad: overloaded, stale-lsa.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from marketplace.matching.framework import CycleState, FilterPlugin, Lifetime, StateKey
from marketplace.matching.index import STATUS_CODE
from marketplace.matching.model import Code, ProviderStatus, Rejection
from marketplace.resources.fit import TRANSIENT_CODES, fit
from marketplace.resources.model import DeviceClass
from marketplace.resources.runtimes import unmet

if TYPE_CHECKING:
    from marketplace.matching.config import MatchingConfig

log = logging.getLogger(__name__)

ACTIVE = STATUS_CODE[ProviderStatus.ACTIVE]
RETIRED = STATUS_CODE[ProviderStatus.RETIRED]

#: per hardware ask: fit()'s static verdict per hardware shape, and broadcast to providers
HW_VERDICTS: StateKey[tuple] = StateKey("HardwareFit.verdicts", Lifetime.MARKET)
#: per (buyer node, domain, latency bound): the providers in the domain and within the bound
REACH_MASK: StateKey[np.ndarray] = StateKey("DomainLatency.mask", Lifetime.ROUND_ROUTES)
PRICE_MASK: StateKey[np.ndarray] = StateKey("PriceCeiling.mask", Lifetime.MARKET)
#: per workload need: the providers whose advertised runtimes serve it
RUNTIME_MASK: StateKey[np.ndarray] = StateKey("RuntimeSupport.mask", Lifetime.MARKET)
STATUS_MASK: StateKey[np.ndarray] = StateKey("ProviderStatus.mask", Lifetime.MARKET)
LOAD_MASK: StateKey[np.ndarray] = StateKey("ProviderLoad.mask", Lifetime.ROUND)


class FilterBase(FilterPlugin):
    """What the filters share: a rejection naming the plugin."""

    def _reject(self, st: CycleState, i: int, code: Code, reason: str, message: str) -> Rejection:
        return Rejection(st.ix.ids[i], self.name, code, reason, message)


class HardwareFit(FilterBase):
    """Static hardware fit (fit() with the node empty), once per hardware shape."""

    name = "HardwareFit"

    def _groups(self, st: CycleState) -> tuple[np.ndarray, list]:
        sub = (st.hw_key, st.ix.version)
        hit = st.shared.get(HW_VERDICTS, sub)
        if hit is None:
            req = st.req
            verdicts = [fit(req, v) for v in st.ix.group_views]
            ok = np.array([f.ok for f in verdicts], dtype=bool)
            hit = st.shared.put(HW_VERDICTS, sub, (ok, verdicts, ok[st.ix.group]))
        return hit[0], hit[1], hit[2]  # type: ignore[return-value]

    def mask(self, st: CycleState) -> np.ndarray:
        return self._groups(st)[2]

    def ever(self, st: CycleState) -> np.ndarray:
        return self.mask(st)

    def check(self, st: CycleState, i: int):
        f = self._groups(st)[1][st.ix.group[i]]
        if f.ok:
            return None
        return tuple(self._reject(st, i, Code.UNRESOLVABLE, r.code, r.message) for r in f.reasons)


class RuntimeSupport(FilterBase):
    """The runtimes a provider's LSA advertises against what the order's workload needs: a buyer's
    own module, a container image (its registry reference, platform, network, devices), a native
    program (``runtimes.unmet``). Never resolvable by waiting: the engine never assigns an order to
    a provider that would have to refuse it (issue 13's "slashing can be farmed")."""

    name = "RuntimeSupport"

    def mask(self, st: CycleState) -> np.ndarray | None:
        need = st.order.workload
        if need is None or need.trivial:
            return None
        sub = (need, st.ix.version)
        hit = st.shared.get(RUNTIME_MASK, sub)
        if hit is None:
            verdict: dict = {}  # per distinct offer: most providers of a market advertise alike
            ok = [verdict.setdefault(p.runtimes, not unmet(p.runtimes, need)) for p in st.ix.providers]
            hit = st.shared.put(RUNTIME_MASK, sub, np.array(ok, dtype=bool).reshape(st.ix.n))
        return hit

    def ever(self, st: CycleState) -> np.ndarray | None:
        return self.mask(st)

    def check(self, st: CycleState, i: int):
        reasons = unmet(st.ix.providers[i].runtimes, st.order.workload)
        return tuple(self._reject(st, i, Code.UNRESOLVABLE, r, m) for r, m in reasons) or None


class FreeCapacity(FilterBase):
    """Free devices (whole or fractional share), free host CPU and free memory, now."""

    name = "FreeCapacity"
    dynamic = True

    def mask(self, st: CycleState) -> np.ndarray:
        ix, req = st.ix, st.req
        if req.device_class == DeviceClass.CPU:
            m = ix.cpu_free >= req.count * req.share_milli
        else:
            cs = ix.slots.get(req.device_class)
            if cs is None:
                return np.zeros(ix.n, dtype=bool)
            if req.count == 1:
                m = cs.max_free >= req.share_milli
            elif req.share_milli >= 1000:
                m = cs.n_full >= req.count
            else:
                m = (cs.free >= req.share_milli).sum(axis=1) >= req.count
            if req.cpu_milli:
                m &= ix.cpu_free >= req.cpu_milli
        if req.min_system_memory_mib:
            m &= ix.mem_free >= req.min_system_memory_mib
        return m

    def check(self, st: CycleState, i: int):
        ix = st.ix
        f = fit(st.req, ix.views[i], free=ix.free_for_fit(i), free_memory_mib=int(ix.mem_free[i]))
        out = tuple(self._reject(st, i, Code.UNSCHEDULABLE, r.code, r.message)
                    for r in f.reasons if r.code in TRANSIENT_CODES)
        return out or None


class DomainLatency(FilterBase):
    """The order's domain, and its latency bound over the routing layer's shortest paths."""

    name = "DomainLatency"

    def mask(self, st: CycleState) -> np.ndarray | None:
        req = st.req
        if req.domain is None and req.max_latency_ms is None:
            return None
        sub = (st.order.buyer_node, req.domain, req.max_latency_ms, st.ix.version)
        hit = st.shared.get(REACH_MASK, sub)
        if hit is None:
            ix = st.ix
            m = np.ones(ix.n, dtype=bool)
            if req.domain is not None:
                m &= ix.domain == req.domain
            if req.max_latency_ms is not None:
                m &= st.latency_of(np.arange(ix.n)) <= req.max_latency_ms
            hit = st.shared.put(REACH_MASK, sub, m)
        return hit

    def ever(self, st: CycleState) -> np.ndarray | None:
        return self.mask(st)

    def check(self, st: CycleState, i: int):
        req, ix = st.req, st.ix
        out = []
        if req.domain is not None and ix.domain[i] != req.domain:
            where = "no domain" if ix.domain[i] < 0 else f"domain {int(ix.domain[i])}"
            out.append(self._reject(st, i, Code.UNRESOLVABLE, "domain", f"needs domain {req.domain}, provider is in {where}"))
        if req.max_latency_ms is not None:
            if st.order.buyer_node is None or ix.routing is None:
                out.append(self._reject(st, i, Code.UNRESOLVABLE, "no-buyer-node",
                                        f"needs <= {req.max_latency_ms:g} ms but the order names no buyer node"))
            else:
                lat = float(st.latency_of(np.array([i]))[0])
                if ix.attach[i] < 0:
                    out.append(self._reject(st, i, Code.UNRESOLVABLE, "unreachable",
                                            "provider names no attachment node, so no path latency is known"))
                elif lat == np.inf:
                    out.append(self._reject(st, i, Code.UNRESOLVABLE, "unreachable",
                                            f"no path from {st.order.buyer_node} to "
                                            f"{ix.providers[i].attach_node}"))
                elif lat > req.max_latency_ms:
                    out.append(self._reject(st, i, Code.UNRESOLVABLE, "latency",
                                            f"needs <= {req.max_latency_ms:g} ms, path {st.order.buyer_node} -> "
                                            f"{ix.providers[i].attach_node} has {lat:.3f} ms"))
        return tuple(out) or None


class PriceCeiling(FilterBase):
    """The order's price ceiling against the provider's published price."""

    name = "PriceCeiling"

    def mask(self, st: CycleState) -> np.ndarray | None:
        if st.req.max_price is None:
            return None
        sub = (st.req.max_price, st.ix.version)
        hit = st.shared.get(PRICE_MASK, sub)
        if hit is None:
            with np.errstate(invalid="ignore"):
                hit = st.shared.put(PRICE_MASK, sub, st.ix.price <= float(st.req.max_price))
        return hit

    def ever(self, st: CycleState) -> np.ndarray | None:
        return self.mask(st)

    def check(self, st: CycleState, i: int):
        cap = st.req.max_price
        if cap is None:
            return None
        price = st.ix.providers[i].price
        if price is None:
            return self._reject(st, i, Code.UNRESOLVABLE, "no-price", f"pays at most {cap} per unit-hour, "
                                "provider publishes no price")
        if price > cap:
            return self._reject(st, i, Code.UNRESOLVABLE, "price", f"pays at most {cap} per unit-hour, asks {price}")
        return None


class ProviderStatusFilter(FilterBase):
    """Registration status (active only) and stake (at least ``min_stake``)."""

    name = "ProviderStatus"

    def mask(self, st: CycleState) -> np.ndarray:
        hit = st.shared.get(STATUS_MASK, st.ix.version)
        if hit is None:
            hit = st.shared.put(STATUS_MASK, st.ix.version,
                                (st.ix.status == ACTIVE) & (st.ix.stake >= st.config.min_stake))
        return hit

    def ever(self, st: CycleState) -> np.ndarray:
        return st.ix.status != RETIRED

    def check(self, st: CycleState, i: int):
        p = st.ix.providers[i]
        out = []
        if p.status == ProviderStatus.RETIRED:
            out.append(self._reject(st, i, Code.UNRESOLVABLE, "retired", "provider has left the market"))
        elif p.status != ProviderStatus.ACTIVE:
            out.append(self._reject(st, i, Code.UNSCHEDULABLE, p.status.value,
                                    f"provider is {p.status.value}, takes no new leases now"))
        if p.stake < st.config.min_stake:
            out.append(self._reject(st, i, Code.UNSCHEDULABLE, "stake",
                                    f"stake {p.stake} is below the minimum {st.config.min_stake}"))
        return tuple(out) or None


class ProviderLoad(FilterBase):
    """Load from the provider's latest LSA (at most ``max_load``), and that LSA's age."""

    name = "ProviderLoad"

    def mask(self, st: CycleState) -> np.ndarray:
        cfg = st.config
        sub = (st.ix.version, st.now if cfg.max_lsa_age_s is not None else None)
        hit = st.shared.get(LOAD_MASK, sub)
        if hit is None:
            m = st.ix.load <= cfg.max_load
            if cfg.max_lsa_age_s is not None:
                with np.errstate(invalid="ignore"):
                    m &= (st.now - st.ix.lsa_at) <= cfg.max_lsa_age_s
            hit = st.shared.put(LOAD_MASK, sub, m)
        return hit

    def reads_clock(self, config: MatchingConfig) -> bool:
        return config.max_lsa_age_s is not None

    def check(self, st: CycleState, i: int):
        p, cfg = st.ix.providers[i], st.config
        out = []
        if p.load > cfg.max_load:
            out.append(self._reject(st, i, Code.UNSCHEDULABLE, "overloaded",
                                    f"latest LSA reports load {p.load:.2f}, above {cfg.max_load:.2f}"))
        if cfg.max_lsa_age_s is not None:
            if p.lsa_at is None:
                out.append(self._reject(st, i, Code.UNSCHEDULABLE, "stale-lsa", "no LSA heard from the provider"))
            elif st.now - p.lsa_at > cfg.max_lsa_age_s:
                out.append(self._reject(st, i, Code.UNSCHEDULABLE, "stale-lsa",
                                        f"latest LSA is {st.now - p.lsa_at:.1f} s old, limit {cfg.max_lsa_age_s:g} s"))
        return tuple(out) or None


#: the filters this module provides, in the default run order
FILTERS: tuple[type[FilterBase], ...] = (HardwareFit, RuntimeSupport, FreeCapacity, DomainLatency, PriceCeiling,
                                         ProviderStatusFilter, ProviderLoad)
