"""Leases that went wrong: acceptance deadlines missed, and providers that stopped heartbeating.

``LeaseWatch`` runs twice per engine turn, after the index sync:

- ``timeouts()``: an order Assigned whose acceptance deadline has passed on chain ->
  ``timeoutAcceptance`` (the contract slashes the late provider and moves the order to its
  next backup, or refunds the buyer);
- ``failures(now)``: a provider the ``HeartbeatMonitor`` declares failed is marked offline (no
  longer matched) and each lease it is running -> ``fail`` (pro-rata pay for the time served, a
  slash, and the rest of the lease to the next backup);
- ``overdue()``: the keeper's part, which anyone may do and the engine does so that no money waits
  on a stranger: a lease still Running past its end plus the order's ``run_grace`` -> ``expire``; a
  dispute the arbiter left past the order's ``arbitration_window`` -> ``lapse``.

Invariants: before each write the order is read on chain (Assigned past its deadline; Running
on that provider), and each write carries an idempotency key naming what it ends
(``timeout:<order>:<provider>:<deadline>``, ``fail:<order>:<provider>:<startedAt>``), so
nothing is timed out or failed twice, also across restarts. A failed write is logged and
retried by a later turn.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from marketplace.chain.lifecycle import OrderState
from marketplace.chain.market import Market, MarketTerms
from marketplace.chain.writer import Signer
from marketplace.convergence.heartbeat import HeartbeatMonitor
from marketplace.engine.matcher import Matcher
from marketplace.engine.orders import OrderRecord
from marketplace.engine.providers import ProviderTable
from marketplace.errors import ChainError

log = logging.getLogger(__name__)


class LeaseWatch:
    """Times out late acceptances and fails the leases of dead providers (see the module docstring)."""

    def __init__(self, *, orders: dict[int, OrderRecord], market: Market, orchestrator: Signer,
                 monitor: HeartbeatMonitor, table: ProviderTable, matcher: Matcher,
                 apply_tx: Callable[[Any], None]) -> None:
        self.orders = orders
        self.table = table
        self.market = market
        self.orchestrator = orchestrator
        self.monitor = monitor
        self.matcher = matcher
        self.apply_tx = apply_tx
        self.terms: dict[int, MarketTerms] = {}
        self._overdue_at = float("-inf")

    def timeouts(self) -> None:
        due = [r for r in self.orders.values() if r.state == OrderState.ASSIGNED and r.accept_deadline]
        if not due:
            return
        chain_now = self.market.chain_time()
        for rec in sorted(due, key=lambda r: r.id):
            if rec.accept_deadline >= chain_now:
                continue
            o = self.market.order(rec.id)
            if o.state != OrderState.ASSIGNED or o.accept_deadline >= chain_now:
                continue
            log.info("order %d: %s missed the acceptance deadline %d; timing out", rec.id, o.provider,
                     o.accept_deadline)
            try:
                tx = self.market.timeout_acceptance(self.orchestrator, rec.id,
                                                    key=f"timeout:{rec.id}:{o.provider}:{o.accept_deadline}")
                self.apply_tx(tx)
            except ChainError as exc:
                log.warning("order %d: timeoutAcceptance failed: %s", rec.id, exc)

    def overdue(self, now: float) -> None:
        # leases run for seconds to hours and the grace periods are minutes: once a second is prompt enough
        if now - self._overdue_at < 1.0:
            return
        self._overdue_at = now
        chain_now: int | None = None
        for rec in sorted(self.orders.values(), key=lambda r: r.id):
            if rec.state not in (OrderState.RUNNING, OrderState.DISPUTED):
                continue
            f = rec.fold
            terms = self._terms(f.terms)
            if rec.state == OrderState.RUNNING:
                due = f.started_at + (f.duration - f.served) + terms.run_grace if f.started_at else None
                action, call = "expire", self.market.expire
            else:
                due = f.disputed_at + terms.arbitration_window if f.disputed_at else None
                action, call = "lapse", self.market.lapse
            if due is None:
                continue
            chain_now = self.market.chain_time() if chain_now is None else chain_now
            if chain_now <= due:
                continue
            log.info("order %d: %s is overdue since %d; calling %s", rec.id, rec.state.label, due, action)
            try:
                self.apply_tx(call(self.orchestrator, rec.id, key=f"{action}:{rec.id}:{due}"))
            except ChainError as exc:
                log.warning("order %d: %s failed: %s", rec.id, action, exc)

    def _terms(self, version: int) -> MarketTerms:
        """An order's terms (a version never changes once set, so each is read once)."""
        if version not in self.terms:
            self.terms[version] = self.market.terms(version)
        return self.terms[version]

    def failures(self, now: float) -> None:
        for addr in self.monitor.failed(now):
            log.warning("provider %s missed heartbeats for more than %.1f s: declared failed", addr,
                        self.monitor.bound)
            self.table.mark_offline(addr)
            self.matcher.refresh(addr)
            for rec in sorted(self.orders.values(), key=lambda r: r.id):
                if rec.provider != addr or rec.state != OrderState.RUNNING:
                    continue
                o = self.market.order(rec.id)
                if o.state != OrderState.RUNNING or o.provider != addr:
                    continue
                try:
                    tx = self.market.fail(self.orchestrator, rec.id, key=f"fail:{rec.id}:{addr}:{o.started_at}")
                    self.apply_tx(tx)
                except ChainError as exc:
                    log.warning("order %d: fail on %s failed: %s", rec.id, addr, exc)
