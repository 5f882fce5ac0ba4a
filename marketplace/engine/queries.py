"""The engine's read models: what the API serves about orders, providers and results.

- ``order_view(id)``: the order on chain (``getOrder``), its spec, and the engine's status,
  reasons and history (each event with the state after it);
- ``spec_of(id)``, ``result(id)``: the documents the engine keeps for an order;
- ``explain(id)``, ``quote(requirement, attachment)``: the matcher's verdict per provider
  (feasible or why not, scores, price, latency from the buyer's node);
- ``providers()``: every provider with an installed LSA, as the matcher sees it.

``submit_result`` is the one write: result bytes are kept only when their keccak is the result
hash the chain holds for the order, so what ``result`` serves is what the provider committed to.

Invariant: an order id the engine has not seen makes it sync its index once before answering
``UnknownEngineOrder`` (the order may have been placed since the last turn).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from marketplace.chain.market import Market
from marketplace.convergence.heartbeat import HeartbeatMonitor
from marketplace.engine.errors import ResultRejected, UnknownEngineOrder
from marketplace.engine.matcher import Matcher
from marketplace.engine.orders import OrderRecord
from marketplace.engine.providers import ProviderTable
from marketplace.engine.spec import Spec
from marketplace.engine.store import EngineStore
from marketplace.errors import InputError, NotFound, TopologyError
from marketplace.matching import Order
from marketplace.resources.requirement import Requirement
from marketplace.resources.runtimes import RuntimeOffer
from marketplace.results import result_digest
from marketplace.routing import RoutingTable

log = logging.getLogger(__name__)

NO_RESULT = b"\x00" * 32
#: how a provider that advertises no runtimes is shown: the shipped wasm modules, nothing else
SHIPPED = RuntimeOffer(buyer_wasm=False, nondeterministic=False)


class Queries:
    """Read models over the engine's parts (see the module docstring)."""

    def __init__(self, *, orders: dict[int, OrderRecord], specs: dict[bytes, Spec], market: Market,
                 table: ProviderTable, matcher: Matcher, monitor: HeartbeatMonitor, store: EngineStore,
                 routing: RoutingTable | None, topology_name: str, sync: Callable[[], None],
                 lock: threading.RLock, clock: Callable[[], float]) -> None:
        self.orders = orders
        self.specs = specs
        self.market = market
        self.table = table
        self.matcher = matcher
        self.monitor = monitor
        self.store = store
        self.routing = routing
        self.topology_name = topology_name
        self.sync = sync
        self.lock = lock
        self.clock = clock

    def record(self, order_id: int) -> OrderRecord:
        with self.lock:
            rec = self.orders.get(order_id)
            if rec is None:
                self.sync()
                rec = self.orders.get(order_id)
        if rec is None:
            raise UnknownEngineOrder(f"no order {order_id} on this market", field="order_id")
        return rec

    def spec_of(self, order_id: int) -> dict[str, Any]:
        rec = self.record(order_id)
        spec = self.specs.get(rec.spec_digest)
        if spec is None:
            raise NotFound(f"order {order_id}: its spec 0x{rec.spec_digest.hex()} was never submitted",
                           field="order_id")
        return spec.to_dict()

    def order_view(self, order_id: int) -> dict[str, Any]:
        rec = self.record(order_id)
        o = self.market.order(order_id)
        spec = self.specs.get(rec.spec_digest)
        return {
            "id": order_id, "state": o.state.name.lower(), "buyer": o.buyer, "provider": o.provider,
            "backups": list(o.backups), "price": str(o.price), "max_price": str(o.max_price),
            "escrow": str(o.escrow), "units": o.units, "duration": o.duration, "served": o.served,
            "accept_deadline": o.accept_deadline, "started_at": o.started_at, "tier": o.tier,
            "spec_digest": "0x" + rec.spec_digest.hex(), "result": "0x" + o.result.hex(),
            "spec": None if spec is None else spec.to_dict(),
            "engine": rec.to_dict(),
        }

    # -- the matcher's verdicts

    def explain(self, order_id: int) -> dict[str, Any]:
        rec = self.record(order_id)
        with self.lock:
            order = self.matcher.order_of(rec, self.clock())
            if order is None:
                raise NotFound(f"order {order_id}: no spec yet, nothing to explain", field="order_id")
            doc = self._explain(order)
        doc.update({"order_id": order_id, "status": rec.status, "reasons": rec.reasons})
        return doc

    def quote(self, requirement: Any, attachment: str | None) -> dict[str, Any]:
        req = requirement if isinstance(requirement, Requirement) else Requirement.from_dict(requirement)
        if attachment is not None and self.routing is not None:
            try:
                self.routing.index(attachment)
            except TopologyError:
                raise InputError(f"attachment {attachment!r} is not a node of {self.topology_name}",
                                 field="attachment") from None
        with self.lock:
            doc = self._explain(Order("quote", req, 0, attachment, self.clock()))
        doc["requirement"] = req.to_dict()
        doc["requirement_digest"] = "0x" + req.digest().hex()
        return doc

    def _explain(self, order: Order) -> dict[str, Any]:
        ex = self.matcher.scheduler().explain(order, now=self.clock())
        out = []
        for v in ex.verdicts:
            p = self.matcher.providers.get(v.provider_id)
            latency = None
            if p is not None and p.attach_node and order.buyer_node and self.routing is not None:
                latency = round(float(self.routing.latency(order.buyer_node, p.attach_node)), 3)
            out.append({"provider": v.provider_id, "feasible": v.feasible, "total": v.total,
                        "price": None if p is None else p.price, "latency_ms": latency,
                        "scores": [{"plugin": s.plugin, "raw": s.raw, "normalized": s.normalized, "weight": s.weight}
                                   for s in v.scores],
                        "rejections": [{"plugin": r.plugin, "code": r.code.name.lower(), "reason": r.reason,
                                        "message": r.message} for r in v.rejections]})
        out.sort(key=lambda d: (not d["feasible"], -(d["total"] or 0.0), d["provider"]))
        return {"best": ex.best, "providers": out}

    def providers(self) -> list[dict[str, Any]]:
        with self.lock:
            out = []
            lsas = self.table.lsas
            for addr in sorted(self.matcher.providers):
                p = self.matcher.providers[addr]
                out.append({"address": addr, "hostname": p.descriptor.hostname,
                            "devices": [d.canonical() for d in p.descriptor.devices],
                            "memory_mib": p.descriptor.memory_mib, "attachment": p.attach_node, "domain": p.domain,
                            "price": p.price, "status": p.status.value, "stake": str(p.stake), "load": p.load,
                            "lsa_sequence": lsas[addr].header.sequence,
                            "last_heartbeat": self.monitor.last_seen(addr),
                            "runtimes": (p.runtimes or SHIPPED).to_dict()})
            return out

    # -- results

    def submit_result(self, order_id: int, data: bytes) -> str:
        self.record(order_id)
        want = self.market.order(order_id).result
        if want == NO_RESULT:
            raise ResultRejected(f"order {order_id} has no result hash on chain yet", reason="no-result-on-chain",
                                 field="order_id")
        got = result_digest(data)
        if got != want:
            raise ResultRejected(f"keccak of the uploaded bytes is 0x{got.hex()}, the chain holds 0x{want.hex()}",
                                 reason="hash-mismatch", field="body")
        self.store.put_result(order_id, data)
        log.info("order %d: result of %d bytes stored (0x%s)", order_id, len(data), got.hex()[:12])
        return "0x" + got.hex()

    def result(self, order_id: int) -> bytes:
        self.record(order_id)
        data = self.store.result(order_id)
        if data is None:
            raise NotFound(f"order {order_id}: no result uploaded yet", field="order_id")
        return data
