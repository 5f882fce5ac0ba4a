"""The round ledger: the digests that make every round replayable, and the round's result.

``RoundResult.digest()`` = keccak(inputs digest || canonical decisions), where the inputs
digest is keccak over (static digest: engine version, config, workload; the providers
snapshot; the state digest; the round number; ``now``; the round's orders). The state digest
is a keccak chain over every state change since the start (submit, reserve, unreserve,
bound, round), folded once per round rather than per event.

Invariants: the providers snapshot is in id order and names hardware by the digest of its
descriptor without the hostname (one keccak per hardware shape); every canonical form is
JSON with sorted keys and no NaN; nothing here reads a clock or iterates a set.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Sequence

from eth_utils import keccak

from marketplace.matching.config import MatchingConfig
from marketplace.matching.fragmentation import WorkloadDistribution
from marketplace.matching.index import ProviderIndex
from marketplace.matching.model import Decision, Order, Outcome

log = logging.getLogger(__name__)


def canon(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True, slots=True)
class RoundResult:
    round_no: int
    now: float
    decisions: tuple[Decision, ...]
    #: keccak of the round's inputs (config, workload, providers, prior state, orders, now, seed)
    inputs_digest: bytes
    #: counts of providers examined while searching (for cost accounting)
    examined: int = 0

    def digest(self) -> bytes:
        """keccak-256 over the inputs digest and the canonical decisions: what goes on chain."""
        return keccak(self.inputs_digest + canon([d.canonical() for d in self.decisions]))

    def by_order(self) -> dict[str, Decision]:
        return {d.order_id: d for d in self.decisions}

    def count(self, outcome: Outcome) -> int:
        return sum(1 for d in self.decisions if d.outcome == outcome)


class Ledger:
    """The inputs and state digests of one scheduler (see the module docstring)."""

    def __init__(self, version: str, config: MatchingConfig, workload: WorkloadDistribution,
                 index: ProviderIndex) -> None:
        self.index = index
        self._providers: bytes | None = None
        self._state = keccak(b"cona-matching-state")
        self._events: list[list] = []
        self._req_hex: dict = {}
        self.providers_digest()
        self.static = keccak(canon([version, config.canonical(), workload.canonical()]))

    def providers_digest(self) -> bytes:
        """keccak over every provider's canonical record, in id order (the LSDB snapshot).

        A record names its hardware by the digest of its descriptor without the hostname
        (computed once per hardware shape) plus the hostname, so the snapshot costs one small
        record per provider, not one descriptor digest each."""
        if self._providers is None:
            shape: dict[tuple, str] = {}
            leaves = []
            for p in self.index.providers:
                d = p.descriptor
                key = (d.devices, d.memory_mib, d.disk_gib, d.numa_nodes, d.arch)
                h = shape.get(key)
                if h is None:
                    c = d.canonical()
                    c.pop("hostname")
                    h = shape[key] = keccak(canon(c)).hex()
                leaves.append([p.provider_id, d.hostname, h, p.attach_node, p.price, p.domain, p.status.value,
                               p.stake, repr(float(p.load)), None if p.lsa_at is None else repr(float(p.lsa_at)),
                               repr(float(p.reliability))])
            self._providers = keccak(canon(leaves))
        return self._providers

    def providers_changed(self) -> None:
        self._providers = None

    def event(self, *parts: Any) -> None:
        # folded into the state digest at the next round (one keccak per round, not per event)
        self._events.append(list(parts))

    def state_digest(self) -> bytes:
        """keccak chain over every state change (submit, reserve, unreserve, bind, round)."""
        if self._events:
            self._state = keccak(self._state + canon(self._events))
            self._events = []
        return self._state

    def order_canon(self, order: Order) -> list:
        req = order.requirement
        h = self._req_hex.get(req)
        if h is None:
            h = self._req_hex[req] = req.digest().hex()
        out = [order.order_id, h, order.tier, order.buyer_node, repr(float(order.submitted_at))]
        return out if order.workload is None else [*out, order.workload.canonical()]

    def inputs(self, round_no: int, now: float, batch: Sequence[Order]) -> bytes:
        """The round's inputs digest (folds the state events so far)."""
        return keccak(canon([
            self.static.hex(), self.providers_digest().hex(), self.state_digest().hex(), round_no,
            repr(float(now)), [self.order_canon(o) for o in batch],
        ]))
