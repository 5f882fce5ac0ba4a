"""Hardware discovery (pure): tool outputs in, a ``NodeDescriptor`` with warnings out.

Running the tools is ``provider_agent.probe``'s job; everything here only parses text.
See ``docs/discovery.md``.
"""

from provider_agent.discovery.common import DiscoveryWarning
from provider_agent.discovery.node import DUMP_FILES, Discovery, Sources, discover, sources_from_files

__all__ = ["DUMP_FILES", "Discovery", "DiscoveryWarning", "Sources", "discover", "sources_from_files"]
