"""The one exception tree of CONA.

Every error CONA raises on purpose is a ``ConaError``. Subclasses mix in the
builtin they refine (``ValueError``, ``ConnectionError``, ...), so callers that
only know the builtins still catch them, as web3.py does with
``Web3ValueError(Web3Exception, ValueError)``.

Each error carries a plain message that says what is wrong, an optional
``hint`` that says what to do, and structured fields (``field``, ``offset``,
``reason``...) so that the API can turn it into an RFC 9457 problem detail
naming the part at fault. ``http_status`` is the status the API answers with.

    ConaError
    ├── ConfigError (ValueError)            settings, brownie-config.yaml
    ├── InputError (ValueError)             bad input from a user; names the field
    │   ├── NotFound (LookupError)          an id that names nothing
    │   └── LimitExceeded                   over a limit of marketplace/limits.py (size, depth, batch)
    ├── DecodeError (ValueError)            bytes from the network that do not parse
    ├── Rejected                            valid input refused by a rule (LSDB, matching)
    ├── TopologyError (ValueError)          a graph that cannot be loaded or routed
    ├── ResourceError (ValueError)          descriptors and requirements
    ├── DiscoveryError                      hardware discovery
    ├── MatchingError
    │   └── Unschedulable                   no provider can ever satisfy an order
    ├── ProofError (ValueError)             zero-knowledge proofs
    ├── AgentError                          the provider agent
    └── ChainError                          anything on the chain side
        ├── ChainUnavailable (ConnectionError)
        ├── ChainMismatch                   wrong chain id, no code at an address
        ├── CompilerError                   solc failed or is missing
        ├── ArtifactError                   missing or stale build artifacts
        ├── InsufficientFunds
        ├── NonceConflict
        ├── ChainLogCorrupt                 the embedded chain's block log cannot be replayed
        └── TransactionReverted             carries the decoded custom error

Subpackages add finer classes under these roots in their own ``errors``
modules; nothing outside this tree is raised on purpose.
"""

from __future__ import annotations

from typing import Any


class ConaError(Exception):
    """Root of every error CONA raises on purpose."""

    http_status: int = 500
    #: a short, stable, machine-readable name (used as the problem ``type``)
    code: str = "cona-error"

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.fields: dict[str, Any] = fields

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view, used by the CLI's ``--json`` and the API."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        for key, value in self.fields.items():
            out[key] = value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)
        return out


class ConfigError(ConaError, ValueError):
    http_status = 500
    code = "config"


class InputError(ConaError, ValueError):
    """Bad input from a user. ``field`` names the part at fault."""

    http_status = 422
    code = "invalid-input"

    def __init__(self, message: str, *, field: str | None = None, **kw: Any) -> None:
        super().__init__(message, field=field, **kw)
        self.field = field


class NotFound(InputError, LookupError):
    http_status = 404
    code = "not-found"


class LimitExceeded(InputError):
    """An input over one of the limits in ``marketplace/limits.py``. ``limit`` names the limit,
    ``maximum`` is its value; ``rpc_code`` is the JSON-RPC error code for the same refusal."""

    http_status = 413
    code = "limit-exceeded"
    rpc_code = -32600

    def __init__(self, message: str, *, limit: str, maximum: int, **kw: Any) -> None:
        super().__init__(message, limit=limit, maximum=maximum, **kw)
        self.limit = limit
        self.maximum = maximum


class DecodeError(ConaError, ValueError):
    """Bytes that do not parse. ``offset`` is where decoding stopped."""

    http_status = 400
    code = "decode"

    def __init__(self, message: str, *, offset: int | None = None, **kw: Any) -> None:
        super().__init__(message, offset=offset, **kw)
        self.offset = offset


class Rejected(ConaError):
    """Well-formed input refused by a rule. ``reason`` is a stable short name."""

    http_status = 409
    code = "rejected"

    def __init__(self, message: str, *, reason: str, **kw: Any) -> None:
        super().__init__(message, reason=reason, **kw)
        self.reason = reason


class TopologyError(ConaError, ValueError):
    http_status = 422
    code = "topology"


class ResourceError(ConaError, ValueError):
    http_status = 422
    code = "resource"


class DiscoveryError(ConaError):
    code = "discovery"


class MatchingError(ConaError):
    code = "matching"


class Unschedulable(MatchingError):
    """No provider can ever satisfy the order; ``reasons`` says why per provider."""

    http_status = 422
    code = "unschedulable"


class ProofError(ConaError, ValueError):
    http_status = 422
    code = "proof"


class AgentError(ConaError):
    code = "agent"


class ChainError(ConaError):
    http_status = 502
    code = "chain"


class ChainUnavailable(ChainError, ConnectionError):
    http_status = 503
    code = "chain-unavailable"


class ChainMismatch(ChainError):
    code = "chain-mismatch"


class CompilerError(ChainError):
    http_status = 500
    code = "compiler"


class ArtifactError(ChainError):
    http_status = 500
    code = "artifact"


class InsufficientFunds(ChainError):
    http_status = 402
    code = "insufficient-funds"


class NonceConflict(ChainError):
    code = "nonce"


class ChainLogCorrupt(ChainError):
    """The embedded chain's block log is damaged before its end, or a record does not replay.
    ``path`` is the log, ``offset`` the byte where the damage starts, ``record`` its index."""

    code = "chain-log-corrupt"

    def __init__(self, message: str, *, path: str, offset: int, record: int, **kw: Any) -> None:
        super().__init__(message, path=path, offset=offset, record=record, **kw)
        self.path = path
        self.offset = offset
        self.record = record


class TransactionReverted(ChainError):
    """A transaction or call reverted. ``error`` is the decoded custom error name
    (``MarketError.NotOrderOwner``) and ``args`` its named arguments."""

    http_status = 409
    code = "reverted"

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        args: dict[str, Any] | None = None,
        tx_hash: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, error=error, tx_hash=tx_hash, **kw)
        self.error = error
        self.error_args: dict[str, Any] = dict(args or {})
        self.tx_hash = tx_hash

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["args"] = {k: (v if isinstance(v, (int, str, bool)) else repr(v)) for k, v in self.error_args.items()}
        return out
