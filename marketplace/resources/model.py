"""The resource model: what a provider has, in one vocabulary for every kind of hardware.

This module is the shared language of CONA. Hardware discovery produces a
``NodeDescriptor``; the TLV codec carries it in Compute LSAs; the matcher
compares it with a buyer's ``Requirement``; the registry stores its digest.

Invariants:
- values are frozen and hashable; collections are tuples or frozensets;
- a capability that is not known is ``None``, never a guessed number
  (discovery must not make values up);
- ``NodeDescriptor.digest()`` is a keccak-256 over a canonical encoding, so the
  same hardware always gives the same digest, whatever produced it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from eth_utils import keccak

from marketplace.errors import ResourceError


class DeviceClass(IntEnum):
    """Kinds of compute device. The integer values are wire codes (TLV, chain); never reuse one."""

    CPU = 1
    GPU = 2
    NPU = 3
    TPU = 4

    @classmethod
    def parse(cls, value: "str | int | DeviceClass") -> "DeviceClass":
        if isinstance(value, DeviceClass):
            return value
        try:
            if isinstance(value, int):
                return cls(value)
            return cls[str(value).strip().upper()]
        except (KeyError, ValueError):
            names = ", ".join(m.name.lower() for m in cls)
            raise ResourceError(
                f"unknown device class {value!r}", hint=f"use one of {names}", field="device_class"
            ) from None


class Precision(IntEnum):
    """Numeric precisions for peak throughput. Integer values are wire codes."""

    FP64 = 1
    FP32 = 2
    FP16 = 3
    BF16 = 4
    INT8 = 5
    FP8 = 6

    @classmethod
    def parse(cls, value: "str | int | Precision") -> "Precision":
        if isinstance(value, Precision):
            return value
        try:
            if isinstance(value, int):
                return cls(value)
            return cls[str(value).strip().upper()]
        except (KeyError, ValueError):
            names = ", ".join(m.name.lower() for m in cls)
            raise ResourceError(
                f"unknown precision {value!r}", hint=f"use one of {names}", field="precision"
            ) from None


@dataclass(frozen=True, slots=True)
class DeviceCapability:
    """One group of identical devices on a node (e.g. 8 x H100 80GB).

    ``memory_mib`` is per device: VRAM/HBM for accelerators, and for CPUs the
    share of system memory (the node's total goes in ``NodeDescriptor``).
    ``flops`` holds peak dense throughput in FLOP/s (or OP/s for INT8) per
    device, as ``(precision, value)`` pairs sorted by precision.
    ``share_milli`` is the fraction of each device on offer, in thousandths
    (1000 = whole devices; 500 = half a GPU, as the Alibaba trace's ``gpu_milli``).
    """

    device_class: DeviceClass
    model: str
    vendor: str | None = None
    count: int = 1
    compute_units: int | None = None
    clock_mhz: float | None = None
    flops: tuple[tuple[Precision, float], ...] = ()
    memory_mib: int | None = None
    memory_bandwidth_gbps: float | None = None
    interconnect: str | None = None
    features: frozenset[str] = frozenset()
    share_milli: int = 1000

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ResourceError(f"device count must be at least 1, got {self.count}", field="count")
        if not 1 <= self.share_milli <= 1000:
            raise ResourceError(
                f"share_milli must be within 1..1000, got {self.share_milli}", field="share_milli"
            )
        object.__setattr__(self, "device_class", DeviceClass.parse(self.device_class))
        object.__setattr__(
            self, "flops", tuple(sorted((Precision.parse(p), float(v)) for p, v in self.flops))
        )
        object.__setattr__(self, "features", frozenset(f.lower() for f in self.features))

    def peak(self, precision: Precision) -> float | None:
        for p, v in self.flops:
            if p == precision:
                return v
        return None

    def canonical(self) -> dict[str, Any]:
        return {
            "class": self.device_class.name,
            "model": self.model,
            "vendor": self.vendor,
            "count": self.count,
            "compute_units": self.compute_units,
            "clock_mhz": self.clock_mhz,
            "flops": [[p.name, v] for p, v in self.flops],
            "memory_mib": self.memory_mib,
            "memory_bandwidth_gbps": self.memory_bandwidth_gbps,
            "interconnect": self.interconnect,
            "features": sorted(self.features),
            "share_milli": self.share_milli,
        }


@dataclass(frozen=True, slots=True)
class NodeDescriptor:
    """A provider machine: its devices, memory and disk.

    ``devices`` is ordered by (class, model) so equal hardware gives equal
    descriptors; ``memory_mib`` is total system memory; ``disk_gib`` the disk on offer.
    """

    hostname: str
    devices: tuple[DeviceCapability, ...] = field(default_factory=tuple)
    memory_mib: int | None = None
    disk_gib: float | None = None
    numa_nodes: int | None = None
    arch: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "devices",
            tuple(sorted(self.devices, key=lambda d: (int(d.device_class), d.model, d.share_milli))),
        )

    def of_class(self, device_class: DeviceClass) -> tuple[DeviceCapability, ...]:
        return tuple(d for d in self.devices if d.device_class == device_class)

    def device_count(self, device_class: DeviceClass) -> int:
        return sum(d.count for d in self.of_class(device_class))

    def canonical(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "devices": [d.canonical() for d in self.devices],
            "memory_mib": self.memory_mib,
            "disk_gib": self.disk_gib,
            "numa_nodes": self.numa_nodes,
            "arch": self.arch,
        }

    def canonical_bytes(self) -> bytes:
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":")).encode()

    def digest(self) -> bytes:
        """keccak-256 of the canonical JSON; this is what the registry stores."""
        return keccak(self.canonical_bytes())
