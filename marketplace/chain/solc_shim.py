"""The project's Solidity compiler behind solc's command-line surface, for tools that call ``solc``.

Static analysers (Slither, through crytic-compile) run ``solc --version`` and ``solc --standard-json``
with the input on stdin, naming sources by path (``urls``) rather than by content. solc-js has no
file system access, so this shim reads every named source and everything it imports (through the
same ``SourceTree`` as ``cona compile``: the project root, then ``node_modules``) into the input,
then compiles with the pinned compiler (native solc or solc-js, as ``cona compile`` chooses) and
prints solc's standard-JSON output. No compiler is ever downloaded.

Usage (as an executable named ``solc``): ``python -m marketplace.chain.solc_shim --version`` or
``... --standard-json [--allow-paths P] [--base-path P] < input.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from marketplace.chain.compiler import SourceTree, run_compiler
from marketplace.settings import PACKAGE_ROOT, ProjectConfig

#: what solc prints for --version; crytic-compile reads the line after "Version: "
_VERSION = "solc, the solidity compiler commandline interface\nVersion: {version}+commit.7893614a.Linux.g++\n"


def _inline_sources(payload: dict[str, Any], tree: SourceTree) -> dict[str, Any]:
    """``payload`` with every source's content present, imports included."""
    units: list[str] = []
    sources: dict[str, Any] = {}
    for unit, spec in payload.get("sources", {}).items():
        if "content" in spec:
            sources[unit] = spec
        else:
            units.append(unit)
    for unit, content in tree.closure([_unit_name(u, tree.root) for u in units]).items():
        sources.setdefault(unit, {"content": content})
    return {**payload, "sources": sources}


def _unit_name(unit: str, root: Path) -> str:
    """A path given absolute or relative to the root, as the project's unit name."""
    path = Path(unit)
    if path.is_absolute():
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            return unit
    return path.as_posix()


def main(argv: list[str]) -> int:
    config = ProjectConfig.load(PACKAGE_ROOT)
    version = config.compiler.version
    if "--version" in argv:
        sys.stdout.write(_VERSION.format(version=version))
        return 0
    if "--standard-json" not in argv:
        sys.stderr.write("this shim answers only --version and --standard-json\n")
        return 2
    tree = SourceTree(config.root, (config.root / "node_modules",))
    payload = _inline_sources(json.loads(sys.stdin.read()), tree)
    output, _ = run_compiler(config.root, version, payload)
    sys.stdout.write(json.dumps(output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
