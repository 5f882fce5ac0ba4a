"""The matching ``Binder`` on chain: one ``assignBatch`` transaction per round.

Before a round, ``prepare`` snapshots what the matcher reads (``batch.snapshot``): the round's
inputs. ``bind`` then ranks backups for each reservation, stores the round's record
(``state_dir/batches/<inputsHash>.json``: batch id, inputs, decisions), checks each
reservation against the chain state the index synced (order still Open, provider eligible,
price within the order's ceiling) and sends ONE transaction that records the batch and assigns
every order that passed, all or nothing.

A round in which every reservation failed the pre-write check writes nothing: it leased
nothing, its reservations are released and the orders come back in a later round, whose batch
is the one committed. The contract accepts an empty batch (``orders == 0``), but recording
rounds that bind nothing would cost gas on every idle turn for no lease.

Invariants: a failed write releases every reservation of the round (never a half-bound
lease); the write carries the idempotency key ``assign:<batch id>``, so a batch is never sent
twice; the receipt's events are applied to the engine's tables before ``bind`` returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from marketplace.chain.lifecycle import OrderState
from marketplace.chain.market import Market, skip_reason
from marketplace.chain.writer import Signer, TransactionWriter
from marketplace.convergence.lsdb import Lsdb
from marketplace.engine import batch as B
from marketplace.engine.orders import OrderRecord
from marketplace.engine.providers import ProviderTable
from marketplace.engine.store import EngineStore
from marketplace.errors import ConaError
from marketplace.matching import BindResult, BindStatus, Reservation, Scheduler

log = logging.getLogger(__name__)

# Fixed gas limits for assignBatch, so no eth_estimateGas (a full extra EVM execution) sits on the
# order -> lease path: about twice the gas measured on the embedded chain (one order with two
# backups ~230k, of which ~95k is the transaction and the batch record); unused gas is not
# charged. A write that would revert is mined as failed instead of being refused at estimation:
# the engine syncs the index to the head before each round, so that is rare, and a failed assign
# releases its reservations.
GAS_ASSIGN_BASE = 200_000
GAS_ASSIGN_ORDER = 200_000
GAS_ASSIGN_BACKUP = 30_000


@dataclass(frozen=True)
class Round:
    """What ``bind`` needs of the round in progress: its scheduler, inputs and time."""

    sched: Scheduler
    inputs: dict[str, Any]
    now: float


#: one assignment to send: (order id, provider, price, ranked backups)
Assignment = tuple[int, str, int, list[str]]


class ChainBinder:
    """Binds a round's reservations on chain. Collaborators, all explicit: the order table and the
    provider table (the pre-write check and the price), the LSDB (its digest goes in the inputs),
    the store (the round's record), the market, orchestrator and writer (the write), and
    ``apply_tx`` (the engine's event fold, for the receipt)."""

    def __init__(self, *, orders: dict[int, OrderRecord], table: ProviderTable, lsdb: Lsdb, store: EngineStore,
                 market: Market, orchestrator: Signer, writer: TransactionWriter,
                 apply_tx: Callable[[Any], None], topology_name: str | None, max_backups: int) -> None:
        self.orders = orders
        self.table = table
        self.lsdb = lsdb
        self.store = store
        self.market = market
        self.orchestrator = orchestrator
        self.writer = writer
        self.apply_tx = apply_tx
        self.topology_name = topology_name
        self.max_backups = max_backups
        self.round: Round | None = None

    def prepare(self, sched: Scheduler, now: float) -> None:
        """Snapshot the inputs of the round ``sched`` is about to run (before it changes anything)."""
        inputs = B.snapshot(sched, self.table.raw_lsas(), now=now, lsdb_digest=self.lsdb.digest(),
                            topology=self.topology_name, max_backups=self.max_backups)
        self.round = Round(sched, inputs, now)

    def check(self, oid: int, provider: str, eligible: dict[str, bool]) -> str | None:
        """Chain state before a write: the order must still be Open, the provider eligible, the
        price within the order's ceiling; None when it may be assigned, else why not.

        The order's state is the one the events give: ``step`` synced the index to the head just
        before this round, so it is as fresh as an ``eth_call`` would be, without one EVM call per
        order. ``eligible`` caches the providers' eligibility for the round."""
        rec = self.orders[oid]
        if rec.state != OrderState.OPEN:
            return f"order-{rec.state.name.lower()}"
        if provider not in eligible:
            eligible[provider] = self.table.eligible(provider)
        if not eligible[provider]:
            return "provider-not-eligible"
        if self.table.price(provider, rec.device_class) > rec.max_price:
            return "price-above-ceiling"
        return None

    def bind(self, round_no: int, batch: Sequence[Reservation]) -> list[BindResult]:
        rnd = self.round
        if rnd is None:
            raise RuntimeError("ChainBinder.bind before prepare: the round's inputs were never recorded")
        backups = [B.rank_backups(rnd.sched, r.order, r.placement.provider_id, self.max_backups, rnd.now)
                   for r in batch]
        decisions = B.decisions_doc(batch, backups)
        ih, dh = B.inputs_hash(rnd.inputs), B.decisions_hash(decisions)
        bid = B.batch_id_of(ih, dh)
        self.store.put_batch(ih, B.canonical({"batch_id": "0x" + bid.hex(), "inputs": rnd.inputs,
                                              "decisions": decisions}))
        results: dict[str, BindResult] = {}
        assignments: list[Assignment] = []
        eligible: dict[str, bool] = {}
        for r, bk in zip(batch, backups):
            oid = r.order.order_id
            why = self.check(int(oid), r.placement.provider_id, eligible)
            if why is not None:
                results[oid] = BindResult(oid, BindStatus.FAILED, reason=why)
                continue
            price = self.table.price(r.placement.provider_id, self.orders[int(oid)].device_class)
            assignments.append((int(oid), r.placement.provider_id, price, list(bk)))
        if assignments:
            results.update(self._send(bid, ih, dh, assignments))
        return [results[r.order.order_id] for r in batch]

    def _send(self, bid: bytes, ih: bytes, dh: bytes, assignments: list[Assignment]) -> dict[str, BindResult]:
        """The round's one ``assignBatch``: every assignment bound, or every one failed."""
        gas = GAS_ASSIGN_BASE + sum(GAS_ASSIGN_ORDER + GAS_ASSIGN_BACKUP * len(a[3]) for a in assignments)
        cap = self.writer.gas_cap
        req = self.market.assign_batch_request(bid, ih, dh, assignments, gas=min(gas, cap) if cap else gas,
                                               key=f"assign:{bid.hex()}")
        try:
            txs = self.market.send_many(self.orchestrator, [req])
            err = txs[0].receipt.error
        except ConaError as exc:
            txs, err = [], exc
        if err is not None:
            log.warning("batch %s: assignBatch of %d orders failed (%s); reservations released",
                        bid.hex()[:12], len(assignments), err)
            return {str(a[0]): BindResult(str(a[0]), BindStatus.FAILED, reason="chain-write-failed")
                    for a in assignments}
        # the contract skips (and reports) an assignment that no longer held when the batch landed (an order
        # cancelled, a provider paused in between): that order alone failed, the round stands
        skipped = {int(e.args["order"]): skip_reason(e.args["reason"]) for e in txs[0].named("AssignmentSkipped")}
        results = {str(a[0]): BindResult(str(a[0]), BindStatus.BOUND, lease_id=txs[0].tx_hash)
                   if a[0] not in skipped else BindResult(str(a[0]), BindStatus.FAILED, reason=skipped[a[0]])
                   for a in assignments}
        self.apply_tx(txs[0])
        for oid, why in sorted(skipped.items()):
            log.warning("batch %s: order %d skipped by the contract (%s)", bid.hex()[:12], oid, why)
        log.info("batch %s: %d orders assigned and the batch recorded in tx %s", bid.hex()[:12],
                 len(assignments) - len(skipped), txs[0].tx_hash)
        return results
