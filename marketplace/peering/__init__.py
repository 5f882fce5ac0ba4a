"""Peering: engine peers flood Compute LSAs to each other and keep their LSDBs equal.

An adapter at the edge (sockets and asyncio live in ``node``); the protocol itself is pure
(``wire``, ``adjacency``, ``flooding``). See ``docs/peering.md``.
"""
