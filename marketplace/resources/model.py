"""The resource model: what a provider has, in one vocabulary for every kind of hardware.

This module is the shared language of CONA. Hardware discovery produces a
``NodeDescriptor``; the TLV codec carries it in Compute LSAs; the matcher
compares it with a buyer's ``Requirement``; the registry stores its digest.

Invariants:
- values are frozen and hashable; collections are tuples or frozensets;
- a capability that is not known is ``None``, never a guessed number
  (discovery must not make values up);
- ``NodeDescriptor.digest()`` is a keccak-256 over a canonical encoding, so the
  same hardware always gives the same digest, whatever produced it;
- every constructor normalises and validates (``__post_init__``) except
  ``from_validated``, which is for values already validated by a decoder (the Compute LSA
  codec checks every value on the wire): it skips that work and must produce exactly the
  object the validating constructor would (a property test holds them equal).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any

from eth_utils import keccak

from marketplace.errors import ResourceError

_new = object.__new__


def _draft_class(cls: type) -> type:
    """A plain mutable class with the same slots as the frozen slots dataclass ``cls``.

    The ``from_validated`` constructors bypass ``__init__`` and ``__post_init__``: they fill
    a draft with plain attribute stores, then make it a ``cls`` by ``__class__`` assignment,
    which CPython allows between classes of the same slot layout. That builds a
    DeviceCapability in ~210 ns where setting each slot through its member descriptor took
    ~550 ns (and the validating ``__init__`` ~3 us).
    """
    return type(f"{cls.__name__}Draft", (), {"__slots__": tuple(f.name for f in fields(cls))})


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

    @classmethod
    def from_validated(
        cls,
        device_class: DeviceClass,
        model: str,
        vendor: str | None,
        count: int,
        compute_units: int | None,
        clock_mhz: float | None,
        flops: tuple[tuple[Precision, float], ...],
        memory_mib: int | None,
        memory_bandwidth_gbps: float | None,
        interconnect: str | None,
        features: frozenset[str],
        share_milli: int,
    ) -> "DeviceCapability":
        """For values already validated by a decoder: build a capability without re-checking them.

        Skips ``__post_init__``: the caller guarantees ``device_class`` is a ``DeviceClass``,
        ``count >= 1``, ``1 <= share_milli <= 1000``, ``flops`` is a tuple of
        ``(Precision, float)`` in strictly ascending precision order and ``features`` a
        frozenset of lower-case strings, i.e. exactly what the public constructor would
        store. Not for general use (the validating constructor is): the Compute LSA decoder
        calls it because re-checking and re-sorting what it has just checked cost a third
        of a cold decode.
        """
        d = _new(_DEVICE_DRAFT)
        d.device_class = device_class
        d.model = model
        d.vendor = vendor
        d.count = count
        d.compute_units = compute_units
        d.clock_mhz = clock_mhz
        d.flops = flops
        d.memory_mib = memory_mib
        d.memory_bandwidth_gbps = memory_bandwidth_gbps
        d.interconnect = interconnect
        d.features = features
        d.share_milli = share_milli
        d.__class__ = cls
        return d  # type: ignore[return-value]

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

    @classmethod
    def from_validated(
        cls,
        hostname: str,
        devices: tuple[DeviceCapability, ...],
        memory_mib: int | None,
        disk_gib: float | None,
        numa_nodes: int | None,
        arch: str | None,
    ) -> "NodeDescriptor":
        """For values already validated by a decoder: ``devices`` must be a tuple already in
        (class, model, share_milli) order, so the sort of ``__post_init__`` (stable, hence a
        no-op on sorted input) is skipped. Same contract as ``DeviceCapability.from_validated``.
        """
        d = _new(_NODE_DRAFT)
        d.hostname = hostname
        d.devices = devices
        d.memory_mib = memory_mib
        d.disk_gib = disk_gib
        d.numa_nodes = numa_nodes
        d.arch = arch
        d.__class__ = cls
        return d  # type: ignore[return-value]

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


# the drafts of the two classes, for their ``from_validated`` constructors (made after the
# classes exist: ``@dataclass(slots=True)`` returns a new class)
_DEVICE_DRAFT = _draft_class(DeviceCapability)
_NODE_DRAFT = _draft_class(NodeDescriptor)
