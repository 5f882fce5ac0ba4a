"""Errors of the engine service, under the roots of ``marketplace.errors``.

    InputError
    ├── InvalidSpec             a buyer's order document that is malformed (names the field)
    └── SpecMismatch            the spec does not hash to the intent's requirement, or contradicts it
    NotFound
    └── UnknownEngineOrder      an order id the engine has never seen on chain
    Rejected
    ├── LsaRejected             an LSA refused (``reason``: unknown-originator, contradicts-registration, ...)
    ├── HeartbeatRejected       a heartbeat from no registered provider
    ├── ResultRejected          result bytes whose keccak is not the on-chain result hash
    ├── IdempotencyConflict     an Idempotency-Key reused with another request body
    └── HandoverRefused         an order another domain's engine hands over that this one will not take
                                (``reason``: not-federated, order-not-open, handed-away, cannot-serve,
                                bad-signature, domain-mismatch, not-an-orchestrator, stale-handover)
    ChainError
    └── ReplayMismatch          a batch whose stored inputs or decisions do not match the chain
"""

from __future__ import annotations

from marketplace.errors import ChainError, InputError, NotFound, Rejected


class InvalidSpec(InputError):
    code = "engine-invalid-spec"


class SpecMismatch(InputError):
    code = "engine-spec-mismatch"


class UnknownEngineOrder(NotFound):
    code = "engine-unknown-order"


class LsaRejected(Rejected):
    code = "engine-lsa-rejected"


class HeartbeatRejected(Rejected):
    code = "engine-heartbeat-rejected"


class ResultRejected(Rejected):
    code = "engine-result-rejected"


class IdempotencyConflict(Rejected):
    code = "engine-idempotency-conflict"


class ReplayMismatch(ChainError):
    http_status = 409
    code = "engine-replay-mismatch"


class HandoverRefused(Rejected):
    code = "engine-handover-refused"
