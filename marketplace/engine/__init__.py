"""The engine service: the orchestration adapter that turns the pure pieces into a running market.

    Engine(chain, deployment, topology=..., state_dir=..., config=..., clock=..., indexer=None)
      .submit_lsa(raw) -> InstallResult       .heartbeat(dict)
      .place_order(intent, signature, spec)   .place_order_tx(tx_hash, spec)
      .step(now) / .run(stop)                 .replay(batch_id)
      .order_view(id) .explain(id) .quote(requirement, attachment) .providers()

``Engine`` (``service``) only wires its parts and runs the loop: ``store`` (the files, one
``atomic_write``), ``intake`` (LSAs, heartbeats), ``providers`` (registry record + LSA ->
matching ``Provider``, the price rule), ``matcher`` (the ``Scheduler``), ``orders`` (the order
table with its ``Status``, orders in), ``events`` (the lifecycle fold of chain events and the
engine's reactions), ``binder`` (``assignBatch``), ``faults`` (timeouts, failures),
``queries`` (read models) and ``replay``. See docs/engine.md. ``spec`` and ``batch`` are pure
(the buyer's order document and its digest; a round's record and its hashes).
"""

from marketplace.engine.spec import Spec, spec_digest

__all__ = ["Spec", "spec_digest"]
