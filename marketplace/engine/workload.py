"""The workload of an order document: what to run, in which runtime, on which artifacts.

Three shapes (the ``workload`` object of ``marketplace.engine.spec``)::

    wasm       {"module": NAME | "sha256:HEX", "input": HEX, "fuel": N,
                ["args": [...]], ["inputs": {"NAME": "sha256:HEX"}], ["deterministic": false]}
    native     {"runtime": "native", "program": NAME, "input": HEX, "cpu_s": N}
    container  {"runtime": "container", "image": "sha256:HEX" | "HOST/REPO[:TAG][@sha256:HEX]",
                "cmd": [...], "input": HEX, "inputs": {...}, "env": {...}, "network": BOOL,
                "memory_mib": N, "work_mib": N}

A wasm ``module`` is the name of a module shipped with CONA or the sha256 digest of a buyer's
module uploaded as an artifact (``POST /v1/artifacts``); ``inputs`` name artifacts the run sees
read-only under ``/input/NAME``; ``input`` is stdin, inline. A container ``image`` is the digest
of an uploaded OCI archive or a registry reference the provider allows; ``cmd`` replaces the
image's command (empty: the image's own).

Canonical form (what the spec digest hashes): a wasm workload leaves out ``runtime`` and every
key at its default (no args, no inputs, deterministic), so the digest of every spec written
before buyers' modules existed is unchanged; a container workload has every key. Every
artifact digest a workload names is in its canonical form, so the order's on-chain
requirement (the spec's digest) commits to each byte that runs.

Invariants: ``parse_workload`` returns a valid workload or raises ``InvalidSpec`` naming the
field (``spec.workload.<key>``); ``artifacts()`` lists every digest named, with the kind of
artifact it must be; ``need(arches)`` is what a provider must offer to run it. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Union

from marketplace.artifacts.kinds import DIGEST
from marketplace.engine.errors import InvalidSpec
from marketplace.errors import InputError
from marketplace.resources.runtimes import ImageRejected, Runtime, WorkloadNeed, parse_ref
from marketplace.results import OutputFile

#: the most fuel one order may buy (wasmtime fuel units); more is a typo, not an order
MAX_FUEL = 10**13
MAX_INPUT_BYTES = 1 << 20
#: the most CPU seconds one native order may buy (a day); more is a typo, not an order
MAX_CPU_SECONDS = 86_400
MAX_ARGS = 256
MAX_ARG_BYTES = 4096
MAX_INPUT_FILES = 64
MAX_ENV = 64
#: a container's memory and scratch bounds an order may ask for (MiB); the provider's ceilings apply too
MAX_MEMORY_MIB = 1 << 20
MAX_WORK_MIB = 1 << 20
DEFAULT_MEMORY_MIB = 512
DEFAULT_WORK_MIB = 256
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

WASM_KEYS = ("runtime", "module", "input", "fuel", "args", "inputs", "deterministic")
NATIVE_KEYS = ("runtime", "program", "input", "cpu_s")
CONTAINER_KEYS = ("runtime", "image", "cmd", "input", "inputs", "env", "network", "memory_mib", "work_mib")
KEYS = {Runtime.WASM: WASM_KEYS, Runtime.NATIVE: NATIVE_KEYS, Runtime.CONTAINER: CONTAINER_KEYS}


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """An artifact a workload names: its digest, the kind it must be (``wasm``, ``oci`` or ``None``
    for any), and the spec field that names it (for errors)."""

    digest: str
    kind: str | None
    field: str


def is_digest(text: Any) -> bool:
    return isinstance(text, str) and DIGEST.match(text) is not None


def _bad(message: str, key: str, hint: str | None = None) -> InvalidSpec:
    return InvalidSpec(message, field=f"spec.workload.{key}", hint=hint)


def _stdin(wl: dict) -> bytes:
    text = wl.get("input", "")
    if not isinstance(text, str):
        raise _bad("workload.input must be a hex string", "input")
    try:
        data = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise _bad("workload.input is not hex", "input") from None
    if len(data) > MAX_INPUT_BYTES:
        raise _bad(f"workload.input is {len(data)} bytes, over {MAX_INPUT_BYTES}", "input",
                   "upload larger data as an artifact and name it in workload.inputs")
    return data


def _int(wl: dict, key: str, low: int, high: int, default: int | None = None) -> int:
    v = wl.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise _bad(f"workload.{key} must be an integer within {low}..{high}", key)
    return v


def _bool(wl: dict, key: str, default: bool) -> bool:
    v = wl.get(key, default)
    if not isinstance(v, bool):
        raise _bad(f"workload.{key} must be true or false", key)
    return v


def _strings(wl: dict, key: str) -> tuple[str, ...]:
    v = wl.get(key, [])
    if not isinstance(v, list) or len(v) > MAX_ARGS:
        raise _bad(f"workload.{key} must be a list of at most {MAX_ARGS} strings", key)
    for i, a in enumerate(v):
        if not isinstance(a, str) or "\x00" in a or len(a.encode()) > MAX_ARG_BYTES:
            raise _bad(f"workload.{key}[{i}] must be a string of at most {MAX_ARG_BYTES} bytes without NUL",
                       f"{key}[{i}]")
    return tuple(v)


def _inputs(wl: dict) -> tuple[tuple[str, str], ...]:
    v = wl.get("inputs", {})
    if not isinstance(v, dict) or len(v) > MAX_INPUT_FILES:
        raise _bad(f"workload.inputs must map at most {MAX_INPUT_FILES} file names to artifact digests", "inputs")
    out = []
    for name, digest in sorted(v.items()):
        try:
            OutputFile(name, 0, bytes(32))  # the same plain relative name rule as output files
        except InputError:
            raise _bad(f"input file name {name!r} is not a plain relative path", f"inputs.{name}") from None
        if not is_digest(digest):
            raise _bad(f"inputs.{name} must be an artifact digest sha256:<64 hex>", f"inputs.{name}")
        out.append((name, digest))
    return tuple(out)


def _env(wl: dict) -> tuple[tuple[str, str], ...]:
    v = wl.get("env", {})
    if not isinstance(v, dict) or len(v) > MAX_ENV:
        raise _bad(f"workload.env must map at most {MAX_ENV} names to strings", "env")
    for k, val in v.items():
        if not _ENV_NAME.match(k) or not isinstance(val, str) or "\x00" in val or len(val.encode()) > MAX_ARG_BYTES:
            raise _bad(f"env {k!r}: a name of letters, digits and _ and a string value without NUL", f"env.{k}")
    return tuple(sorted(v.items()))


@dataclass(frozen=True, slots=True)
class WasmWorkload:
    """A WebAssembly module: shipped (``module`` a name) or the buyer's (``module`` a digest)."""

    module: str
    input: bytes
    fuel: int
    args: tuple[str, ...] = ()
    inputs: tuple[tuple[str, str], ...] = ()
    deterministic: bool = True

    runtime = Runtime.WASM

    @property
    def buyer_module(self) -> bool:
        return is_digest(self.module)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"module": self.module, "input": self.input.hex(), "fuel": self.fuel}
        if self.args:
            out["args"] = list(self.args)
        if self.inputs:
            out["inputs"] = dict(self.inputs)
        if not self.deterministic:
            out["deterministic"] = False
        return out

    def artifacts(self) -> tuple[ArtifactRef, ...]:
        mod = (ArtifactRef(self.module, "wasm", "spec.workload.module"),) if self.buyer_module else ()
        return mod + tuple(ArtifactRef(d, None, f"spec.workload.inputs.{n}") for n, d in self.inputs)

    def need(self, arches: tuple[str, ...] = ()) -> WorkloadNeed | None:
        if not self.buyer_module:
            return None  # a shipped module: every provider runs it
        return WorkloadNeed(Runtime.WASM, buyer_module=True, deterministic=self.deterministic)


@dataclass(frozen=True, slots=True)
class NativeWorkload:
    """A program on the provider's allowlist, by name (a buyer never sends a program)."""

    program: str
    input: bytes
    cpu_s: int

    runtime = Runtime.NATIVE

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": "native", "program": self.program, "input": self.input.hex(), "cpu_s": self.cpu_s}

    def artifacts(self) -> tuple[ArtifactRef, ...]:
        return ()

    def need(self, arches: tuple[str, ...] = ()) -> WorkloadNeed:
        return WorkloadNeed(Runtime.NATIVE, program=self.program)


@dataclass(frozen=True, slots=True)
class ContainerWorkload:
    """An OCI image: an uploaded archive (``image`` a digest) or an allowed registry reference."""

    image: str
    cmd: tuple[str, ...]
    input: bytes
    inputs: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    network: bool = False
    memory_mib: int = DEFAULT_MEMORY_MIB
    work_mib: int = DEFAULT_WORK_MIB

    runtime = Runtime.CONTAINER

    @property
    def archive(self) -> bool:
        return is_digest(self.image)

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": "container", "image": self.image, "cmd": list(self.cmd), "input": self.input.hex(),
                "inputs": dict(self.inputs), "env": dict(self.env), "network": self.network,
                "memory_mib": self.memory_mib, "work_mib": self.work_mib}

    def artifacts(self) -> tuple[ArtifactRef, ...]:
        img = (ArtifactRef(self.image, "oci", "spec.workload.image"),) if self.archive else ()
        return img + tuple(ArtifactRef(d, None, f"spec.workload.inputs.{n}") for n, d in self.inputs)

    def need(self, arches: tuple[str, ...] = (), *, devices: bool = False) -> WorkloadNeed:
        return WorkloadNeed(Runtime.CONTAINER, image=None if self.archive else self.image,
                            arches=arches if self.archive else (), network=self.network, devices=devices)


Workload = Union[WasmWorkload, NativeWorkload, ContainerWorkload]


def parse_workload(wl: Any, *, modules: Iterable[str] | None = None,
                   programs: Iterable[str] | None = None) -> Workload:
    """An untrusted ``workload`` object. ``modules``: the shipped module names allowed (None: any);
    ``programs``: the native program names allowed (None: any; empty: no native workload)."""
    if not isinstance(wl, dict):
        raise InvalidSpec("spec.workload is an object", field="spec.workload")
    try:
        runtime = Runtime(wl.get("runtime", "wasm"))
    except ValueError:
        raise _bad(f"workload.runtime must be one of {', '.join(r.value for r in Runtime)}", "runtime") from None
    allowed = KEYS[runtime]
    for key in wl:
        if key not in allowed:
            raise _bad(f"unknown {runtime} workload field {key!r}", key, f"fields are {allowed}")
    data = _stdin(wl)
    if runtime == Runtime.NATIVE:
        return _native(wl, data, programs)
    if runtime == Runtime.CONTAINER:
        return _container(wl, data)
    module = wl.get("module")
    if not isinstance(module, str) or not module:
        raise _bad("workload.module must be a module name or an artifact digest sha256:<64 hex>", "module")
    if module.startswith("sha256:") and not is_digest(module):
        raise _bad(f"workload.module {module[:20]!r}... is not a digest sha256:<64 lower-case hex>", "module")
    if modules is not None and not is_digest(module):
        known = sorted(modules)
        if module not in known:
            raise _bad(f"unknown workload module {module!r}", "module",
                       f"one of {', '.join(known)}, or the digest of your own module (`cona artifact put`)")
    fuel = _int(wl, "fuel", 1, MAX_FUEL)
    return WasmWorkload(module, data, fuel, _strings(wl, "args"), _inputs(wl), _bool(wl, "deterministic", True))


def _native(wl: dict, data: bytes, programs: Iterable[str] | None) -> NativeWorkload:
    program = wl.get("program")
    if not isinstance(program, str) or not program:
        raise _bad("workload.program must be a program name", "program")
    if programs is not None:
        known = sorted(programs)
        if program not in known:
            raise _bad(f"native program {program!r} is not offered here", "program",
                       f"one of {', '.join(known)}" if known else "this provider runs no native programs (it did "
                       "not opt in)")
    return NativeWorkload(program, data, _int(wl, "cpu_s", 1, MAX_CPU_SECONDS))


def _container(wl: dict, data: bytes) -> ContainerWorkload:
    image = wl.get("image")
    if not isinstance(image, str) or not image:
        raise _bad("workload.image must be an archive digest sha256:<64 hex> or a registry reference", "image")
    if not is_digest(image):
        if image.startswith("sha256:"):
            raise _bad(f"workload.image {image[:20]!r}... is not a digest sha256:<64 lower-case hex>", "image")
        try:
            ref = parse_ref(image)
        except ImageRejected as exc:
            raise _bad(exc.message, "image", exc.hint) from None
        if str(ref) != image:
            raise _bad(f"workload.image {image!r} is not in its canonical form", "image", f"write {ref}")
    return ContainerWorkload(image, _strings(wl, "cmd"), data, _inputs(wl), _env(wl), _bool(wl, "network", False),
                             _int(wl, "memory_mib", 8, MAX_MEMORY_MIB, DEFAULT_MEMORY_MIB),
                             _int(wl, "work_mib", 1, MAX_WORK_MIB, DEFAULT_WORK_MIB))
