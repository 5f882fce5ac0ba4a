"""Errors of the engine service, under the roots of ``marketplace.errors``.

    InputError
    ├── InvalidSpec             a buyer's order document that is malformed (names the field)
    ├── SpecMismatch            the spec does not hash to the intent's requirement, or contradicts it
    ├── PlacementRefused        a signed order the market contract would refuse (``error``: the contract's)
    └── NotServed               an order whose workload no provider in the market advertises a runtime for
    NotFound
    └── UnknownEngineOrder      an order id the engine has never seen on chain
    Rejected
    ├── LsaRejected             an LSA refused (``reason``: unknown-originator, contradicts-registration, ...)
    ├── HeartbeatRejected       a heartbeat from no registered provider
    ├── ResultRejected          result bytes whose keccak is not the on-chain result hash
    └── IdempotencyConflict     an Idempotency-Key reused with another request body
    ChainUnavailable
    └── PlacementBusy           too many orders waiting to be placed (503: retry)
    ChainError
    └── ReplayMismatch          a batch whose stored inputs or decisions do not match the chain
"""

from __future__ import annotations

from typing import Any

from marketplace.errors import ChainError, ChainUnavailable, InputError, NotFound, Rejected


class InvalidSpec(InputError):
    code = "engine-invalid-spec"


class SpecMismatch(InputError):
    code = "engine-spec-mismatch"


class PlacementRefused(InputError):
    """A signed order the market contract would refuse, found before anything was sent or kept.

    ``error`` is the contract's custom error (``InsufficientDeposit``, ``BadNonce``, ...) and
    ``error_args`` its arguments; ``http_status`` depends on it (``REFUSAL_STATUS``)."""

    code = "engine-placement-refused"

    def __init__(self, message: str, *, error: str, status: int = 422, args: dict[str, Any] | None = None,
                 **kw: Any) -> None:
        super().__init__(message, error=error, **kw)
        self.error = error
        self.error_args = dict(args or {})
        self.http_status = status


class PlacementBusy(ChainUnavailable):
    code = "engine-placement-busy"


class NotServed(InputError):
    code = "engine-not-served"


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
