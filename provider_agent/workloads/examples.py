"""Example buyer workloads: one program (``wordcount``) written in C, Rust and AssemblyScript.

Each is built to a WASI preview 1 module with the toolchain a buyer would use (Debian's clang
and wasi-libc, Debian's rustc with ``libstd-rust-dev-wasm32``, the AssemblyScript compiler in
node_modules) and committed prebuilt beside its source in ``src/examples/``, with
``manifest.json`` recording each module's sha256 and the exact toolchain that built it.

Invariant: each committed module is the byte-for-byte output of its source under the recorded
toolchain. ``check_examples`` checks the committed bytes against the manifest; the tests rebuild
each module where that toolchain is installed (``toolchain(lang)`` equals the recorded one) and
compare. The builds are reproducible: no timestamps or paths end up in the modules (symbols are
stripped, Rust's source paths are remapped to ``.``; AssemblyScript embeds none). Another
compiler version gives other bytes, so a rebuild is only compared under the recorded versions.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from marketplace.errors import ArtifactError, NotFound

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "src" / "examples"
MANIFEST = EXAMPLES / "manifest.json"
REPO = HERE.parent.parent
RUSTC = "/usr/bin/rustc"  # Debian's: the rustup toolchains have no wasm32-wasi std unless added


@dataclass(frozen=True, slots=True)
class Example:
    lang: str
    source: str
    module: str


LANGS = {e.lang: e for e in (Example("c", "wordcount.c", "wordcount-c.wasm"),
                             Example("rust", "wordcount.rs", "wordcount-rust.wasm"),
                             Example("as", "wordcount.ts", "wordcount-as.wasm"))}


def _run(argv: list[str], cwd: Path) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise ArtifactError(f"{' '.join(argv[:2])} failed:\n{(proc.stderr or proc.stdout).strip()[:2000]}")
    return proc.stdout


def _dpkg_version(package: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def toolchain(lang: str) -> str | None:
    """The toolchain installed here for ``lang`` (as recorded in the manifest), or None when missing."""
    if lang == "c":
        clang, libc = _dpkg_version("clang-14"), _dpkg_version("wasi-libc")
        rt = _dpkg_version("libclang-rt-14-dev-wasm32")
        return f"clang-14 {clang}, wasi-libc {libc}, libclang-rt-14-dev-wasm32 {rt}" if clang and libc and rt \
            else None
    if lang == "rust":
        std = _dpkg_version("libstd-rust-dev-wasm32")
        return f"rustc {_dpkg_version('rustc')}, libstd-rust-dev-wasm32 {std}" if std and Path(RUSTC).exists() \
            else None
    package = REPO / "node_modules" / "assemblyscript" / "package.json"
    if not package.exists() or shutil.which("node") is None:
        return None
    return f"assemblyscript {json.loads(package.read_text())['version']}"


def build_command(lang: str, out: Path) -> list[str]:
    """The command that builds ``lang``'s example to ``out`` (run from the repository root)."""
    src = EXAMPLES / LANGS[lang].source
    if lang == "c":
        return ["clang", "--target=wasm32-wasi", "-O2", "-s", "-o", str(out), str(src)]
    if lang == "rust":
        return [RUSTC, "--edition", "2021", "--target", "wasm32-wasi", "-C", "opt-level=2", "-C", "strip=symbols",
                f"--remap-path-prefix={EXAMPLES}=.", "-o", str(out), str(src)]
    rel = src.relative_to(REPO)
    return ["node", str(REPO / "node_modules" / "assemblyscript" / "bin" / "asc.js"), str(rel), "-o", str(out),
            "--runtime", "stub", "--optimize", "--noAssert",
            "--use", f"abort={rel.with_suffix('').as_posix()}/abort"]


def build_example(lang: str) -> bytes:
    """Build ``lang``'s example with the installed toolchain; returns the module's bytes."""
    if lang not in LANGS:
        raise NotFound(f"no example in {lang!r}", hint=f"known: {', '.join(LANGS)}", field="lang")
    if toolchain(lang) is None:
        raise ArtifactError(f"the {lang} toolchain is not installed", hint="docs/agent.md: building a workload")
    with tempfile.TemporaryDirectory(prefix="cona-example-") as tmp:
        out = Path(tmp) / LANGS[lang].module
        _run(build_command(lang, out), REPO)
        return out.read_bytes()


def build_examples() -> dict[str, str]:
    """Rebuild every example whose toolchain is installed, write the modules and the manifest."""
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    for lang, ex in LANGS.items():
        if toolchain(lang) is None:
            continue
        module = build_example(lang)
        (EXAMPLES / ex.module).write_bytes(module)
        manifest[lang] = {"module": ex.module, "source": ex.source, "toolchain": toolchain(lang),
                          "sha256": hashlib.sha256(module).hexdigest(),
                          "source_sha256": hashlib.sha256((EXAMPLES / ex.source).read_bytes()).hexdigest()}
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return {lang: entry["sha256"] for lang, entry in manifest.items()}


def check_examples() -> list[str]:
    """Problems that make a committed module differ from the manifest (empty when fresh)."""
    try:
        manifest = json.loads(MANIFEST.read_text())
    except FileNotFoundError:
        return ["no src/examples/manifest.json"]
    problems = []
    for lang, ex in LANGS.items():
        entry = manifest.get(lang)
        if entry is None:
            problems.append(f"{lang}: not in the manifest")
            continue
        if hashlib.sha256((EXAMPLES / ex.source).read_bytes()).hexdigest() != entry["source_sha256"]:
            problems.append(f"{lang}: {ex.source} changed since {ex.module} was built")
        path = EXAMPLES / ex.module
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            problems.append(f"{lang}: {ex.module} does not match the manifest")
    return problems


def recorded_toolchain(lang: str) -> str:
    return json.loads(MANIFEST.read_text())[lang]["toolchain"]


def load_example(lang: str) -> bytes:
    if lang not in LANGS:
        raise NotFound(f"no example in {lang!r}", hint=f"known: {', '.join(LANGS)}", field="lang")
    return (EXAMPLES / LANGS[lang].module).read_bytes()
