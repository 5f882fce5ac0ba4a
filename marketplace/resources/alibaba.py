"""The Alibaba GPU cluster trace (v2023, ``openb_*``) in CONA's resource vocabulary.

A node row (``sn,cpu_milli,memory_mib,gpu,model``) becomes a ``NodeDescriptor``; a pod
row (``name,cpu_milli,memory_mib,num_gpu,gpu_milli[,gpu_spec,qos,...]``) becomes a
``Requirement``. This is how the trace serves as a matching workload (providers from nodes,
orders from pods) without inventing hardware. ``pod_requirement`` is the one mapping of a
pod's figures (``marketplace.matching.trace`` loads whole files through it).

Invariants:
- nothing is added that the row does not say: the trace gives GPU models by name only
  (some anonymised: ``G2``, ``G3``), never memory or FLOPS, so those stay unknown and
  such GPUs have no compute units;
- the host CPUs become one CPU group with ``compute_units`` = the node's CPUs (the
  trace counts Kubernetes CPUs, ``cpu_milli`` / 1000);
- a GPU pod keeps ``num_gpu`` as ``count``, its ``gpu_milli`` as ``share_milli`` (per
  device: the trace's multi-GPU pods ask 1000 each), its CPU as ``cpu_milli`` and its
  ``gpu_spec`` (the GPU models it accepts, ``V100M16|V100M32``) as ``models``;
  a CPU-only pod asks for whole CPUs, ``ceil(cpu_milli / 1000)``, since CONA leases
  whole CPUs (the only rounding, and it rounds towards asking more).
"""

from __future__ import annotations

from collections.abc import Mapping

from marketplace.resources.errors import InvalidRequirement
from marketplace.resources.model import DeviceCapability, DeviceClass, NodeDescriptor
from marketplace.resources.requirement import Requirement


def _int(row: Mapping[str, str], key: str) -> int:
    try:
        return int(row[key])
    except (KeyError, ValueError, TypeError):
        raise InvalidRequirement(f"trace row {row.get('name') or row.get('sn')!r}: bad {key} {row.get(key)!r}",
                                 field=key) from None


def parse_gpu_spec(text: str | None) -> frozenset[str]:
    """The trace's ``gpu_spec`` (``""``: any model; ``"V100M16|V100M32"``: either) as model names."""
    if not text or not text.strip():
        return frozenset()
    return frozenset(part.strip() for part in text.split("|") if part.strip())


def pod_requirement(cpu_milli: int, memory_mib: int, num_gpu: int, gpu_milli: int,
                    models: frozenset[str] = frozenset(), *, duration_s: int = 3600) -> Requirement:
    """A pod's figures as a requirement (see the module docstring for the mapping)."""
    if num_gpu == 0:
        return Requirement(DeviceClass.CPU, count=max(1, -(-cpu_milli // 1000)), min_system_memory_mib=memory_mib,
                           duration_s=duration_s)
    return Requirement(DeviceClass.GPU, count=num_gpu, share_milli=gpu_milli, cpu_milli=cpu_milli,
                       min_system_memory_mib=memory_mib, duration_s=duration_s, models=models)


def node_from_trace(row: Mapping[str, str]) -> NodeDescriptor:
    """A trace node: its GPUs (model name only) and its host CPUs and memory."""
    cpus = _int(row, "cpu_milli") // 1000
    gpus = _int(row, "gpu")
    devices = []
    if cpus:
        devices.append(DeviceCapability(DeviceClass.CPU, "unknown", count=1, compute_units=cpus))
    if gpus:
        devices.append(DeviceCapability(DeviceClass.GPU, row["model"], count=gpus))
    return NodeDescriptor(hostname=row["sn"], devices=tuple(devices), memory_mib=_int(row, "memory_mib"))


def requirement_from_trace(row: Mapping[str, str], *, duration_s: int | None = None) -> Requirement:
    """A trace pod as an order's requirement (see the module docstring for the mapping)."""
    if duration_s is None:
        # creation to deletion, as the trace records it; at least one second
        duration_s = max(1, (_int(row, "deletion_time") - _int(row, "creation_time")))
    return pod_requirement(_int(row, "cpu_milli"), _int(row, "memory_mib"), _int(row, "num_gpu"),
                           _int(row, "gpu_milli"), parse_gpu_spec(row.get("gpu_spec")), duration_s=duration_s)
