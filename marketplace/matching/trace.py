"""The Alibaba GPU trace (openb, ATC'23) as CONA providers and orders.

Files. A node list has the columns ``sn, cpu_milli, memory_mib, gpu`` and optionally
``model`` (empty on the CPU-only nodes of ``openb_node_list_all_node.csv``); a pod list has
``name, cpu_milli, memory_mib, num_gpu, gpu_milli`` and optionally ``gpu_spec, qos,
pod_phase, creation_time, deletion_time, scheduled_time`` (the ``multigpu*`` lists have the
first five only). Every column is honoured (docs/matching.md, "The trace"):

- a node -> ``NodeDescriptor``: one CPU group of ``cpu_milli/1000`` logical CPUs, one GPU
  group of ``gpu`` devices of ``model`` (VRAM and FLOPS unknown: the trace does not give
  them and nothing is guessed), ``memory_mib`` of system memory;
- a pod -> ``Requirement`` through ``resources.alibaba.pod_requirement``: ``num_gpu``
  devices of ``gpu_milli`` each (fractional when below 1000), its CPU and memory, and
  ``gpu_spec`` (``V100M16|V100M32``) as the models it accepts (a hard constraint); a pod
  without GPUs asks ``ceil(cpu_milli/1000)`` whole CPUs;
- ``qos`` -> tier: Guaranteed 3, LS (latency-sensitive) 2, Burstable 1, BE (best effort) 0;
  an empty ``qos``, or a list without the column, is the default class (tier 0, as an order
  that names no tier);
- pods are taken in creation order (stable on ties), ``submitted_at`` = ``creation_time``;
  a list without ``creation_time`` keeps its file order.

Bad input: a column this module does not know is ignored, with one warning per file; a
missing required column, a cell that is not what its column holds (``num_gpu`` not an
integer, ``gpu_milli`` above 1000, an unknown ``qos``, a ``gpu_spec`` that names no model)
raises one ``InvalidTraceRow`` naming the file, the line and the column. A pod no node can
hold (more GPUs than any node has) loads: the scheduler refuses it at submit, with reasons.

Scaling to N providers replicates the node list (``openb-node-0007`` copy k is
``openb-node-0007~k``), and attaches provider i to topology node ``nodes[h(i) % len]`` with
h a keccak of the provider id, so attachment is deterministic and spread. The trace has no
prices, stakes or reliability: providers get none (no price), stake 0, reliability 1.0.

Invariants: pure functions of the files; rows are read in file order.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from eth_utils import keccak

from marketplace.errors import ConaError, InputError
from marketplace.matching.model import Order, Provider
from marketplace.resources.alibaba import parse_gpu_spec, pod_requirement
from marketplace.resources.model import DeviceCapability, DeviceClass, NodeDescriptor
from marketplace.resources.requirement import MAX_COUNT, Requirement

log = logging.getLogger(__name__)

QOS_TIER = {"Guaranteed": 3, "LS": 2, "Burstable": 1, "BE": 0}
#: the tier of a pod whose ``qos`` is empty or absent: the base tier, as an order naming none
DEFAULT_TIER = 0

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu")
NODE_OPTIONAL = ("model",)
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
POD_OPTIONAL = ("gpu_spec", "qos", "pod_phase", "creation_time", "deletion_time", "scheduled_time")


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


class _Rows:
    """A CSV file's rows with their line numbers, its header checked against the columns a
    loader needs and knows."""

    def __init__(self, path: Path, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
        self.path = path
        try:
            self._fh = open(path, newline="", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read trace file {path}: {exc.strerror}", field="trace") from None
        self._reader = csv.reader(self._fh)
        try:
            header = next(self._reader)
        except StopIteration:
            self._fh.close()
            raise InvalidTraceRow(f"{path.name}: empty file, no header", field="header") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            self._fh.close()
            raise InvalidTraceRow(f"{path.name}:1: unreadable header: {exc}", field="header") from None
        self.columns = [h.strip() for h in header]
        missing = [c for c in required if c not in self.columns]
        if missing:
            self._fh.close()
            raise InvalidTraceRow(f"{path.name}:1: missing column {missing[0]!r} (has {', '.join(self.columns)})",
                                  field=missing[0])
        dup = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if dup:
            self._fh.close()
            raise InvalidTraceRow(f"{path.name}:1: column {dup[0]!r} appears twice", field=dup[0])
        unknown = [c for c in self.columns if c not in required and c not in optional]
        if unknown:
            log.warning("%s: ignoring unknown column(s) %s", path.name, ", ".join(unknown))
        self.has = frozenset(self.columns)

    def __iter__(self) -> Iterator[tuple[int, dict[str, str]]]:
        width = len(self.columns)
        try:
            while True:
                try:
                    cells = next(self._reader)
                except StopIteration:
                    return
                except (csv.Error, UnicodeDecodeError) as exc:
                    raise InvalidTraceRow(f"{self.path.name}:{self._reader.line_num}: unreadable row: {exc}",
                                          field="row") from None
                line = self._reader.line_num
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue  # a blank line
                if len(cells) != width:
                    col = self.columns[len(cells)] if len(cells) < width else f"#{width + 1}"
                    raise InvalidTraceRow(f"{self.path.name}:{line}: {len(cells)} cells, the header has {width} "
                                          f"(column {col} {'missing' if len(cells) < width else 'is extra'})",
                                          field=col)
                yield line, dict(zip(self.columns, cells))
        finally:
            self._fh.close()

    def integer(self, row: dict[str, str], line: int, key: str, low: int = 0, high: int | None = None) -> int:
        text = row[key].strip()
        try:
            value = int(text)
        except ValueError:
            raise InvalidTraceRow(f"{self.path.name}:{line}: column {key} must be an integer, got {row[key]!r}",
                                  field=key) from None
        if value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise InvalidTraceRow(f"{self.path.name}:{line}: column {key} must be {bound}, got {value}", field=key)
        return value

    def fail(self, line: int, key: str, message: str, hint: str | None = None) -> InvalidTraceRow:
        return InvalidTraceRow(f"{self.path.name}:{line}: column {key}: {message}", field=key, hint=hint)


def load_nodes(path: str | Path) -> list[TraceNode]:
    """A node list (``openb_node_list_gpu_node.csv`` or ``..._all_node.csv``), in file order."""
    rows = _Rows(Path(path), NODE_COLUMNS, NODE_OPTIONAL)
    out = []
    for line, row in rows:
        sn = row["sn"].strip()
        if not sn:
            raise rows.fail(line, "sn", "a node needs a name")
        gpu = rows.integer(row, line, "gpu", 0, MAX_COUNT)
        model = (row.get("model") or "").strip()
        if gpu and not model:
            model = "unknown"
        out.append(TraceNode(sn, rows.integer(row, line, "cpu_milli"), rows.integer(row, line, "memory_mib"), gpu, model))
    return out


def load_pods(path: str | Path) -> list[TracePod]:
    """A pod list, in creation order (stable: file order on equal times, and for lists without
    ``creation_time``). See the module docstring for every column's meaning."""
    rows = _Rows(Path(path), POD_COLUMNS, POD_OPTIONAL)
    out = []
    for k, (line, row) in enumerate(rows):
        out.append(_pod(rows, line, row, k))
    out.sort(key=lambda p: p.created)
    return out


def _pod(rows: _Rows, line: int, row: dict[str, str], k: int) -> TracePod:
    name = row["name"].strip()
    if not name:
        raise rows.fail(line, "name", "a pod needs a name")
    num_gpu = rows.integer(row, line, "num_gpu", 0, MAX_COUNT)
    gpu_milli = rows.integer(row, line, "gpu_milli", 0, 1000)
    if num_gpu and not gpu_milli:
        raise rows.fail(line, "gpu_milli", f"a pod with {num_gpu} GPU(s) asks 1..1000 milli of each, got 0")
    if gpu_milli and not num_gpu:
        raise rows.fail(line, "gpu_milli", f"{gpu_milli} milli of a GPU for a pod with num_gpu 0")
    qos = row.get("qos", "").strip()
    if qos and qos not in QOS_TIER:
        raise rows.fail(line, "qos", f"unknown qos {qos!r}", hint=f"one of {', '.join(QOS_TIER)} or empty")
    models = _spec(rows, line, row) if num_gpu else frozenset()
    try:
        req = pod_requirement(rows.integer(row, line, "cpu_milli"), rows.integer(row, line, "memory_mib"), num_gpu,
                              gpu_milli, models)
    except ConaError as exc:
        key = exc.fields.get("field") or "row"
        raise rows.fail(line, "gpu_spec" if key == "models" else str(key), exc.message, exc.hint) from None
    created = rows.integer(row, line, "creation_time") if "creation_time" in rows.has else k
    return TracePod(name, req, QOS_TIER.get(qos, DEFAULT_TIER), created)


def _spec(rows: _Rows, line: int, row: dict[str, str]) -> frozenset[str]:
    text = row.get("gpu_spec", "")
    models = parse_gpu_spec(text)
    if text.strip() and not models:
        raise rows.fail(line, "gpu_spec", f"{text!r} names no GPU model", hint="e.g. V100M16|V100M32, or empty")
    return models


def _h(text: str) -> int:
    return int.from_bytes(keccak(text.encode())[:8], "big")


def providers(nodes: Sequence[TraceNode], n: int, attach: Sequence[str] = (), *,
              name: Callable[[int, TraceNode, int], str] | None = None) -> list[Provider]:
    """``n`` providers: the node list replicated (copy k of a node is ``sn~k``), attached to
    ``attach`` nodes by a keccak of the provider id. ``name(i, node, k)`` gives another id."""
    out = []
    for i in range(n):
        node = nodes[i % len(nodes)]
        k = i // len(nodes)
        pid = name(i, node, k) if name is not None else (node.sn if k == 0 else f"{node.sn}~{k}")
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
