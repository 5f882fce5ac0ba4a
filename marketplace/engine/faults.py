"""Leases that went wrong: acceptance deadlines missed, and providers that stopped heartbeating.

``LeaseWatch`` runs twice per engine turn, after the index sync:

- ``timeouts()``: an order Assigned whose acceptance deadline has passed on chain ->
  ``timeoutAcceptance`` (the contract slashes the late provider and moves the order to its
  next backup, or refunds the buyer);
- ``failures(now)``: a provider the ``HeartbeatMonitor`` declares failed is marked offline (no
  longer matched) and each lease it is running -> ``fail`` (pro-rata pay for the time served, a
  slash, and the rest of the lease to the next backup).

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
from marketplace.chain.market import Market
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
