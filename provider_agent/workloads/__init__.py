"""The workloads CONA ships: WebAssembly modules built from AssemblyScript sources in ``src/``.

- ``sha256``: SHA-256 of stdin (checked against hashlib);
- ``matmul``: an n x n f64 matrix product from a fixed LCG ("n seed" on stdin);
- ``nbody``: the five-body Jovian simulation ("steps" on stdin), a small simulation kernel.

The built modules are committed in ``build/`` with a manifest of the sources' hashes;
``build_workloads`` rebuilds them with the pinned AssemblyScript compiler from npm, and
``check_workloads`` (run by the tests) reports a module that no longer matches its source.
Example *buyer* modules (C, Rust, AssemblyScript) live in ``src/examples/``: see ``examples``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from marketplace.errors import ArtifactError, NotFound

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
BUILD = HERE / "build"
NAMES = ("sha256", "matmul", "nbody")
ASC_FLAGS = ("--runtime", "stub", "--optimize", "--noAssert", "--use", "abort=provider_agent/workloads/src/io/abort")


def _source_hashes() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(SRC.glob("*.ts"))}


def build_workloads(root: Path) -> dict[str, str]:
    """Compile every workload with node_modules' AssemblyScript; returns {name: sha256 of the module}."""
    asc = root / "node_modules" / "assemblyscript" / "bin" / "asc.js"
    if not asc.exists() or shutil.which("node") is None:
        raise ArtifactError("the AssemblyScript compiler is not installed", hint="run `npm ci` (or `make run`)")
    BUILD.mkdir(exist_ok=True)
    modules: dict[str, str] = {}
    for name in NAMES:
        out = BUILD / f"{name}.wasm"
        proc = subprocess.run(["node", str(asc), str(SRC / f"{name}.ts"), "-o", str(out), *ASC_FLAGS],
                              cwd=root, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise ArtifactError(f"building workload {name} failed:\n{proc.stderr.strip()[:2000]}")
        modules[name] = hashlib.sha256(out.read_bytes()).hexdigest()
    manifest = {"sources": _source_hashes(), "modules": modules, "flags": list(ASC_FLAGS)}
    (BUILD / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return modules


def check_workloads() -> list[str]:
    """Problems that make the committed modules differ from their sources (empty when fresh)."""
    try:
        manifest = json.loads((BUILD / "manifest.json").read_text())
    except FileNotFoundError:
        return ["no build/manifest.json: run `cona-agent build-workloads`"]
    problems = []
    if manifest.get("sources") != _source_hashes():
        problems.append("workload sources changed since the modules were built")
    if manifest.get("flags") != list(ASC_FLAGS):
        problems.append("the build flags changed since the modules were built")
    for name in NAMES:
        path = BUILD / f"{name}.wasm"
        if not path.exists():
            problems.append(f"{name}.wasm is missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != manifest.get("modules", {}).get(name):
            problems.append(f"{name}.wasm does not match the manifest")
    return problems


def load_workload(name: str) -> bytes:
    if name not in NAMES:
        raise NotFound(f"no workload named {name!r}", hint=f"known: {', '.join(NAMES)}", field="workload")
    return (BUILD / f"{name}.wasm").read_bytes()
