"""The workload options of ``cona order place``, and the order document's ``workload`` they make.

One source of work per order:

    --module NAME            a module shipped with CONA (sha256, matmul, nbody)
    --wasm FILE              your own WebAssembly module (a WASI command), uploaded first
    --wasm-digest D          a module you uploaded before (``cona artifact put``)
    --image ARCHIVE          your own OCI image archive, uploaded first (``cona artifact image``)
    --image-digest D         an archive you uploaded before
    --image-ref REF          a registry image a provider allows (HOST/REPO[:TAG][@sha256:...])
    --program NAME           a native program a provider offers (with --cpu-s)

and what the run sees: ``--input``/``--input-hex``/``--input-file`` (stdin, inline),
``--input-artifact NAME=FILE`` or ``NAME=sha256:HEX`` (a file at ``/input/NAME``; a FILE is
uploaded), ``--arg`` (a module's arguments), ``--cmd`` (a container's command, shell-quoted),
``--env K=V``, ``--network``, ``--memory-mib``, ``--work-mib``, ``--nondeterministic``.

Files are uploaded as artifacts signed by the buyer (``uploader``) before the order is signed,
so the order document names each one by digest and the buyer's signature covers them all.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import typer

from marketplace.artifacts.kinds import DIGEST, Kind
from marketplace.errors import InputError

ModuleOpt = typer.Option(None, "--module", help="a shipped workload: sha256, matmul, nbody")
WasmOpt = typer.Option(None, "--wasm", help="your own WebAssembly module (a WASI command): uploaded, then named")
WasmDigestOpt = typer.Option(None, "--wasm-digest", help="a module you uploaded: sha256:<hex>")
ImageOpt = typer.Option(None, "--image", help="your own OCI image archive: uploaded, then run in a container")
ImageDigestOpt = typer.Option(None, "--image-digest", help="an OCI archive you uploaded: sha256:<hex>")
ImageRefOpt = typer.Option(None, "--image-ref", help="a registry image a provider allows: HOST/REPO[:TAG]")
ProgramOpt = typer.Option(None, "--program", help="a native program a provider offers (see `cona providers`)")
CpuOpt = typer.Option(10, "--cpu-s", min=1, help="with --program: CPU seconds to buy")
ArgOpt = typer.Option([], "--arg", help="an argument of your module, after argv[0] (repeatable)")
CmdOpt = typer.Option(None, "--cmd", help="the container's command, shell-quoted (default: the image's)")
EnvOpt = typer.Option([], "--env", help="KEY=VALUE in the container's environment (repeatable)")
InputArtifactOpt = typer.Option([], "--input-artifact", help="NAME=FILE (uploaded) or NAME=sha256:<hex>: a file the "
                                                             "run reads at /input/NAME (repeatable)")
NetworkOpt = typer.Option(False, "--network", help="the container may reach the network (where a provider allows)")
MemoryOpt = typer.Option(512, "--memory-mib", min=8, help="the container's memory, MiB")
WorkOpt = typer.Option(256, "--work-mib", min=1, help="the container's /work scratch, MiB")
NondetOpt = typer.Option(False, "--nondeterministic", help="let the module read clocks and randomness (it then "
                                                           "cannot be verified by re-running it)")

#: (source, kind) -> the artifact's digest, once uploaded
Uploader = Callable[[Path, Kind], str]


@dataclass(frozen=True)
class WorkloadOptions:
    """What ``cona order place`` was told to run (see the module docstring)."""

    module: Optional[str] = None
    wasm: Optional[Path] = None
    wasm_digest: Optional[str] = None
    image: Optional[Path] = None
    image_digest: Optional[str] = None
    image_ref: Optional[str] = None
    program: Optional[str] = None
    cpu_s: int = 10
    args: tuple[str, ...] = ()
    cmd: Optional[str] = None
    env: tuple[str, ...] = ()
    input_artifacts: tuple[str, ...] = ()
    network: bool = False
    memory_mib: int = 512
    work_mib: int = 256
    nondeterministic: bool = False
    sources: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        given = tuple(name for name in ("module", "wasm", "wasm_digest", "image", "image_digest", "image_ref",
                                        "program") if getattr(self, name) is not None)
        object.__setattr__(self, "sources", given)

    @property
    def needs_upload(self) -> bool:
        return self.wasm is not None or self.image is not None or any(
            not _is_digest(a.partition("=")[2]) for a in self.input_artifacts)


def _is_digest(text: str) -> bool:
    return DIGEST.match(text) is not None


def _digest_option(text: str, name: str) -> str:
    if not _is_digest(text):
        raise InputError(f"--{name} must be an artifact digest sha256:<64 lower-case hex>", field=name.replace("-", "_"))
    return text


def _inputs(opts: WorkloadOptions, upload: Uploader) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in opts.input_artifacts:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise InputError(f"--input-artifact {item!r} is not NAME=FILE or NAME=sha256:<hex>", field="input_artifact")
        if name in out:
            raise InputError(f"--input-artifact names {name!r} twice", field="input_artifact")
        out[name] = value if _is_digest(value) else upload(Path(value), Kind.DATA)
    return out


def build_workload(opts: WorkloadOptions, stdin: bytes, fuel: int, upload: Uploader) -> dict:
    """The order document's ``workload`` (uploading the files it names through ``upload``)."""
    if len(opts.sources) != 1:
        raise InputError("give exactly one of --module, --wasm, --wasm-digest, --image, --image-digest, --image-ref, "
                         "--program" + (f" (got {', '.join('--' + s.replace('_', '-') for s in opts.sources)})"
                                        if opts.sources else ""), field="module")
    source = opts.sources[0]
    if source == "program":
        return {"runtime": "native", "program": opts.program, "input": stdin.hex(), "cpu_s": opts.cpu_s}
    inputs = _inputs(opts, upload)
    if source in ("module", "wasm", "wasm_digest"):
        module = opts.module if source == "module" else (
            upload(opts.wasm, Kind.WASM) if source == "wasm" else _digest_option(opts.wasm_digest, "wasm-digest"))
        wl: dict = {"module": module, "input": stdin.hex(), "fuel": fuel}
        if opts.args:
            wl["args"] = list(opts.args)
        if inputs:
            wl["inputs"] = inputs
        if opts.nondeterministic:
            wl["deterministic"] = False
        return wl
    image = opts.image_ref if source == "image_ref" else (
        upload(opts.image, Kind.OCI) if source == "image" else _digest_option(opts.image_digest, "image-digest"))
    try:
        cmd = shlex.split(opts.cmd) if opts.cmd else []
    except ValueError as exc:
        raise InputError(f"--cmd: {exc}", field="cmd") from None
    env = {}
    for item in opts.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--env {item!r} is not KEY=VALUE", field="env")
        env[key] = value
    return {"runtime": "container", "image": image, "cmd": cmd, "input": stdin.hex(), "inputs": inputs, "env": env,
            "network": opts.network, "memory_mib": opts.memory_mib, "work_mib": opts.work_mib}
