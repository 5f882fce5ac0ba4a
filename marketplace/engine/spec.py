"""The buyer's off-chain order document (the "spec") and its digest.

An order on chain carries only a 32-byte ``requirement``; the document behind it says what
to run and where the buyer sits::

    {"requirement": {...Requirement.from_dict...},
     "workload": {...one of marketplace.engine.workload's shapes...},
     "attachment": "<topology node id>"}

The workload is a WebAssembly module (one shipped with CONA, by name, or the buyer's own, by
the sha256 digest of the artifact it uploaded), a container image (an uploaded OCI archive by
digest, or a registry reference a provider allows), or a native program *name* from a
provider's allowlist (``marketplace.engine.workload`` has each shape). A wasm workload written
before buyers' modules existed normalises to the same three keys it always had (``module``,
``input``, ``fuel``), so the digest of every such spec is unchanged.

``spec_digest(spec)`` is keccak-256 over the canonical JSON of the *normalised* document:
the requirement as ``Requirement.to_dict()`` (defaults filled, enums lower-case, features
sorted), the input as lower-case hex without ``0x``, keys sorted, no spaces
(``separators=(",", ":")``), ASCII only, no NaN. Two spellings of the same order hash the
same; the buyer puts this digest in ``OrderIntent.requirement`` and signs it, so the
engine can prove the document it stores is the one the buyer paid for, and since the
document names every artifact by its sha256, the chain commits to every byte that runs.

Invariants: ``Spec.from_dict`` either returns a valid spec or raises ``InvalidSpec`` naming
the field; ``Spec.digest() == spec_digest(spec.to_dict())``. Pure: no I/O (whether the
artifacts it names exist is the engine's check, ``marketplace.artifacts``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from eth_utils import keccak

from marketplace.engine.errors import InvalidSpec
from marketplace.engine.workload import (MAX_CPU_SECONDS, MAX_FUEL, MAX_INPUT_BYTES, ArtifactRef, ContainerWorkload,
                                         NativeWorkload, WasmWorkload, Workload, parse_workload)
from marketplace.errors import InputError, ResourceError
from marketplace.resources.model import DeviceClass
from marketplace.resources.requirement import Requirement
from marketplace.resources.runtimes import Runtime, WorkloadNeed

__all__ = ["MAX_CPU_SECONDS", "MAX_FUEL", "MAX_INPUT_BYTES", "RUNTIMES", "ArtifactRef", "ContainerWorkload",
           "NativeWorkload", "Spec", "WasmWorkload", "Workload", "spec_digest"]

RUNTIMES = tuple(r.value for r in Runtime)
_KEYS = ("requirement", "workload", "attachment")


@dataclass(frozen=True, slots=True)
class Spec:
    """A parsed order document: the requirement, the workload (``marketplace.engine.workload``) and
    the buyer's attachment node."""

    requirement: Requirement
    workload: Workload
    attachment: str

    @classmethod
    def from_dict(cls, raw: Any, *, modules: Iterable[str] | None = None,
                  programs: Iterable[str] | None = None) -> "Spec":
        """Parse an untrusted document. ``modules``: the shipped wasm module names allowed (None: any;
        a buyer's module, named by digest, is always allowed here); ``programs``: the native program
        names allowed (None: any; empty: no native workload)."""
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
        workload = parse_workload(raw["workload"], modules=modules, programs=programs)
        att = raw["attachment"]
        if not isinstance(att, str) or not att:
            raise InvalidSpec("attachment must be a topology node id", field="spec.attachment")
        return cls(req, workload, att)

    # -- the workload's fields, by the names the agent and the tests read

    @property
    def runtime(self) -> str:
        return self.workload.runtime.value

    @property
    def module(self) -> str:
        return self.workload.module if isinstance(self.workload, WasmWorkload) else ""

    @property
    def input(self) -> bytes:
        return self.workload.input

    @property
    def fuel(self) -> int:
        return self.workload.fuel if isinstance(self.workload, WasmWorkload) else 0

    @property
    def program(self) -> str:
        return self.workload.program if isinstance(self.workload, NativeWorkload) else ""

    @property
    def cpu_s(self) -> int:
        return self.workload.cpu_s if isinstance(self.workload, NativeWorkload) else 0

    def artifacts(self) -> tuple[ArtifactRef, ...]:
        """Every artifact the workload names (module, image, input files), with the kind each must be."""
        return self.workload.artifacts()

    def need(self, arches: tuple[str, ...] = ()) -> WorkloadNeed | None:
        """What a provider must run for this order (None: a shipped module, which every provider runs).
        ``arches``: the uploaded image archive's architectures; a container on accelerators needs CDI."""
        wl = self.workload
        if isinstance(wl, ContainerWorkload):
            return wl.need(arches, devices=self.requirement.device_class != DeviceClass.CPU)
        return wl.need(arches)

    def to_dict(self) -> dict[str, Any]:
        return {"requirement": self.requirement.to_dict(), "workload": self.workload.to_dict(),
                "attachment": self.attachment}

    def canonical_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False).encode()

    def digest(self) -> bytes:
        return keccak(self.canonical_bytes())


def spec_digest(spec: dict[str, Any] | Spec) -> bytes:
    """keccak-256 of the canonical JSON of the normalised spec (see the module docstring)."""
    if not isinstance(spec, Spec):
        spec = Spec.from_dict(spec)
    return spec.digest()
