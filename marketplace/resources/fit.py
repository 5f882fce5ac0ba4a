"""Requirement-vs-node fit: yes or no, every reason why not, and how tightly it fits.

``fit(req, node)`` is the filter and the first score of matching. It runs for thousands
of providers per order, so a node is first turned into a ``NodeView`` (its device groups
per class, pre-sorted smallest first, peaks in a tuple indexed by precision) once, and
``fit`` then only reads attributes and compares numbers.

Semantics (docs/resources.md, "Fit", lists every reason code):
- a device group is *eligible* when each of its devices meets every per-device demand
  (model, share, memory, precision, FLOPS, features); the order is then served by eligible
  groups only, smallest first (best fit);
- ``free`` is the capacity not leased yet, per class, in thousandths of a device: an int
  (total) or a sequence (one entry per device, in the order of ``NodeDescriptor.of_class``;
  for CPUs one entry per logical CPU). Without ``free`` the whole node is assumed free;
  a class absent from ``free`` has nothing free;
- ``price``, ``latency_ms``, ``domain`` and ``free_memory_mib`` are judged only when the
  caller knows them (``None`` = not judged here);
- a ``Fit`` that is not ok carries every reason that applies, not just the first, and
  score 0.0; an ok fit has no reasons and score in (0, 1], 1.0 = nothing wasted;
- monotone: more free capacity never turns ok into not ok, and a stricter requirement
  never turns not ok into ok (property-tested).

For CPUs a "device" of a requirement is a logical CPU: a CPU group offers
``count x compute_units`` of them when ``compute_units`` (logical CPUs per socket) is
known, else ``count``; its per-CPU FLOPS are the socket's divided by ``compute_units``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

from marketplace.resources.errors import FreeCapacityError
from marketplace.resources.model import DeviceCapability, DeviceClass, NodeDescriptor, Precision
from marketplace.resources.requirement import Requirement, model_matches

log = logging.getLogger(__name__)

#: Reasons that depend on the moment (leases come and go), not on the hardware: an order
#: refused only for these may fit the same node later.
TRANSIENT_CODES = frozenset({"free", "system-memory-free"})

_NPREC = max(int(p) for p in Precision) + 1


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a node does not fit. ``code`` is stable (API, logs, tests); ``message`` has the numbers."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Fit:
    """The verdict for one (requirement, node) pair.

    ``devices`` are the device groups that would serve the order (empty when not ok).
    """

    ok: bool
    reasons: tuple[Reason, ...] = ()
    score: float = 0.0
    devices: tuple[DeviceCapability, ...] = ()

    @property
    def transient(self) -> bool:
        """True when every reason may go away as leases end (``TRANSIENT_CODES``)."""
        return not self.ok and all(r.code in TRANSIENT_CODES for r in self.reasons)


class GroupView:
    """One device group seen as the matcher needs it; built once per node."""

    __slots__ = ("device", "slots", "share", "memory", "features", "peaks", "index")

    def __init__(self, device: DeviceCapability, index: int) -> None:
        self.device = device
        per = 1
        if device.device_class == DeviceClass.CPU and device.compute_units:
            per = device.compute_units
        self.slots = device.count * per
        self.share = device.share_milli
        self.memory = device.memory_mib
        self.features = device.features
        peaks: list[float | None] = [None] * _NPREC
        for p, v in device.flops:
            peaks[int(p)] = v / per
        self.peaks = tuple(peaks)
        #: position of this group's first slot in the class's per-device free sequence
        self.index = index


class NodeView:
    """A ``NodeDescriptor`` pre-digested for ``fit``. Immutable by convention; build with ``view_of``."""

    __slots__ = ("descriptor", "groups", "slots", "memory_mib", "cpu_milli", "summary")

    def __init__(self, descriptor: NodeDescriptor) -> None:
        self.descriptor = descriptor
        by_class: dict[DeviceClass, list[GroupView]] = {}
        slots: dict[DeviceClass, int] = {}
        # slot indices follow NodeDescriptor order (what ``free`` sequences are written in)
        for d in descriptor.devices:
            g = GroupView(d, slots.get(d.device_class, 0))
            by_class.setdefault(d.device_class, []).append(g)
            slots[d.device_class] = g.index + g.slots
        # smallest first, so the first eligible groups are the tightest fit
        self.groups: dict[DeviceClass, tuple[GroupView, ...]] = {
            c: tuple(sorted(gs, key=lambda g: (math.inf if g.memory is None else g.memory, g.share, g.slots)))
            for c, gs in by_class.items()
        }
        self.slots = slots
        self.memory_mib = descriptor.memory_mib
        self.cpu_milli = sum(g.slots * g.share for g in self.groups.get(DeviceClass.CPU, ()))
        self.summary = ", ".join(f"{n} {c.name}" for c, n in sorted(slots.items())) or "no devices"


_VIEWS: dict[int, tuple[NodeDescriptor, NodeView]] = {}
_VIEWS_MAX = 16384


def view_of(descriptor: NodeDescriptor) -> NodeView:
    """The cached ``NodeView`` of a descriptor.

    Keyed by identity, not by hash: hashing a descriptor walks all its devices, which is
    what this cache exists to avoid. The entry keeps the descriptor alive, so an id is
    never reused while cached; the cache is dropped whole when it grows past its bound.
    """
    hit = _VIEWS.get(id(descriptor))
    if hit is not None and hit[0] is descriptor:
        return hit[1]
    view = NodeView(descriptor)
    if len(_VIEWS) >= _VIEWS_MAX:
        _VIEWS.clear()
    _VIEWS[id(descriptor)] = (descriptor, view)
    return view


def _mib(groups: Sequence[GroupView]) -> str:
    return ", ".join(f"{g.slots} with {'unknown' if g.memory is None else g.memory} MiB" for g in groups)


def _free_slots(g: GroupView, seq: Sequence[int], need: int) -> int:
    return sum(1 for f in seq[g.index : g.index + g.slots] if f >= need)


def fit(
    req: Requirement,
    node: NodeDescriptor | NodeView,
    *,
    free: Mapping[DeviceClass, int | Sequence[int]] | None = None,
    price: int | None = None,
    latency_ms: float | None = None,
    domain: int | None = None,
    free_memory_mib: int | None = None,
) -> Fit:
    """Does ``node`` satisfy ``req``? See the module docstring for the exact semantics."""
    view = node if isinstance(node, NodeView) else view_of(node)
    reasons: list[Reason] = []
    chosen: list[GroupView] = []
    capacity_score = 1.0
    groups = view.groups.get(req.device_class, ())
    if not groups:
        reasons.append(Reason("device-class", f"needs {req.device_class.name}, node has {view.summary}"))
    else:
        eligible, rejected = _eligible(req, groups)
        if not eligible:
            _ineligible(req, rejected, reasons)
        else:
            capacity_score = _claim(req, view, eligible, free, chosen, reasons)
    _node_wide(req, view, free, free_memory_mib, reasons)
    if req.max_price is not None and price is not None and price > req.max_price:
        reasons.append(Reason("price", f"pays at most {req.max_price} wei per unit-hour, asks {price}"))
    if req.max_latency_ms is not None and latency_ms is not None and latency_ms > req.max_latency_ms:
        reasons.append(Reason("latency", f"needs <= {req.max_latency_ms:g} ms, path has {latency_ms:g} ms"))
    if req.domain is not None and domain is not None and domain != req.domain:
        reasons.append(Reason("domain", f"needs domain {req.domain}, node is in {domain}"))
    if reasons:
        return Fit(False, tuple(reasons), 0.0, ())
    return Fit(True, (), _score(req, chosen, capacity_score), tuple(g.device for g in chosen))


#: the groups of a class that fail a per-device demand, by demand: share, memory,
#: precision, flops, features, model (each None when no group fails it)
_Rejected = tuple[Optional[list[GroupView]], ...]


def _eligible(req: Requirement, groups: Sequence[GroupView]) -> tuple[list[GroupView], _Rejected]:
    """The groups each of whose devices meets every per-device demand, in ``groups`` order,
    and the groups that fail each demand."""
    share = req.share_milli
    mem = req.min_memory_mib
    prec = req.precision
    pi = -1 if prec is None else int(prec)
    min_flops = req.min_flops
    feats = req.features
    models = req.models
    eligible: list[GroupView] = []
    bad_share = bad_mem = bad_prec = bad_flops = bad_feat = bad_model = None
    for g in groups:
        good = True
        if models and not model_matches(models, g.device.model):
            bad_model = (bad_model or []) + [g]
            good = False
        if g.share < share:
            bad_share = (bad_share or []) + [g]
            good = False
        if mem is not None and (g.memory is None or g.memory < mem):
            bad_mem = (bad_mem or []) + [g]
            good = False
        if pi >= 0:
            peak = g.peaks[pi]
            if peak is None:
                if min_flops is not None or prec.name.lower() not in g.features:  # type: ignore[union-attr]
                    bad_prec = (bad_prec or []) + [g]
                    good = False
            elif min_flops is not None and peak < min_flops:
                bad_flops = (bad_flops or []) + [g]
                good = False
        if feats and not feats <= g.features:
            bad_feat = (bad_feat or []) + [g]
            good = False
        if good:
            eligible.append(g)
    return eligible, (bad_share, bad_mem, bad_prec, bad_flops, bad_feat, bad_model)


def _ineligible(req: Requirement, rejected: _Rejected, reasons: list[Reason]) -> None:
    """Why no group of the class qualifies: one reason per demand some group fails."""
    bad_share, bad_mem, bad_prec, bad_flops, bad_feat, bad_model = rejected
    n, name = req.count, req.device_class.name
    if bad_model:
        has = ", ".join(sorted({g.device.model for g in bad_model}))
        reasons.append(Reason("model", f"needs {name} of model {' or '.join(sorted(req.models))}, has {has}"))
    if bad_share:
        offered = ", ".join(f"{g.slots} at {g.share}" for g in bad_share)
        reasons.append(Reason("share", f"needs {n} {name} with >= {req.share_milli} milli each, has {offered}"))
    if bad_mem:
        code = "memory" if req.device_class == DeviceClass.CPU else "vram"
        reasons.append(Reason(code, f"needs {n} {name} with >= {req.min_memory_mib} MiB, has {_mib(bad_mem)}"))
    p_name = "" if req.precision is None else req.precision.name.lower()
    if bad_prec:
        what = f"known {p_name} FLOPS" if req.min_flops is not None else f"{p_name} support"
        models = ", ".join(g.device.model for g in bad_prec)
        reasons.append(Reason("precision", f"needs {name} with {what}, none for {models}"))
    if bad_flops:
        pi = int(req.precision)  # type: ignore[arg-type]  # a flops failure implies a precision
        has = ", ".join(f"{g.device.model} {g.peaks[pi]:.4g}" for g in bad_flops)
        reasons.append(Reason("flops", f"needs {name} with >= {req.min_flops:.4g} {p_name} FLOP/s each, has {has}"))
    if bad_feat:
        feats = req.features
        missing = sorted(feats - bad_feat[0].features)
        reasons.append(Reason("features", f"needs {name} with {', '.join(sorted(feats))}; lacks {', '.join(missing)}"))


def _claim(
    req: Requirement,
    view: NodeView,
    eligible: list[GroupView],
    free: Mapping[DeviceClass, int | Sequence[int]] | None,
    chosen: list[GroupView],
    reasons: list[Reason],
) -> float:
    """Choose the eligible groups (smallest first) that serve the order into ``chosen`` and
    return the capacity fraction they use; or add why there is not enough (count, free)."""
    cls, count = req.device_class, req.count
    total = 0
    for g in eligible:
        total += g.slots
    if total < count:
        reasons.append(
            Reason("count", f"needs {count} {cls.name}, has {total} that qualify ({view.slots[cls]} in all)")
        )
        return 1.0
    f = None if free is None else free.get(cls, 0)
    if f is None:  # the whole node is free
        got = offered = 0
        for g in eligible:
            chosen.append(g)
            got += g.slots
            offered += g.slots * g.share
            if got >= count:
                break
        return count * req.share_milli / offered
    if isinstance(f, int):
        return _claim_total(req, eligible, f, chosen, reasons)
    return _claim_per_device(req, view, eligible, f, chosen, reasons)


def _claim_total(
    req: Requirement, eligible: list[GroupView], f: int, chosen: list[GroupView], reasons: list[Reason]
) -> float:
    """``_claim`` when ``free`` is the class's total in milli-devices."""
    demand = req.count * req.share_milli
    offered_total = 0
    for g in eligible:
        offered_total += g.slots * g.share
    avail = f if f < offered_total else offered_total
    if avail < demand:
        reasons.append(Reason("free", f"needs {demand} milli-{req.device_class.name} free, {max(avail, 0)} free"))
        return 1.0
    got = 0
    for g in eligible:
        chosen.append(g)
        got += g.slots * g.share
        if got >= demand:
            break
    return demand / avail


def _claim_per_device(
    req: Requirement,
    view: NodeView,
    eligible: list[GroupView],
    f: Sequence[int],
    chosen: list[GroupView],
    reasons: list[Reason],
) -> float:
    """``_claim`` when ``free`` lists each device's free milli (``NodeDescriptor.of_class`` order)."""
    cls, count, share = req.device_class, req.count, req.share_milli
    if len(f) != view.slots[cls]:
        raise FreeCapacityError(
            f"free {cls.name} lists {len(f)} devices, node {view.descriptor.hostname} has {view.slots[cls]}",
            field="free",
        )
    got = 0
    avail = 0
    for g in eligible:
        k = _free_slots(g, f, share)
        if k:
            if got < count:
                chosen.append(g)
            got += k
            avail += sum(x for x in f[g.index : g.index + g.slots] if x >= share)
    if got < count:
        reasons.append(Reason("free", f"needs {count} {cls.name} with >= {share} milli free each, {got} have it"))
        return 1.0
    return count * share / avail


def _node_wide(
    req: Requirement,
    view: NodeView,
    free: Mapping[DeviceClass, int | Sequence[int]] | None,
    free_memory_mib: int | None,
    reasons: list[Reason],
) -> None:
    """The demands on the node as a whole: system memory and host CPU."""
    smem = req.min_system_memory_mib
    if smem is not None:
        if view.memory_mib is None:
            reasons.append(Reason("memory", f"needs {smem} MiB of system memory, node does not report its memory"))
        elif view.memory_mib < smem:
            reasons.append(Reason("memory", f"needs {smem} MiB of system memory, has {view.memory_mib} MiB"))
        elif free_memory_mib is not None and free_memory_mib < smem:
            reasons.append(
                Reason("system-memory-free", f"needs {smem} MiB of system memory free, {free_memory_mib} MiB free")
            )
    cpu = req.cpu_milli
    if cpu:
        if view.cpu_milli < cpu:
            reasons.append(
                Reason("cpu", f"needs {cpu} milli-CPU besides its {req.device_class.name}, node offers {view.cpu_milli}")
            )
        elif free is not None:
            fc = free.get(DeviceClass.CPU, 0)
            avail_cpu = fc if isinstance(fc, int) else sum(fc)
            if avail_cpu < cpu:
                reasons.append(Reason("free", f"needs {cpu} milli-CPU free, {max(avail_cpu, 0)} free"))


def _score(req: Requirement, chosen: list[GroupView], capacity: float) -> float:
    """Geometric mean of the used fractions: capacity, and memory and FLOPS when asked for.

    Each fraction is demand / offered in (0, 1]; 1.0 means the order uses everything the
    serving devices offer, so nothing is stranded. Lower means capacity left idle.
    """
    first = chosen[0]
    product = min(capacity, 1.0)
    n = 1
    if req.min_memory_mib and first.memory:
        product *= min(req.min_memory_mib / first.memory, 1.0)
        n += 1
    if req.min_flops and req.precision is not None:
        peak = first.peaks[int(req.precision)]
        if peak:
            product *= min(req.min_flops / peak, 1.0)
            n += 1
    return product ** (1.0 / n) if product > 0 else 0.0
