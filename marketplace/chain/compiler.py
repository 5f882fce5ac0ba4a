"""The compile pipeline: Solidity sources to committed JSON artifacts.

One standard-JSON input is built from ``brownie-config.yaml`` with every source
inlined (imports are resolved here, against the project and ``node_modules``),
so the native compiler (through py-solc-x) and solc-js (through node) receive
byte-identical input and produce identical bytecode. The native compiler is used
when one of the pinned version is installed; otherwise solc-js from the pinned
npm package.

Artifacts go to ``contracts/build/<Contract>.json`` and are committed. Each one
records the keccak-256 of every source file it was built from (its whole import
closure) and the compiler settings, so ``check_artifacts`` can tell, without
compiling, whether an artifact still matches its sources.

Invariant: artifacts are written all together or not at all (a failed compile
leaves the previous build untouched).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from eth_utils import keccak

from marketplace.errors import ArtifactError, CompilerError
from marketplace.settings import CompilerConfig, ProjectConfig

log = logging.getLogger(__name__)

_IMPORT_RE = re.compile(r"""^\s*import\s+(?:[^;]*?\bfrom\s+)?["']([^"']+)["']""", re.MULTILINE)
_COMMENT_RE = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
ARTIFACT_FORMAT = "cona-artifact/1"


@dataclass(frozen=True)
class Artifact:
    """A compiled contract, as stored in ``contracts/build/<name>.json``."""

    name: str
    source: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str
    source_hashes: dict[str, str]

    @classmethod
    def load(cls, path: Path) -> "Artifact":
        try:
            raw = json.loads(path.read_text())
            return cls(
                name=raw["contractName"],
                source=raw["sourceName"],
                abi=raw["abi"],
                bytecode=raw["bytecode"],
                deployed_bytecode=raw["deployedBytecode"],
                compiler_version=raw["compiler"]["version"],
                source_hashes=raw["sourceHashes"],
            )
        except FileNotFoundError:
            raise ArtifactError(f"no artifact {path}", hint="run `cona compile`") from None
        except (KeyError, ValueError, TypeError) as exc:
            raise ArtifactError(f"artifact {path} is malformed: {exc}", hint="run `cona compile`") from None


def _keccak_hex(data: bytes) -> str:
    return "0x" + keccak(data).hex()


class SourceTree:
    """Resolves Solidity import paths the way solc does with a base path and include paths.

    Unit names are POSIX paths relative to the project root (``contracts/X.sol``)
    or, for packages, relative to ``node_modules`` (``@openzeppelin/contracts/...``).
    """

    def __init__(self, root: Path, include: tuple[Path, ...]) -> None:
        self.root = root
        self.include = include

    def locate(self, unit: str) -> Path:
        for base in (self.root, *self.include):
            candidate = base / unit
            if candidate.is_file():
                return candidate
        raise CompilerError(
            f"cannot find import {unit!r}",
            hint="check the path; packages resolve through node_modules (run `npm ci`)",
        )

    @staticmethod
    def resolve(importer: str, path: str) -> str:
        if path.startswith("./") or path.startswith("../"):
            parts: list[str] = list(PurePosixPath(importer).parent.parts)
            for piece in PurePosixPath(path).parts:
                if piece == "..":
                    if parts:
                        parts.pop()
                elif piece != ".":
                    parts.append(piece)
            return "/".join(parts)
        return path

    def closure(self, units: list[str]) -> dict[str, str]:
        """Every source reachable from ``units`` by imports, as {unit name: content}."""
        out: dict[str, str] = {}
        stack = list(units)
        while stack:
            unit = stack.pop()
            if unit in out:
                continue
            content = self.locate(unit).read_text()
            out[unit] = content
            for imported in _IMPORT_RE.findall(_COMMENT_RE.sub("", content)):
                stack.append(self.resolve(unit, imported))
        return dict(sorted(out.items()))


def discover_sources(config: ProjectConfig) -> list[str]:
    """The unit names selected by ``compiler.sources`` globs, sorted."""
    root = config.root
    found: set[str] = set()
    for pattern in config.compiler.sources:
        for path in root.glob(pattern):
            if path.is_file():
                found.add(path.relative_to(root).as_posix())
    if not found:
        raise CompilerError(
            f"no Solidity sources match {list(config.compiler.sources)} under {root}",
            hint="check compiler.sources in brownie-config.yaml",
        )
    return sorted(found)


def standard_input(cc: CompilerConfig, sources: dict[str, str], selected: list[str] | None = None) -> dict[str, Any]:
    wanted = ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "metadata"]
    # output only for the selected units: library sources (OpenZeppelin) need no artifacts
    selection = {unit: {"*": wanted} for unit in selected} if selected else {"*": {"*": wanted}}
    settings: dict[str, Any] = {
        "optimizer": {"enabled": cc.optimizer, "runs": cc.runs},
        "evmVersion": cc.evm_version,
        "viaIR": cc.via_ir,
        "remappings": list(cc.remappings),
        "outputSelection": selection,
    }
    return {
        "language": "Solidity",
        "sources": {unit: {"content": content} for unit, content in sources.items()},
        "settings": settings,
    }


# --------------------------------------------------------------------------- compilers


def _native_solc(version: str) -> Path | None:
    """A native solc binary of exactly ``version``, if one is installed."""
    candidates: list[Path] = []
    try:
        import solcx

        for v in solcx.get_installed_solc_versions():
            if str(v) == version:
                candidates.append(Path(solcx.get_executable(v)))
    except Exception as exc:  # solcx has no installs dir yet: not an error, just no native solc
        log.debug("py-solc-x has no installed compilers: %s", exc)
    which = shutil.which("solc")
    if which:
        candidates.append(Path(which))
    for binary in candidates:
        try:
            out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        if f"Version: {version}+" in out:
            return binary
    return None


def _solcjs(root: Path, version: str) -> Path:
    pkg = root / "node_modules" / "solc"
    try:
        installed = json.loads((pkg / "package.json").read_text())["version"]
    except FileNotFoundError:
        raise CompilerError(
            f"no Solidity compiler: neither a native solc {version} nor solc-js in node_modules",
            hint="run `npm ci` (or `make run`), or install solc with py-solc-x",
        ) from None
    if installed != version:
        raise CompilerError(
            f"solc-js in node_modules is {installed}, brownie-config.yaml pins {version}",
            hint="run `npm ci` so node_modules matches package-lock.json",
        )
    if shutil.which("node") is None:
        raise CompilerError("solc-js needs node, which is not on PATH", hint="install Node.js 18 or newer")
    return pkg / "solc.js"


def run_compiler(root: Path, version: str, payload: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Compile a standard-JSON input; returns (output, compiler description)."""
    native = _native_solc(version)
    if native is not None:
        import solcx

        try:
            out = solcx.compile_standard(payload, solc_binary=native, allow_empty=True)
        except solcx.exceptions.SolcError as exc:
            # solcx raises on any error; the standard-JSON output is still in the message
            out = _parse_solcx_failure(exc)
        return out, f"solc {version} (native, {native})"
    package = _solcjs(root, version).parent
    runner = Path(__file__).with_name("solcjs_standard_json.js")
    with tempfile.TemporaryDirectory(prefix="cona-solc-") as tmp:
        src, dst = Path(tmp) / "input.json", Path(tmp) / "output.json"
        src.write_text(json.dumps(payload))
        proc = subprocess.run(["node", str(runner), str(package), str(src), str(dst)],
                              capture_output=True, text=True, cwd=root, timeout=600)
        if proc.returncode != 0 or not dst.exists():
            raise CompilerError(f"solc-js failed (exit {proc.returncode}): {proc.stderr.strip()[:2000]}")
        try:
            return json.loads(dst.read_text()), f"solc-js {version}"
        except ValueError:
            raise CompilerError("solc-js wrote output that is not JSON") from None


def _parse_solcx_failure(exc: Exception) -> dict[str, Any]:
    stdout = getattr(exc, "stdout_data", "") or ""
    try:
        return json.loads(stdout)
    except ValueError:
        raise CompilerError(f"native solc failed: {exc}") from None


def format_diagnostics(output: dict[str, Any], sources: dict[str, str], severity: str = "error") -> list[str]:
    """Compiler messages of one severity as ``file:line: message``."""
    lines = []
    for err in output.get("errors", []):
        if err.get("severity") != severity:
            continue
        loc = err.get("sourceLocation") or {}
        file = loc.get("file")
        if file and file in sources and isinstance(loc.get("start"), int) and loc["start"] >= 0:
            line = sources[file][: loc["start"]].count("\n") + 1
            where = f"{file}:{line}"
        else:
            where = file or "<solc>"
        lines.append(f"{where}: {err.get('type', 'Error')}: {err.get('message', '').strip()}")
    return lines


# --------------------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class CompileReport:
    compiler: str
    artifacts: tuple[str, ...]
    warnings: tuple[str, ...]


def compile_project(config: ProjectConfig) -> CompileReport:
    """Compile every selected source and write all artifacts (atomically, as a set)."""
    root = config.root
    cc = config.compiler
    units = discover_sources(config)
    tree = SourceTree(root, (root / "node_modules",))
    sources = tree.closure(units)
    output, compiler = run_compiler(root, cc.version, standard_input(cc, sources, units))
    errors = format_diagnostics(output, sources, "error")
    if errors:
        raise CompilerError(
            f"compilation failed with {len(errors)} error(s):\n" + "\n".join(errors),
            hint="fix the sources above and run `cona compile` again",
        )
    warnings = tuple(format_diagnostics(output, sources, "warning"))
    hashes = {unit: _keccak_hex(content.encode()) for unit, content in sources.items()}

    artifacts: dict[str, dict[str, Any]] = {}
    selected = set(units)
    for unit, contracts in sorted(output.get("contracts", {}).items()):
        if unit not in selected:
            continue  # library sources (OpenZeppelin) get no artifact of their own
        for name, data in sorted(contracts.items()):
            if name in artifacts:
                raise CompilerError(
                    f"contract name {name} is defined in both {artifacts[name]['sourceName']} and {unit}",
                    hint="contract names must be unique: artifacts are stored by name",
                )
            metadata = json.loads(data["metadata"]) if data.get("metadata") else {"sources": {}}
            closure = sorted(metadata.get("sources", {}))
            artifacts[name] = {
                "format": ARTIFACT_FORMAT,
                "contractName": name,
                "sourceName": unit,
                "abi": data["abi"],
                "bytecode": "0x" + data["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + data["evm"]["deployedBytecode"]["object"],
                "compiler": {
                    "version": cc.version,
                    "optimizer": {"enabled": cc.optimizer, "runs": cc.runs},
                    "evmVersion": cc.evm_version,
                    "viaIR": cc.via_ir,
                },
                "sourceHashes": {u: hashes[u] for u in closure if u in hashes},
            }
    _write_atomically(root / cc.build_dir, artifacts)
    log.info("compiled %d contracts with %s", len(artifacts), compiler)
    return CompileReport(compiler=compiler, artifacts=tuple(sorted(artifacts)), warnings=warnings)


def _write_atomically(build: Path, artifacts: dict[str, dict[str, Any]]) -> None:
    build.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=build.parent, prefix=".build-") as tmp:
        staged = Path(tmp)
        for name, data in artifacts.items():
            (staged / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        for old in build.glob("*.json"):
            if old.stem not in artifacts:
                old.unlink()
        for name in artifacts:
            os.replace(staged / f"{name}.json", build / f"{name}.json")


def check_artifacts(config: ProjectConfig) -> list[str]:
    """Problems that make the committed artifacts differ from the sources (empty when fresh).

    Needs no compiler: it compares source hashes and settings recorded in each artifact.
    """
    root = config.root
    cc = config.compiler
    build = root / cc.build_dir
    problems: list[str] = []
    units = discover_sources(config)
    by_source: dict[str, list[str]] = {}
    for path in sorted(build.glob("*.json")):
        try:
            raw = json.loads(path.read_text())
            source, recorded = raw["sourceName"], raw["sourceHashes"]
            compiler = raw["compiler"]
        except (ValueError, KeyError, TypeError):
            problems.append(f"{path.name}: not a CONA artifact")
            continue
        by_source.setdefault(source, []).append(path.stem)
        if compiler.get("version") != cc.version or compiler.get("evmVersion") != cc.evm_version or compiler.get(
            "optimizer"
        ) != {"enabled": cc.optimizer, "runs": cc.runs} or compiler.get("viaIR") != cc.via_ir:
            problems.append(f"{path.name}: built with other compiler settings than brownie-config.yaml")
        if source not in units:
            problems.append(f"{path.name}: its source {source} is no longer compiled")
            continue
        tree = SourceTree(root, (root / "node_modules",))
        for unit, digest in recorded.items():
            try:
                current = _keccak_hex(tree.locate(unit).read_bytes())
            except CompilerError:
                problems.append(f"{path.name}: source {unit} is missing")
                continue
            if current != digest:
                problems.append(f"{path.name}: {unit} changed since it was compiled")
    for unit in units:
        if unit not in by_source:
            problems.append(f"{unit}: has no artifact in {cc.build_dir}")
    return problems


def ensure_fresh(config: ProjectConfig) -> None:
    problems = check_artifacts(config)
    if problems:
        raise ArtifactError(
            "compiled artifacts are stale:\n  " + "\n  ".join(problems),
            hint="run `cona compile` and commit contracts/build/",
        )


def load_artifact(config: ProjectConfig, name: str) -> Artifact:
    path = config.root / config.compiler.build_dir / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.json"))
        hint = "run `cona compile`"
        close = [k for k in known if k.lower() == name.lower()] or fnmatch.filter(known, f"*{name}*")
        if close:
            hint = f"did you mean {close[0]}?"
        raise ArtifactError(f"no compiled contract named {name}", hint=hint)
    return Artifact.load(path)


def load_all_artifacts(config: ProjectConfig) -> dict[str, Artifact]:
    build = config.root / config.compiler.build_dir
    return {p.stem: Artifact.load(p) for p in sorted(build.glob("*.json"))}
