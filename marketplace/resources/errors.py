"""Errors of the resource model, under the roots of ``marketplace.errors``.

    InputError (marketplace.errors)
    └── InvalidRequirement      a buyer's requirement that does not parse or does not hold
                                together; ``field`` names the key at fault
    ResourceError (marketplace.errors)
    └── FreeCapacityError       a free-capacity map that does not match the node it describes

A requirement comes from a buyer (API, CLI, order on chain), so its faults are input
errors (HTTP 422 naming the field). A bad free-capacity map is the engine's own
bookkeeping going wrong, so it is a resource error.
"""

from __future__ import annotations

from marketplace.errors import InputError, ResourceError


class InvalidRequirement(InputError):
    """A requirement field is missing, of the wrong type, out of range or unknown."""

    code = "invalid-requirement"


class FreeCapacityError(ResourceError):
    """Per-device free capacity whose length or values do not fit the node's devices."""

    code = "free-capacity"
