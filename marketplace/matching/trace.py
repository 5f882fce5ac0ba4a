"""The Alibaba GPU trace (openb, ATC'23) as CONA providers and orders.

The trace's node list gives ``sn, cpu_milli, memory_mib, gpu, model`` and its pod list
``cpu_milli, memory_mib, num_gpu, gpu_milli, qos, creation_time``. Mapping (docs/matching.md):

- a node -> ``NodeDescriptor``: one CPU group of ``cpu_milli/1000`` logical CPUs, one GPU
  group of ``gpu`` devices of ``model`` (VRAM and FLOPS unknown: the trace does not give
  them and nothing is guessed), ``memory_mib`` of system memory;
- a pod with GPUs -> ``Requirement(GPU, count=num_gpu, share_milli=gpu_milli for one GPU
  (1000 for several), cpu_milli, min_system_memory_mib=memory_mib)``;
  a pod without GPUs -> ``Requirement(CPU, count=ceil(cpu_milli/1000), min_system_memory_mib)``
  (a CPU job asks for whole logical CPUs);
- ``qos`` -> tier: Guaranteed 3, LS (latency-sensitive) 2, Burstable 1, BE (best effort) 0;
- pods are taken in creation order (stable on ties), ``submitted_at`` = ``creation_time``.

Scaling to N providers replicates the node list (``openb-node-0007`` copy k is
``openb-node-0007~k``), and attaches provider i to topology node ``nodes[h(i) % len]`` with
h a keccak of the provider id, so attachment is deterministic and spread. The trace has no
prices, stakes or reliability: providers get none (no price), stake 0, reliability 1.0.

Invariants: pure functions of the files; every malformed row raises ``InvalidTraceRow``
naming the file and line.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from eth_utils import keccak

from marketplace.errors import InputError
from marketplace.matching.model import Order, Provider
from marketplace.resources.model import DeviceCapability, DeviceClass, NodeDescriptor
from marketplace.resources.requirement import Requirement

QOS_TIER = {"Guaranteed": 3, "LS": 2, "Burstable": 1, "BE": 0}


class InvalidTraceRow(InputError):
    code = "matching-trace-row"


@dataclass(frozen=True, slots=True)
class TraceNode:
    sn: str
    cpu_milli: int
    memory_mib: int
    gpu: int
    model: str

    def descriptor(self, hostname: str | None = None) -> NodeDescriptor:
        devices = [DeviceCapability(DeviceClass.CPU, "unspecified (openb trace)", count=1,
                                    compute_units=self.cpu_milli // 1000)]
        if self.gpu:
            devices.append(DeviceCapability(DeviceClass.GPU, self.model, count=self.gpu))
        return NodeDescriptor(hostname or self.sn, tuple(devices), memory_mib=self.memory_mib)


def _rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    with open(path, newline="") as fh:
        return [(k + 2, row) for k, row in enumerate(csv.DictReader(fh))]


def _int(row: dict[str, str], key: str, path: Path, line: int) -> int:
    try:
        return int(row[key])
    except (KeyError, ValueError, TypeError):
        raise InvalidTraceRow(f"{path.name}:{line}: {key} must be an integer, got {row.get(key)!r}",
                              field=key) from None


def load_nodes(path: str | Path) -> list[TraceNode]:
    path = Path(path)
    out = []
    for line, row in _rows(path):
        out.append(TraceNode(row["sn"], _int(row, "cpu_milli", path, line), _int(row, "memory_mib", path, line),
                             _int(row, "gpu", path, line), (row.get("model") or "").strip() or "unknown"))
    return out


def pod_requirement(cpu_milli: int, memory_mib: int, num_gpu: int, gpu_milli: int) -> Requirement:
    if num_gpu == 0:
        return Requirement(DeviceClass.CPU, count=max(1, math.ceil(cpu_milli / 1000)),
                           min_system_memory_mib=memory_mib)
    share = gpu_milli if num_gpu == 1 else 1000
    return Requirement(DeviceClass.GPU, count=num_gpu, share_milli=share, cpu_milli=cpu_milli,
                       min_system_memory_mib=memory_mib)


@dataclass(frozen=True, slots=True)
class TracePod:
    name: str
    requirement: Requirement
    tier: int
    created: int

    @property
    def gpu_milli(self) -> int:
        r = self.requirement
        return r.count * r.share_milli if r.device_class == DeviceClass.GPU else 0


def load_pods(path: str | Path) -> list[TracePod]:
    """Pods in creation order (stable: file order on equal creation times)."""
    path = Path(path)
    out = []
    for line, row in _rows(path):
        qos = row.get("qos", "")
        if qos not in QOS_TIER:
            raise InvalidTraceRow(f"{path.name}:{line}: unknown qos {qos!r}", field="qos")
        req = pod_requirement(_int(row, "cpu_milli", path, line), _int(row, "memory_mib", path, line),
                              _int(row, "num_gpu", path, line), _int(row, "gpu_milli", path, line))
        out.append(TracePod(row["name"], req, QOS_TIER[qos], _int(row, "creation_time", path, line)))
    out.sort(key=lambda p: p.created)
    return out


def _h(text: str) -> int:
    return int.from_bytes(keccak(text.encode())[:8], "big")


def providers(nodes: Sequence[TraceNode], n: int, attach: Sequence[str] = ()) -> list[Provider]:
    """``n`` providers: the node list replicated (copy k of a node is ``sn~k``), attached to
    ``attach`` nodes by a keccak of the provider id."""
    out = []
    for i in range(n):
        node = nodes[i % len(nodes)]
        k = i // len(nodes)
        pid = node.sn if k == 0 else f"{node.sn}~{k}"
        where = attach[_h(pid) % len(attach)] if attach else None
        out.append(Provider(pid, node.descriptor(pid), attach_node=where))
    return out


def orders(pods: Sequence[TracePod], n: int, attach: Sequence[str] = (), *, prefix: str = "") -> list[Order]:
    """The first ``n`` pods as orders, cycling the list if ``n`` exceeds it (copy k of a pod is
    ``name~k``, created after the previous copy); the buyer is attached like providers."""
    out = []
    span = (pods[-1].created - pods[0].created + 1) if pods else 0
    for i in range(n):
        pod = pods[i % len(pods)]
        k = i // len(pods)
        oid = prefix + (pod.name if k == 0 else f"{pod.name}~{k}")
        where = attach[_h(oid) % len(attach)] if attach else None
        out.append(Order(oid, pod.requirement, pod.tier, where, float(pod.created + k * span)))
    return out
