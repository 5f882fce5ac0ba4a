"""Errors of the matching engine, all under the roots of ``marketplace.errors``.

    ConfigError (marketplace.errors)
    └── MatchingConfigError       a plugin name, weight or extension point the config gets wrong
    InputError (marketplace.errors)
    ├── InvalidOrder              an order that is malformed (tier out of range, unknown buyer node)
    ├── InvalidProvider           a provider record that is malformed (duplicate id, bad price)
    └── UnknownOrder (NotFound)   an order id that names no order the scheduler holds
    MatchingError (marketplace.errors)
    ├── Unschedulable             no provider can EVER satisfy an order (raised as is, with
    │                             ``reasons``: a tuple of per-provider ``Rejection``)
    └── BindError                 the binder refused a batch it was given

``Unschedulable`` itself is the root class from ``marketplace.errors``; the matcher raises
it with the per-provider reasons in ``.reasons`` (and a JSON-friendly summary in fields).
"""

from __future__ import annotations

from typing import Any

from marketplace.errors import ConfigError, InputError, MatchingError, NotFound


class MatchingConfigError(ConfigError):
    """The matching config is wrong. ``field`` names the key at fault."""

    code = "matching-config"

    def __init__(self, message: str, *, field: str | None = None, **kw: Any) -> None:
        super().__init__(message, field=field, **kw)
        self.field = field


class InvalidOrder(InputError):
    code = "matching-invalid-order"


class InvalidProvider(InputError):
    code = "matching-invalid-provider"


class UnknownOrder(NotFound):
    code = "matching-unknown-order"

    def __init__(self, order_id: str, **kw: Any) -> None:
        super().__init__(f"no order {order_id!r} is known to the scheduler", field="order_id",
                         order_id=order_id, **kw)
        self.order_id = order_id


class BindError(MatchingError):
    code = "matching-bind"


class LeaseBound(MatchingError):
    """An operation that only applies to an unbound reservation was asked of a bound lease."""

    code = "matching-lease-bound"


def unschedulable(order_id: str, rejections: tuple, summary: tuple[tuple[str, int], ...]):
    """The ``marketplace.errors.Unschedulable`` for an order no provider can ever satisfy.

    ``.reasons`` holds every per-provider ``Rejection``; ``fields['reasons']`` a JSON-friendly
    count per ``plugin:reason`` (what the API shows)."""
    from marketplace.errors import Unschedulable

    detail = ", ".join(f"{n} {r}" for r, n in summary) or "no providers"
    exc = Unschedulable(f"order {order_id}: no provider can ever satisfy it ({detail})",
                        hint="relax the requirement (see the reasons) and submit again",
                        order_id=order_id, reasons=";".join(f"{r}={n}" for r, n in summary))
    exc.reasons = rejections  # type: ignore[attr-defined]
    exc.summary = summary  # type: ignore[attr-defined]
    return exc
