"""Fixture checks for ``cona-agent discover --check DIR``: what discovery found vs ``expected.json``.

Each fixture folder holds one machine's dump and an ``expected.json``, any subset of:

    {"devices": 4,                # accelerators (GPU, NPU, TPU) summed over groups; a MIG instance is one
     "models": ["..."],           # the distinct models of every device group, CPUs included, sorted
     "memory_mib": [19968],       # the distinct per-device memory of the accelerator groups, sorted (null = unknown)
     "cpus": 48,                  # CPU cores: count x compute_units summed over CPU groups (null = unknown)
     "share_milli": [130]}        # the distinct shares of the accelerator groups, sorted

A fixture is right when every key it names matches. The report counts fixtures and right ones, so
a regression shows as a number.

Invariants: pure (the caller reads the files); an ``expected.json`` with an unknown key or a value
of the wrong type is an ``ExpectationError`` naming the key, never silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from marketplace.resources.model import DeviceClass, NodeDescriptor
from provider_agent.discovery.errors import ExpectationError

KEYS = ("devices", "models", "memory_mib", "cpus", "share_milli")
_ACCELERATORS = (DeviceClass.GPU, DeviceClass.NPU, DeviceClass.TPU)


def summary(node: NodeDescriptor) -> dict[str, Any]:
    """The ``expected.json`` view of a descriptor (every key)."""
    accel = [d for d in node.devices if d.device_class in _ACCELERATORS]
    cpus = [d for d in node.devices if d.device_class == DeviceClass.CPU]
    cores = None if any(d.compute_units is None for d in cpus) else sum(d.count * (d.compute_units or 0) for d in cpus)
    return {
        "devices": sum(d.count for d in accel),
        "models": sorted({d.model for d in node.devices}),
        "memory_mib": sorted({d.memory_mib for d in accel}, key=lambda m: (m is None, m or 0)),
        "cpus": cores if cpus else None,
        "share_milli": sorted({d.share_milli for d in accel}),
    }


def validate(expected: object, fixture: str) -> dict[str, Any]:
    if not isinstance(expected, dict):
        raise ExpectationError(f"{fixture}/expected.json is not a JSON object", field="expected.json")
    unknown = sorted(set(expected) - set(KEYS))
    if unknown:
        raise ExpectationError(f"{fixture}/expected.json: unknown key {unknown[0]!r}", field=unknown[0],
                               hint="keys: " + ", ".join(KEYS))
    for key in ("devices", "cpus"):
        value = expected.get(key, 0)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ExpectationError(f"{fixture}/expected.json: {key!r} must be a count", field=key)
    for key in ("models", "memory_mib", "share_milli"):
        value = expected.get(key, [])
        if not isinstance(value, list):
            raise ExpectationError(f"{fixture}/expected.json: {key!r} must be a list", field=key)
    if not all(isinstance(m, str) for m in expected.get("models", [])):
        raise ExpectationError(f"{fixture}/expected.json: 'models' must list strings", field="models")
    return expected


@dataclass(frozen=True, slots=True)
class FixtureCheck:
    fixture: str
    expected: Mapping[str, Any]
    found: Mapping[str, Any]
    mismatches: tuple[str, ...]
    warnings: int

    @property
    def right(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        return {"fixture": self.fixture, "right": self.right, "expected": dict(self.expected),
                "found": {k: self.found[k] for k in self.expected}, "mismatches": list(self.mismatches),
                "warnings": self.warnings}


def check(fixture: str, node: NodeDescriptor, warnings: int, expected: object) -> FixtureCheck:
    wanted = validate(expected, fixture)
    found = summary(node)
    key_order = [k for k in KEYS if k in wanted]
    mismatches = tuple(f"{k}: expected {wanted[k]!r}, found {found[k]!r}" for k in key_order
                       if _normal(k, wanted[k]) != _normal(k, found[k]))
    return FixtureCheck(fixture, wanted, found, mismatches, warnings)


def _normal(key: str, value: Any) -> Any:
    if key in ("models", "memory_mib", "share_milli") and isinstance(value, list):
        return sorted(set(value), key=lambda v: (v is None, str(v) if key == "models" else (v or 0)))
    return value


def report(checks: Sequence[FixtureCheck]) -> dict[str, Any]:
    return {"fixtures": len(checks), "right": sum(c.right for c in checks),
            "results": [c.to_dict() for c in checks]}
