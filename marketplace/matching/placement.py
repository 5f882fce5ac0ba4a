"""Placement: where exactly an order's devices go on a provider, and what that does to it.

Two questions, answered the same way everywhere (the round, ``explain``, pre-emption, the
engine's recovery):
- ``simulate`` / ``PlacementMemo``: the effect of placing a requirement on each candidate
  provider STATE (FGD delta, best-fit raw, chosen devices, fragmentation after), memoized per
  requirement shape and interned provider state, so scoring a candidate seen before is an
  array read (see docs/matching.md, "Cost control");
- ``Placer.place``: the exact slots on one provider now: ``fit`` with its free capacity
  picks the eligible device groups; a fractional one-device task takes the device FGD
  chooses (the one the score simulated), whole devices are taken best fit.

Invariants: a state id's memo entry is a function of (shape, state) only, so it is right
for as long as the fragmentation model is unchanged (``ProviderIndex.set_fragmentation``
drops every memo); ``PlacementMemo._fill_one`` and ``simulate`` compute the same bits;
``Placer.frag_after`` answers only when the placement is exactly the simulated one.
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING

import numpy as np

from marketplace.matching.index import ProviderIndex
from marketplace.matching.model import Placement
from marketplace.resources.fit import fit
from marketplace.resources.model import DeviceClass
from marketplace.resources.requirement import Requirement

if TYPE_CHECKING:
    from marketplace.matching.framework import CycleState

log = logging.getLogger(__name__)


def hardware_key(req: Requirement) -> tuple:
    """The part of a requirement that depends on hardware only (what fit judges statically)."""
    return (req.device_class, req.count, req.share_milli, req.min_memory_mib, req.min_system_memory_mib,
            req.precision, req.min_flops, req.features, req.cpu_milli, req.models)


# process-wide interning of the two requirement keys (they only ever grow by distinct asks):
# caches are keyed by small ints, cheap to hash, instead of tuples of enums and sets
_HW_IDS: dict[tuple, int] = {}
_SHAPE_IDS: dict[tuple, int] = {}
#: fresh ids (next() is atomic, so two keys never get one id even across threads)
_NEXT_ID = itertools.count()
#: id(requirement) -> (requirement, hardware id, shape id, shape id without memory); the entry
#: keeps the object alive, so an id is never reused while cached
_REQ_IDS: dict[int, tuple] = {}


def req_ids(req: Requirement) -> tuple[int, int, int]:
    """(interned ``hardware_key``, interned ``shape_key``, interned ``shape_key`` with the
    memory ask left out) of ``req``; the two shape kinds never share an id."""
    hit = _REQ_IDS.get(id(req))
    if hit is not None and hit[0] is req:
        return hit[1], hit[2], hit[3]
    hw = _HW_IDS.setdefault(hardware_key(req), next(_NEXT_ID))
    key = shape_key(req)
    sh = _SHAPE_IDS.setdefault(key, next(_NEXT_ID))
    nomem = _SHAPE_IDS.setdefault(key[:4] + (None,), next(_NEXT_ID))
    if len(_REQ_IDS) >= 65536:
        _REQ_IDS.clear()
    _REQ_IDS[id(req)] = (req, hw, sh, nomem)
    return hw, sh, nomem


def memo_key(ix: ProviderIndex, req: Requirement) -> int:
    """The PlacementMemo of ``req`` in ``ix``: per shape, and per shape without the memory ask
    when the fragmentation model does not read memory (``ProviderIndex.memo_ignores_memory``):
    then a placement's FGD delta, best-fit raw and chosen devices do not depend on it on any
    provider that can hold the order (the memo is only read for such providers)."""
    ids = req_ids(req)
    return ids[2] if ix.memo_ignores_memory else ids[1]


def shape_key(req: Requirement) -> tuple:
    """What a placement's effect on a provider state depends on (simulate's inputs)."""
    return (req.device_class, req.count, req.share_milli, req.cpu_milli, req.min_system_memory_mib or 0)



_INT32_MAX = int(np.iinfo(np.int32).max)
#: up to this many new states per fill are simulated one by one (PlacementMemo._fill_one)
FEW_MISSES = 32


class PlacementMemo:
    """Per requirement shape: FGD delta, best-fit raw and chosen devices of each provider STATE.

    State ids are interned (index.py): equal (hardware, free parts, CPU, memory) -> equal id,
    and ids are never reused, so a value computed for a state stays right for as long as the
    fragmentation model is unchanged (``ProviderIndex.set_fragmentation`` drops all memos).
    Arrays are indexed by state id and filled on demand, so scoring a candidate whose state
    was seen before is an array read, not a simulation. ``after`` keeps the node's
    fragmentation after the simulated placement (unrounded): when the round reserves exactly
    that placement, the index takes it as the new state's value instead of recomputing it
    (the value of a state does not depend on how it was computed, fragmentation.py).

    Most orders find one new state among their candidates (the provider the previous order
    took): that case is simulated in plain Python (``_fill_one``), the same arithmetic as the
    batch path (``simulate``) on one row."""

    __slots__ = ("known", "delta", "fit", "slots", "after", "count")

    def __init__(self, count: int = 1) -> None:
        self.count = count
        self.known = np.zeros(0, dtype=bool)
        self.delta = np.zeros(0)
        self.fit = np.zeros(0)
        self.after = np.zeros(0)
        self.slots = np.zeros((0, count), dtype=np.int64)

    def _grow(self, size: int) -> None:
        new = max(size, 2 * len(self.known), 64)
        for name, fill in (("known", False), ("delta", 0.0), ("fit", 0.0), ("after", 0.0), ("slots", -1)):
            old = getattr(self, name)
            arr = np.full((new,) + old.shape[1:], fill, dtype=old.dtype)
            arr[: len(old)] = old
            setattr(self, name, arr)

    def fill(self, ix: ProviderIndex, req: Requirement, rows: np.ndarray) -> np.ndarray:
        """The state ids of ``rows``, after computing the values of states not seen before."""
        sid = ix.state[rows]
        if not len(sid):
            return sid
        if ix.n_states > len(self.known):  # every id in use is below n_states
            self._grow(ix.n_states)
        kn = self.known[sid]
        nm = len(kn) - int(np.count_nonzero(kn))
        if nm == 1:
            k = int(kn.argmin())
            self._fill_one(ix, req, int(rows[k]), int(sid[k]))
        elif nm <= FEW_MISSES:
            # a handful of new states: one plain-Python simulation each beats the batch's fixed cost
            known = self.known
            for k in np.flatnonzero(~kn).tolist():
                s = int(sid[k])
                if not known[s]:  # two rows in one new state: simulated once
                    self._fill_one(ix, req, int(rows[k]), s)
        elif nm:
            miss = ~kn
            uniq, first = np.unique(sid[miss], return_index=True)
            reps = rows[miss][first]
            free, order, cpu, mem, after = simulate(ix, req, reps, with_frag=True)
            if ix.frag_model is None:
                delta = np.zeros(len(reps))
            else:
                # rounded to a micro-milli so that equal increases tie exactly (float sums differ in the last bits)
                delta = np.round(after - ix.frag[reps], 6)
            if free is None:
                fit = 1.0 - cpu / np.maximum(ix.cpu_cap[reps], 1)
            else:
                cap = ix.slots[req.device_class].cap[reps].sum(axis=1)
                fit = 1.0 - free.sum(axis=1) / np.maximum(cap, 1)
            self.delta[uniq] = delta
            self.fit[uniq] = fit
            self.after[uniq] = after
            if order is not None and order.shape[1] == self.count:
                self.slots[uniq] = order
            self.known[uniq] = True
        return sid

    def _fill_one(self, ix: ProviderIndex, req: Requirement, row: int, sid: int) -> None:
        """``fill`` for one new state, in plain Python: ``simulate`` and ``frag_of`` on one row."""
        mem = int(ix.mem_free[row]) - (req.min_system_memory_mib or 0)
        cls = req.device_class
        if cls == DeviceClass.CPU:
            cpu = int(ix.cpu_free[row]) - req.count * req.share_milli
            fit = 1.0 - cpu / max(int(ix.cpu_cap[row]), 1)
            after = ix.frag1(row, None, cpu, mem)
        else:
            free = ix.slots[cls].free[row].tolist()
            cpu = int(ix.cpu_free[row]) - req.cpu_milli
            share = req.share_milli
            count = req.count
            if count == 1 and share < 1000 and ix.frag_class == cls:
                j, after = ix.fgd_slot1(free, cpu, mem, share, int(ix.frag_acc[row]))
                free[j] -= share
                self.slots[sid, 0] = j
            else:
                # best fit: least free part that fits, then lowest index (simulate's stable argsort)
                fits = sorted((v, j) for j, v in enumerate(free) if v >= share)
                if len(fits) >= count:
                    order = [j for _, j in fits[:count]]
                else:
                    big = _INT32_MAX
                    order = sorted(range(len(free)), key=lambda j: (free[j] if free[j] >= share else big, j))[:count]
                for j in order:
                    free[j] -= share
                after = ix.frag1(row, free if cls == ix.frag_class else None, cpu, mem)
                if len(order) == self.count:
                    self.slots[sid] = order
            fit = 1.0 - sum(free) / max(int(ix.cap_total[cls][row]), 1)
        # np.round(x, 6) is rint(x * 1e6) / 1e6; Python's round(float) is also half-to-even
        self.delta[sid] = 0.0 if ix.frag_model is None else round((after - float(ix.frag[row])) * 1e6) / 1e6
        self.fit[sid] = fit
        self.after[sid] = after
        self.known[sid] = True


class PlacementEffects:
    """The candidates' placement effects (FGD delta, best-fit raw), read from the shape's memo."""

    __slots__ = ("sid", "memo")

    def __init__(self, ix: ProviderIndex, req: Requirement, rows: np.ndarray) -> None:
        key = memo_key(ix, req)
        memo = ix.memos.get(key)
        if memo is None:
            memo = ix.memos[key] = PlacementMemo(req.count if req.device_class != DeviceClass.CPU else 1)
        self.memo = memo
        self.sid = memo.fill(ix, req, rows)

    @property
    def delta(self) -> np.ndarray:
        return self.memo.delta[self.sid]

    @property
    def fit(self) -> np.ndarray:
        return self.memo.fit[self.sid]


def simulate(ix: ProviderIndex, req: Requirement, rows: np.ndarray, *, with_frag: bool = False):
    """Free state of ``rows`` after placing ``req`` by the placement rule (best fit in node).

    Returns (free after (K, G) of the request's class or None, slot order (K, count) or None,
    cpu after, memory after), and with ``with_frag`` also each row's fragmentation after."""
    mem = ix.mem_free[rows] - (req.min_system_memory_mib or 0)
    if req.device_class == DeviceClass.CPU:
        cpu = ix.cpu_free[rows] - req.count * req.share_milli
        if with_frag:
            return None, None, cpu, mem, ix.frag_of(rows, cpu=cpu, mem=mem)
        return None, None, cpu, mem
    cs = ix.slots[req.device_class]
    free = cs.free[rows].copy()
    cpu = ix.cpu_free[rows] - req.cpu_milli
    after = None
    if req.count == 1 and req.share_milli < 1000 and ix.frag_class == req.device_class:
        # a fractional device: FGD also picks the device inside the node (index.fgd_slot), whose
        # fragmentation after is the node's
        slot, after = ix.fgd_slot(free, free >= req.share_milli, cpu, mem, req.share_milli, ix.frag_acc[rows],
                                  with_frag=True)
        order = slot[:, None]
    else:
        # best fit inside the node: the devices with the least free part that still fits, lowest index first
        keyed = np.where(free >= req.share_milli, free, np.iinfo(np.int32).max)
        order = np.argsort(keyed, axis=1, kind="stable")[:, : req.count]
    np.subtract.at(free, (np.arange(len(rows))[:, None], order), req.share_milli)
    if not with_frag:
        return free, order, cpu, mem
    if after is None:
        after = ix.frag_of(rows, free=free if req.device_class == ix.frag_class else None, cpu=cpu, mem=mem)
    return free, order, cpu, mem, after


class Placer:
    """The exact slots an order takes on one provider now (see the module docstring)."""

    __slots__ = ("ix", "_fit_memo")

    def __init__(self, ix: ProviderIndex) -> None:
        self.ix = ix
        #: fit() with free capacity, per (hardware ask, provider state id): ``place``'s device
        #: groups. Valid for the index's life: state ids are never reused and hardware never changes
        self._fit_memo: dict = {}

    def place(self, st: CycleState, i: int) -> Placement | None:
        """The exact slots on row ``i``: fit() with its free capacity picks the eligible device
        groups, and within them the devices with the least free part that fits (best fit)."""
        ix, req = self.ix, st.req
        view = ix.views[i]
        # fit's verdict is a function of the hardware ask and the row's state (hardware shape,
        # free parts, CPU, memory): equal states share it
        sid = int(ix.state[i])
        fkey = (st.hw_key, sid)
        f = self._fit_memo.get(fkey)
        if f is None:
            if len(self._fit_memo) > 100_000:
                self._fit_memo.clear()
            f = self._fit_memo[fkey] = fit(req, view, free=ix.free_for_fit(i), free_memory_mib=int(ix.mem_free[i]))
        if not f.ok:
            return None
        mem = req.min_system_memory_mib or 0
        pid = ix.ids[i]
        if req.device_class == DeviceClass.CPU:
            return Placement(pid, DeviceClass.CPU, (), req.count * req.share_milli, mem)
        groups = [g for g in view.groups[req.device_class] if g.device in f.devices]
        cand = []
        free = ix.slots[req.device_class].free[i]
        parts = free.tolist()
        share = req.share_milli
        for g in groups:
            for j in range(g.index, g.index + g.slots):
                if parts[j] >= share:
                    cand.append((parts[j], j))
        if req.count == 1 and req.share_milli < 1000 and ix.frag_class == req.device_class and cand:
            # a fractional device: the same FGD choice as the score's simulation (index.fgd_slot),
            # read from the shape's memo when this provider state was scored
            memo = ix.memos.get(st.shape)
            ok = [j for _, j in cand]
            j = -1
            if memo is not None and sid < len(memo.known) and memo.known[sid]:
                j = int(memo.slots[sid, 0])
            if j not in ok:
                eligible = np.zeros((1, len(free)), dtype=bool)
                eligible[0, ok] = True
                j = int(ix.fgd_slot(free[None, :], eligible, ix.cpu_free[i:i + 1] - req.cpu_milli,
                                    ix.mem_free[i:i + 1] - mem, req.share_milli, ix.frag_acc[i:i + 1])[0])
            return Placement(pid, req.device_class, ((j, req.share_milli),), req.cpu_milli, mem)
        cand.sort()
        chosen = sorted(j for _, j in cand[: req.count])
        return Placement(pid, req.device_class, tuple((j, req.share_milli) for j in chosen), req.cpu_milli, mem)

    def frag_after(self, row: int, req: Requirement, pl: Placement) -> float | None:
        """The row's fragmentation after ``pl`` as the score simulated it (PlacementMemo.after),
        when ``pl`` is exactly the simulated placement on the row's current state; else None."""
        ix = self.ix
        if ix.frag_model is None:
            return None
        memo = ix.memos.get(memo_key(ix, req))
        if memo is None:
            return None
        sid = int(ix.state[row])
        if sid >= len(memo.known) or not memo.known[sid]:
            return None
        if pl.device_class == ix.frag_class and \
                sorted(j for j, _ in pl.slots) != sorted(memo.slots[sid].tolist()):
            return None
        return float(memo.after[sid])
