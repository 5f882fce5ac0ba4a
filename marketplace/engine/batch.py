"""Verifiable matching records: a round's inputs as a self-contained document, and its replay.

Before each round the engine snapshots everything the matcher reads (``snapshot``): the
plugin config and matcher version, the providers (each with its signed LSA bytes and the
market facts taken from the chain), the leases holding capacity (order, provider, exact
slots), the queued orders, the round number, the rotating start index and ``now``. The
document's canonical JSON is stored content-addressed as
``state_dir/batches/<inputsHash>.json`` where ``inputsHash = keccak(canonical inputs)``.

``decisions_hash`` is keccak over the canonical list of what the round reserved:
``[order id, provider, placement, ranked backups]`` in bind order. Both hashes go on chain
in the same transaction that assigns the round's orders (``ComputeMarket.assignBatch``,
whose ``Assigned`` events name ``batch_id_of(inputsHash, decisionsHash)``); ``replay``
rebuilds a fresh ``Scheduler`` from the document alone, runs the same round and compares.

Invariants: ``restore(snapshot(s))`` holds the same capacity, queue and start index as ``s``;
the canonical form has sorted keys and no floats that JSON cannot round-trip. Pure: no I/O
and no chain (the service reads and writes the files).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any, Sequence

from eth_utils import keccak

from marketplace.convergence.lsa import decode_lsa
from marketplace.matching import (MatchingConfig, Order, Placement, Provider, ProviderStatus, Reservation,
                                  Scheduler)
from marketplace.matching.binder import BindResult, BindStatus
from marketplace.matching.scheduler import ENGINE_VERSION
from marketplace.resources.model import DeviceClass
from marketplace.resources.requirement import Requirement
from marketplace.resources.runtimes import WorkloadNeed

log = logging.getLogger(__name__)

FORMAT = "cona-batch/1"


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def order_doc(o: Order) -> dict[str, Any]:
    """An order's record in a batch (its workload's needs only when it has any: records of orders
    that have none are what they were before runtimes existed, and replay the same)."""
    doc = {"id": o.order_id, "requirement": o.requirement.to_dict(), "tier": o.tier, "buyer_node": o.buyer_node,
           "submitted_at": float(o.submitted_at)}
    if o.workload is not None:
        doc["workload"] = o.workload.to_dict()
    return doc


def order_of(doc: dict[str, Any]) -> Order:
    need = doc.get("workload")
    return Order(doc["id"], Requirement.from_dict(doc["requirement"]), doc["tier"], doc["buyer_node"],
                 float(doc["submitted_at"]), None if need is None else WorkloadNeed.from_dict(need))


def placement_doc(p: Placement) -> dict[str, Any]:
    return {"provider": p.provider_id, "device_class": int(p.device_class), "slots": [list(s) for s in p.slots],
            "cpu_milli": p.cpu_milli, "memory_mib": p.memory_mib}


def placement_of(doc: dict[str, Any]) -> Placement:
    return Placement(doc["provider"], DeviceClass(doc["device_class"]), tuple(tuple(s) for s in doc["slots"]),
                     doc["cpu_milli"], doc["memory_mib"])


def provider_doc(p: Provider, lsa_raw: bytes) -> dict[str, Any]:
    return {"id": p.provider_id, "lsa": lsa_raw.hex(), "attach_node": p.attach_node, "price": p.price,
            "domain": p.domain, "status": p.status.value, "stake": str(p.stake), "load": float(p.load),
            "lsa_at": None if p.lsa_at is None else float(p.lsa_at), "reliability": float(p.reliability)}


def provider_of(doc: dict[str, Any]) -> Provider:
    """The provider a batch record describes; its hardware and runtimes are its signed LSA's."""
    lsa = decode_lsa(bytes.fromhex(doc["lsa"]))
    return Provider(doc["id"], lsa.descriptor, doc["attach_node"], doc["price"], doc["domain"],
                    ProviderStatus(doc["status"]), int(doc["stake"]), doc["load"], doc["lsa_at"], doc["reliability"],
                    lsa.runtimes)


def hold(sched: Scheduler, order: Order, placement: Placement) -> None:
    """Hold capacity for a lease the chain already bound (recovery, failover to a backup)."""
    sched.hold(order, placement)


def place_on(sched: Scheduler, order: Order, provider_id: str, now: float) -> Placement | None:
    """The exact slots ``order`` would take on ``provider_id`` now (best fit), or None."""
    return sched.placement_on(order, provider_id, now)


def withdraw(sched: Scheduler, order_id: str) -> None:
    """Forget a queued order (cancelled on chain, or assigned by someone else)."""
    sched.queue.remove(order_id)
    if sched.state_of(order_id) is None:
        sched.orders.pop(order_id, None)


def rank_backups(sched: Scheduler, order: Order, chosen: str, limit: int, now: float) -> list[str]:
    """The next best feasible providers for ``order`` (score, then id), without ``chosen``."""
    if limit <= 0:
        return []
    ex = sched.explain(order, now=now)
    ok = sorted((v for v in ex.verdicts if v.feasible and v.provider_id != chosen),
                key=lambda v: (-(v.total or 0.0), v.provider_id))
    return [v.provider_id for v in ok[:limit]]


def snapshot(sched: Scheduler, lsas: dict[str, bytes], *, now: float, lsdb_digest: bytes, topology: str | None,
             max_backups: int) -> dict[str, Any]:
    """Everything the next ``schedule_round(now)`` of ``sched`` reads (see the module docstring)."""
    held = []
    for oid in sorted(sched.held):
        h = sched.held[oid]
        held.append({"order": order_doc(h.reservation.order), "placement": placement_doc(h.reservation.placement)})
    return {
        "format": FORMAT, "version": ENGINE_VERSION, "config": sched.config.canonical(),
        "lsdb_digest": "0x" + lsdb_digest.hex(), "topology": topology, "max_backups": max_backups,
        "providers": [provider_doc(p, lsas[p.provider_id]) for p in sched.index.providers],
        "held": held, "queue": sorted((order_doc(o) for o in sched.queue.snapshot()), key=lambda d: d["id"]),
        "round_no": sched.round_no, "next_start": sched.next_start, "now": float(now),
    }


def inputs_hash(inputs: dict[str, Any]) -> bytes:
    return keccak(canonical(inputs))


def decisions_doc(batch: Sequence[Reservation], backups: Sequence[Sequence[str]]) -> list[Any]:
    return [[r.order.order_id, r.placement.provider_id, placement_doc(r.placement), list(b)]
            for r, b in zip(batch, backups)]


def decisions_hash(decisions: list[Any]) -> bytes:
    return keccak(canonical(decisions))


def batch_id_of(inputs_h: bytes, decisions_h: bytes) -> bytes:
    return keccak(b"cona-batch" + inputs_h + decisions_h)


def restore(inputs: dict[str, Any], *, routing=None) -> Scheduler:
    """A fresh scheduler in the state the document describes."""
    if inputs.get("format") != FORMAT:
        raise ValueError(f"unknown batch format {inputs.get('format')!r}")
    config = MatchingConfig.from_dict({k: v for k, v in _config_args(inputs["config"]).items()})
    sched = Scheduler([provider_of(d) for d in inputs["providers"]], config=config, routing=routing)
    for h in inputs["held"]:
        hold(sched, order_of(h["order"]), placement_of(h["placement"]))
    for d in inputs["queue"]:
        o = order_of(d)
        sched.orders[o.order_id] = o
        sched.queue.push(o)
    sched.round_no = inputs["round_no"]
    sched.next_start = inputs["next_start"]
    return sched


def _config_args(c: dict[str, Any]) -> dict[str, Any]:
    out = dict(c)
    out["score"] = [[n, float(w)] for n, w in c["score"]]
    for k in ("ageing_s", "max_load", "max_lsa_age_s"):
        if isinstance(out.get(k), str):
            out[k] = float(out[k])
    return out


class RecordingBinder:
    """Binds everything (as the chain did) and records the decisions with their backups."""

    def __init__(self, sched_ref: list, max_backups: int, now: float) -> None:
        self.sched_ref = sched_ref
        self.max_backups = max_backups
        self.now = now
        self.decisions: list[Any] = []

    def bind(self, round_no: int, batch: Sequence[Reservation]) -> list[BindResult]:
        sched = self.sched_ref[0]
        backups = [rank_backups(sched, r.order, r.placement.provider_id, self.max_backups, self.now) for r in batch]
        self.decisions = decisions_doc(batch, backups)
        return [BindResult(r.order.order_id, BindStatus.BOUND, lease_id=f"replay-{round_no}") for r in batch]


def rerun(inputs: dict[str, Any], *, routing=None) -> list[Any]:
    """Replays the round the document describes; returns its decisions document."""
    sched = restore(inputs, routing=routing)
    ref = [sched]
    binder = RecordingBinder(ref, inputs["max_backups"], inputs["now"])
    sched.binder = binder
    sched.schedule_round(inputs["now"])
    return binder.decisions


def with_max_price(req: Requirement, ceiling: int) -> Requirement:
    """The requirement with the chain's price ceiling when the buyer's spec gave none."""
    if req.max_price is None or req.max_price > ceiling:
        return replace(req, max_price=ceiling)
    return req
