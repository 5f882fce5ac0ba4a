"""Errors of the routing layer, all under ``marketplace.errors.TopologyError``.

    TopologyError (marketplace.errors)
    ├── TopologyFileError       a file that cannot be read or parsed; ``file`` and
    │                           ``line`` (GML) or ``element`` (GraphML) say where
    ├── InvalidTopology         a graph that is well formed but unusable: negative or
    │                           NaN latency, a link to a node that does not exist,
    │                           a duplicate node id
    ├── UnknownNode (LookupError)   a node id that names no node of the topology
    ├── UnknownLink (LookupError)   a change that names a link the topology does not have
    ├── Unreachable             the target is in another component (or cut off by failures)
    └── DomainError             an inter-domain summary that cannot be accepted as is

Every error names the thing at fault (file, node, link, AS) in its message and in its
structured fields, so the API can report it as a problem detail.
"""

from __future__ import annotations

from typing import Any

from marketplace.errors import TopologyError


class TopologyFileError(TopologyError):
    """A topology file that cannot be read. ``file`` is its path; ``line`` (GML) or
    ``element`` (GraphML, e.g. ``edge #12 (3->7)``) names the part at fault."""

    code = "topology-file"

    def __init__(self, message: str, *, file: str, line: int | None = None, element: str | None = None,
                 **kw: Any) -> None:
        where = file
        if line is not None:
            where += f":{line}"
        if element is not None:
            where += f" ({element})"
        super().__init__(f"{where}: {message}", file=file, line=line, element=element, **kw)
        self.file = file
        self.line = line
        self.element = element


class InvalidTopology(TopologyError):
    code = "topology-invalid"


class UnknownNode(TopologyError, LookupError):
    """A node id that is not in the topology. ``node`` is the id asked for."""

    http_status = 404
    code = "topology-unknown-node"

    def __init__(self, node: str, *, hint: str | None = None, **kw: Any) -> None:
        super().__init__(f"unknown node {node!r}", hint=hint, node=node, **kw)
        self.node = node


class UnknownLink(TopologyError, LookupError):
    http_status = 404
    code = "topology-unknown-link"

    def __init__(self, u: str, v: str, key: int | None = None, **kw: Any) -> None:
        what = f"{u!r}-{v!r}" + (f" key {key}" if key is not None else "")
        super().__init__(f"no link {what}", u=u, v=v, key=key, **kw)
        self.u, self.v, self.key = u, v, key


class Unreachable(TopologyError):
    """No path from ``source`` to ``target`` (different components, or cut off by failures)."""

    code = "topology-unreachable"

    def __init__(self, source: str, target: str, **kw: Any) -> None:
        super().__init__(f"node {target!r} is unreachable from {source!r}", source=source, target=target, **kw)
        self.source, self.target = source, target


class DomainError(TopologyError):
    code = "topology-domain"
