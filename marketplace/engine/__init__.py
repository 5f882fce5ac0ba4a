"""The engine service: the orchestration adapter that turns the pure pieces into a running market.

    Engine(chain, deployment, topology=..., state_dir=..., config=..., clock=...)
      .submit_lsa(raw) -> InstallResult       .heartbeat(dict)
      .place_order(intent, signature, spec)   .place_order_tx(tx_hash, spec)
      .step(now) / .run(stop)                 .replay(batch_id)
      .order_view(id) .explain(id) .quote(requirement, attachment) .providers()

See docs/engine.md. ``spec`` is pure (the buyer's order document and its digest).
"""

from marketplace.engine.spec import Spec, spec_digest

__all__ = ["Spec", "spec_digest"]
