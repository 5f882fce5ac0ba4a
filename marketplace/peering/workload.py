"""Workloads for flooding: Alibaba GPU cluster trace nodes as Compute LSA content.

``trace_originations`` turns rows of the trace's node list into LSA content signed by
fresh random provider keys: real hardware, throwaway identities.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from marketplace.convergence.lsa import Availability, LsaContent
from marketplace.peering.originate import Origination
from marketplace.resources.model import DeviceCapability, DeviceClass, NodeDescriptor

# secp256k1 group order: a secret must be within 1..N-1
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def trace_content(row: dict[str, str]) -> LsaContent:
    """One Alibaba trace node as LSA content: its GPUs as a device group, its CPUs as availability.

    The trace gives the GPU model and count, memory and CPU milli-cores, nothing else, so
    nothing else is filled in (unknown stays unknown, as the resource model requires).
    """
    gpus = int(row["gpu"])
    devices = (DeviceCapability(DeviceClass.GPU, row["model"], count=gpus),) if gpus > 0 else ()
    descriptor = NodeDescriptor(hostname=row["sn"], devices=devices, memory_mib=int(row["memory_mib"]))
    availability = [Availability(DeviceClass.CPU, int(row["cpu_milli"]), 0)]
    if gpus > 0:
        availability.append(Availability(DeviceClass.GPU, gpus * 1000, 0))
    return LsaContent(descriptor, tuple(sorted(availability, key=lambda a: int(a.device_class))))


def trace_originations(csv_path: Path, count: int, *, offset: int = 0, seed: int | None = None) -> list[Origination]:
    """``count`` trace rows from ``offset``, each with a random provider key (seeded if asked)."""
    with Path(csv_path).open(newline="") as fh:
        rows = list(csv.DictReader(fh))[offset:offset + count]
    if len(rows) < count:
        raise ValueError(f"{csv_path} has only {len(rows)} rows from {offset}, {count} wanted")
    rng = random.Random(seed) if seed is not None else random.SystemRandom()
    return [Origination((rng.randrange(1, _N)).to_bytes(32, "big"), trace_content(r)) for r in rows]


