"""A multi-domain market: one engine per domain, engines joined as flooding peers and domain speakers.

- ``config``: the federation document (domains, engines' addresses and keys, links, timers);
- ``session``: signed OPENs and handovers, and their checks (who speaks for a domain);
- ``speaker``: one engine's ``DomainRouter`` driven over its peering circuits;
- ``link``: an engine's place in the federation (its peer, speaker, bridge and handovers);
- ``launch``: ``cona up --domains N`` (the chain, the keys registered through the timelock, one
  engine process per domain, the demo agents each attached to its domain's engine).

An adapter package: sockets, threads and HTTP live here. See docs/engine.md and docs/peering.md.
"""
