"""The replay of a matching batch: anyone holding its stored inputs can check what it decided.

``replay_batch`` finds the batch by its own event (``BatchCommitted`` with its ``batchId``) and
the contract's ``batches(id)`` record, lists the orders whose ``Assigned`` names it, checks the
stored inputs (``state_dir/batches/<inputsHash>.json``) against the committed ``inputsHash``,
reruns the deterministic matcher on a fresh scheduler built from that document alone
(``batch.rerun``) and compares the hash of its decisions with the committed ``decisionsHash``.
Used by ``Engine.replay`` and by ``cona audit replay`` (no engine needed).

Invariant: ``reproduced`` is true exactly when the rerun's decisions hash to the committed
one; every other disagreement (event vs contract record, stored inputs vs their hash) raises
``ReplayMismatch``, a missing batch or input document ``NotFound``, and a batch id that is not
32 bytes of hex an ``InputError`` naming the field ``batch``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from marketplace.chain.audit_values import check_batch_id
from marketplace.chain.indexer import EventIndexer, arg_bytes
from marketplace.chain.market import Market
from marketplace.engine import batch as B
from marketplace.engine.errors import ReplayMismatch
from marketplace.engine.store import batch_path
from marketplace.errors import NotFound


def replay_batch(indexer: EventIndexer, market: Market, state_dir: Path | Sequence[Path], batch_id: str | bytes, *,
                 routing=None) -> dict[str, Any]:
    """Fetch a batch's inputs, check their hash against ``BatchCommitted`` on chain, rerun the
    deterministic matcher and compare its decisions with the committed ones.

    The batch is found by its own event (``BatchCommitted`` with this ``batchId``), and the
    orders it assigned by theirs (``Assigned`` naming the same ``batchId``, same transaction).
    ``state_dir``: the engine's state directory, or several (a multi-domain market's engines each
    keep the batches they committed): the first that holds the inputs is read."""
    bid = bytes.fromhex(check_batch_id(batch_id, "batch")[2:])
    indexer.sync()
    events = indexer.events("ComputeMarket", "BatchCommitted", batchId="0x" + bid.hex())
    if not events:
        raise NotFound(f"no BatchCommitted event for batch 0x{bid.hex()} on this market", field="batch")
    ev = events[0]
    ih, dh = arg_bytes(ev.args["inputsHash"]), arg_bytes(ev.args["decisionsHash"])
    on_chain = market.batch(bid)
    if on_chain is None or on_chain.inputs_hash != ih or on_chain.decisions_hash != dh:
        raise ReplayMismatch(f"batch 0x{bid.hex()}: the contract's record differs from its event")
    assigned = [int(a.args["order"]) for a in indexer.events("ComputeMarket", "Assigned", batchId="0x" + bid.hex())]
    dirs = [Path(state_dir)] if isinstance(state_dir, (str, Path)) else [Path(d) for d in state_dir]
    path = next((p for p in (batch_path(d, ih) for d in dirs) if p.exists()), None)
    if path is None:
        where = ", ".join(str(batch_path(d, ih).parent) for d in dirs)
        raise NotFound(f"the inputs of batch 0x{bid.hex()} (0x{ih.hex()}) are not stored in {where}", field="batch")
    doc = json.loads(path.read_text())
    inputs = doc["inputs"]
    if B.inputs_hash(inputs) != ih:
        raise ReplayMismatch(f"batch 0x{bid.hex()}: stored inputs hash to 0x{B.inputs_hash(inputs).hex()}, the "
                             f"chain committed 0x{ih.hex()}")
    decisions = B.rerun(inputs, routing=routing)
    got = B.decisions_hash(decisions)
    return {"batch_id": "0x" + bid.hex(), "block": ev.block_number, "tx": ev.tx_hash,
            "inputs_hash": "0x" + ih.hex(), "decisions_hash": "0x" + dh.hex(),
            "replayed_decisions_hash": "0x" + got.hex(), "reproduced": got == dh,
            "orders": len(inputs["queue"]), "providers": len(inputs["providers"]), "assigned": assigned,
            "decisions": decisions}
