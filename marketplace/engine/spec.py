"""The buyer's off-chain order document (the "spec") and its digest.

An order on chain carries only a 32-byte ``requirement``; the document behind it says what
to run and where the buyer sits::

    {"requirement": {...Requirement.from_dict...},
     "workload": {"module": "<name in provider_agent/workloads/build/manifest.json>",
                  "input": "<hex bytes>", "fuel": <int>},
     "attachment": "<topology node id>"}

or, for a provider that opted in to the native runtime (``provider_agent.runtime.native``), a
program *name* from that provider's allowlist - a buyer never sends a program::

     "workload": {"runtime": "native", "program": "<name>", "input": "<hex bytes>",
                  "cpu_s": <int CPU seconds>}

``runtime`` defaults to ``"wasm"``, and a wasm workload normalises to the three keys above
(an explicit ``"runtime": "wasm"`` is dropped), so the digest of every wasm spec is what it
was before native workloads existed.

``spec_digest(spec)`` is keccak-256 over the canonical JSON of the *normalised* document:
the requirement as ``Requirement.to_dict()`` (defaults filled, enums lower-case, features
sorted), the input as lower-case hex without ``0x``, keys sorted, no spaces
(``separators=(",", ":")``), ASCII only, no NaN. Two spellings of the same order hash the
same; the buyer puts this digest in ``OrderIntent.requirement`` and signs it, so the
engine can prove the document it stores is the one the buyer paid for.

Invariants: ``Spec.from_dict`` either returns a valid spec or raises ``InvalidSpec`` naming
the field; ``Spec.digest() == spec_digest(spec.to_dict())``. Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from eth_utils import keccak

from marketplace.engine.errors import InvalidSpec
from marketplace.errors import InputError, ResourceError
from marketplace.resources.requirement import Requirement

#: the most fuel one order may buy (wasmtime fuel units); more is a typo, not an order
MAX_FUEL = 10**13
MAX_INPUT_BYTES = 1 << 20
#: the most CPU seconds one native order may buy (a day); more is a typo, not an order
MAX_CPU_SECONDS = 86_400
RUNTIMES = ("wasm", "native")
_KEYS = ("requirement", "workload", "attachment")
_WORKLOAD_KEYS = ("runtime", "module", "input", "fuel")
_NATIVE_KEYS = ("runtime", "program", "input", "cpu_s")


@dataclass(frozen=True, slots=True)
class Spec:
    """A parsed order document. A wasm workload has ``module`` and ``fuel`` (``program`` empty,
    ``cpu_s`` 0); a native one has ``program`` and ``cpu_s`` (``module`` empty, ``fuel`` 0)."""

    requirement: Requirement
    module: str
    input: bytes
    fuel: int
    attachment: str
    runtime: str = "wasm"
    program: str = ""
    cpu_s: int = 0

    @classmethod
    def from_dict(cls, raw: Any, *, modules: Iterable[str] | None = None,
                  programs: Iterable[str] | None = None) -> "Spec":
        """Parse an untrusted document. ``modules``: the wasm workload names allowed (None: any);
        ``programs``: the native program names allowed (None: any; empty: no native workload)."""
        if not isinstance(raw, dict):
            raise InvalidSpec("a spec is a JSON object", field="spec")
        for key in raw:
            if key not in _KEYS:
                raise InvalidSpec(f"unknown spec field {key!r}", field=f"spec.{key}", hint=f"fields are {_KEYS}")
        for key in _KEYS:
            if key not in raw:
                raise InvalidSpec(f"spec.{key} is required", field=f"spec.{key}")
        try:
            req = Requirement.from_dict(raw["requirement"])
        except (ResourceError, InputError) as exc:
            f = exc.fields.get("field")
            raise InvalidSpec(exc.message, field="spec.requirement" + (f".{f}" if f else ""), hint=exc.hint) from None
        wl = raw["workload"]
        if not isinstance(wl, dict):
            raise InvalidSpec("spec.workload is an object", field="spec.workload")
        runtime = wl.get("runtime", "wasm")
        if runtime not in RUNTIMES:
            raise InvalidSpec(f"workload.runtime must be one of {', '.join(RUNTIMES)}", field="spec.workload.runtime")
        allowed = _NATIVE_KEYS if runtime == "native" else _WORKLOAD_KEYS
        for key in wl:
            if key not in allowed:
                raise InvalidSpec(f"unknown {runtime} workload field {key!r}", field=f"spec.workload.{key}",
                                  hint=f"fields are {allowed}")
        data = _input(wl)
        att = raw["attachment"]
        if not isinstance(att, str) or not att:
            raise InvalidSpec("attachment must be a topology node id", field="spec.attachment")
        if runtime == "native":
            return cls._native(req, wl, data, att, programs)
        module = wl.get("module")
        if not isinstance(module, str) or not module:
            raise InvalidSpec("workload.module must be a module name", field="spec.workload.module")
        if modules is not None:
            known = sorted(modules)
            if module not in known:
                raise InvalidSpec(f"unknown workload module {module!r}", field="spec.workload.module",
                                  hint=f"one of {', '.join(known)}")
        fuel = wl.get("fuel")
        if isinstance(fuel, bool) or not isinstance(fuel, int) or not 1 <= fuel <= MAX_FUEL:
            raise InvalidSpec(f"workload.fuel must be an integer within 1..{MAX_FUEL}", field="spec.workload.fuel")
        return cls(req, module, data, fuel, att)

    @classmethod
    def _native(cls, req: Requirement, wl: dict, data: bytes, att: str,
                programs: Iterable[str] | None) -> "Spec":
        program = wl.get("program")
        if not isinstance(program, str) or not program:
            raise InvalidSpec("workload.program must be a program name", field="spec.workload.program")
        if programs is not None:
            known = sorted(programs)
            if program not in known:
                raise InvalidSpec(f"native program {program!r} is not offered here", field="spec.workload.program",
                                  hint=f"one of {', '.join(known)}" if known else "this provider runs no native "
                                  "programs (it did not opt in)")
        cpu = wl.get("cpu_s")
        if isinstance(cpu, bool) or not isinstance(cpu, int) or not 1 <= cpu <= MAX_CPU_SECONDS:
            raise InvalidSpec(f"workload.cpu_s must be an integer within 1..{MAX_CPU_SECONDS}",
                              field="spec.workload.cpu_s")
        return cls(req, "", data, 0, att, runtime="native", program=program, cpu_s=cpu)

    def to_dict(self) -> dict[str, Any]:
        if self.runtime == "native":
            workload = {"runtime": "native", "program": self.program, "input": self.input.hex(),
                        "cpu_s": self.cpu_s}
        else:  # exactly the pre-native shape, so existing digests do not change
            workload = {"module": self.module, "input": self.input.hex(), "fuel": self.fuel}
        return {"requirement": self.requirement.to_dict(), "workload": workload, "attachment": self.attachment}

    def canonical_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False).encode()

    def digest(self) -> bytes:
        return keccak(self.canonical_bytes())


def _input(wl: dict) -> bytes:
    text = wl.get("input", "")
    if not isinstance(text, str):
        raise InvalidSpec("workload.input must be a hex string", field="spec.workload.input")
    try:
        data = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise InvalidSpec("workload.input is not hex", field="spec.workload.input") from None
    if len(data) > MAX_INPUT_BYTES:
        raise InvalidSpec(f"workload.input is {len(data)} bytes, over {MAX_INPUT_BYTES}", field="spec.workload.input")
    return data


def spec_digest(spec: dict[str, Any] | Spec) -> bytes:
    """keccak-256 of the canonical JSON of the normalised spec (see the module docstring)."""
    if not isinstance(spec, Spec):
        spec = Spec.from_dict(spec)
    return spec.digest()
