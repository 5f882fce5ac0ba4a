"""Errors of hardware discovery, all under ``marketplace.errors.DiscoveryError``.

    DiscoveryError (marketplace.errors)
    └── DumpError (ValueError)      a dump directory that cannot be read as one: missing,
                                    not a directory, or holding none of the known files
    └── ExpectationError (ValueError)  an expected.json (discover --check) that is not
                                    {"devices": n, "models": [...], "memory_mib": [...], "cpus": n, ...}

Parsers never raise on text they do not understand: they return a partial result
and a ``DiscoveryWarning``. Only a caller's mistake (a dump path that names nothing
usable) is an error.
"""

from __future__ import annotations

from marketplace.errors import DiscoveryError


class DumpError(DiscoveryError, ValueError):
    http_status = 422
    code = "discovery-dump"


class ExpectationError(DiscoveryError, ValueError):
    """An ``expected.json`` of ``discover --check`` that is not the documented object."""

    http_status = 422
    code = "discovery-expected"
