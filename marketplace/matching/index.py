"""The provider index: every provider's capacity as numpy arrays, one row per provider.

Filtering thousands of providers per order in Python would be the bottleneck, so the
index keeps what filters and scores read as columns (struct of arrays): free device parts
per slot (``free[cls]``, shape (n, G), milli-devices, slot order = ``NodeDescriptor.of_class``
order as ``fit`` expects), derived ``n_full`` (devices entirely free) and ``max_free`` (the
largest free part), free host CPU (milli) and memory (MiB), price, domain, status, load,
LSA time, reliability and the attachment node's topology index. Filters are then a few
vectorized comparisons, and static per-hardware verdicts of ``fit`` are computed once per
distinct hardware shape (``group``), not per provider.

Invariants:
- rows are sorted by ``provider_id``: the input order of providers never matters;
- ``0 <= free <= cap`` everywhere; ``n_full``/``max_free``/``frag`` always agree with ``free``
  (``take``/``give`` recompute the row they touch), and ``kinds``/``n_kinds`` with the
  accelerator leases taken and not given back;
- ``version`` changes whenever anything but free capacity changes, so caches keyed on it
  are never stale.
"""

from __future__ import annotations

import logging
from typing import Iterable

import numpy as np

from marketplace.matching.errors import InvalidProvider
from marketplace.matching.fragmentation import FragmentationModel
from marketplace.matching.model import Placement, Provider, ProviderStatus
from marketplace.resources.fit import NodeView, view_of
from marketplace.resources.model import DeviceClass

log = logging.getLogger(__name__)

STATUS_CODE = {s: i for i, s in enumerate(ProviderStatus)}


class ClassSlots:
    """Per-slot free capacity of one accelerator class over all providers."""

    __slots__ = ("cap", "free", "n_full", "max_free", "total")

    def __init__(self, n: int, width: int) -> None:
        self.cap = np.zeros((n, width), dtype=np.int32)
        self.free = np.zeros((n, width), dtype=np.int32)
        self.n_full = np.zeros(n, dtype=np.int32)
        self.max_free = np.zeros(n, dtype=np.int32)
        self.total = np.zeros(n, dtype=np.int32)

    def refresh(self, rows: np.ndarray | slice) -> None:
        f = self.free[rows]
        self.n_full[rows] = (f >= 1000).sum(axis=1)
        self.max_free[rows] = f.max(axis=1) if f.shape[-1] else 0


def lease_kind(pl: Placement) -> int:
    """The kind of an accelerator lease, as GPU clustering groups them: 0 for a fraction of one
    device, else the number of whole devices."""
    if len(pl.slots) == 1 and pl.slots[0][1] < 1000:
        return 0
    return len(pl.slots)


class ProviderIndex:
    """Columns over the providers; see the module docstring."""

    def __init__(self, providers: Iterable[Provider], *, routing=None) -> None:
        plist = sorted(providers, key=lambda p: p.provider_id)
        for a, b in zip(plist, plist[1:]):
            if a.provider_id == b.provider_id:
                raise InvalidProvider(f"provider {a.provider_id!r} is listed twice", field="provider_id")
        self.providers: list[Provider] = plist
        self.ids: list[str] = [p.provider_id for p in plist]
        self.pos: dict[str, int] = {pid: i for i, pid in enumerate(self.ids)}
        self.n = len(plist)
        self.routing = routing
        self.version = 0
        width = self._group_shapes(plist)
        self._capacity_columns(width)
        self._market_columns(plist)
        # interned state ids: equal (shape, free parts, CPU, memory) -> equal id, so scores of
        # identical candidates are computed once (most providers of a large market are alike)
        self._intern: dict[tuple, int] = {}
        self.state = np.zeros(self.n, dtype=np.int64)
        for g in range(len(self.group_views)):
            rows = np.flatnonzero(self.group == g)
            if len(rows):
                self.state[rows] = self._state_id(int(rows[0]))
        self._frag_memo: dict[int, float] = {}
        #: placement.PlacementMemo per requirement shape (valid while the fragmentation model is)
        self.memos: dict[tuple, object] = {}
        self.frag_model: FragmentationModel | None = None
        self.frag_class: DeviceClass | None = None
        #: PlacementMemo keys leave the memory ask out (placement.memo_key)
        self.memo_ignores_memory = True
        self.frag = np.zeros(self.n)
        #: each row's access class in the fragmentation model (which task types its device model admits)
        self.frag_acc = np.zeros(self.n, dtype=np.int64)
        #: accelerator leases held per row by kind (``lease_kind``), and how many kinds each row holds
        self.kinds: dict[int, np.ndarray] = {}
        self.n_kinds = np.zeros(self.n, dtype=np.int32)
        log.info("provider index: %d providers, %d hardware shapes, classes %s", self.n, len(self.group_views),
                 [c.name for c in self.slots])

    def _group_shapes(self, plist: list[Provider]) -> dict[DeviceClass, int]:
        """Hardware shapes: providers with equal devices and memory share fit's static verdict
        (``group``, ``group_views``, ``views``). Returns the widest slot count per class."""
        shapes: dict[tuple, int] = {}
        self.group = np.zeros(self.n, dtype=np.int32)
        self.group_views: list[NodeView] = []
        self.views: list[NodeView] = []
        width: dict[DeviceClass, int] = {}
        for i, p in enumerate(plist):
            d = p.descriptor
            key = (d.devices, d.memory_mib)
            g = shapes.get(key)
            if g is None:
                g = shapes[key] = len(self.group_views)
                self.group_views.append(view_of(d))
            self.group[i] = g
            view = self.group_views[g]
            self.views.append(view)
            for cls, k in view.slots.items():
                if cls != DeviceClass.CPU and k > width.get(cls, 0):
                    width[cls] = k
        return width

    def _capacity_columns(self, width: dict[DeviceClass, int]) -> None:
        """Per-slot, CPU and memory capacity, set per hardware group then broadcast (far fewer
        groups than providers); everything starts free."""
        n = self.n
        self.slots: dict[DeviceClass, ClassSlots] = {c: ClassSlots(n, w) for c, w in sorted(width.items())}
        self.cpu_cap = np.zeros(n, dtype=np.int64)
        self.mem_cap = np.zeros(n, dtype=np.int64)
        for g, view in enumerate(self.group_views):
            rows = np.flatnonzero(self.group == g)
            self.cpu_cap[rows] = view.cpu_milli
            self.mem_cap[rows] = view.memory_mib or 0
            for cls, cs in self.slots.items():
                caps: list[int] = []
                for d in view.descriptor.of_class(cls):
                    caps.extend([d.share_milli] * d.count)
                if caps:
                    cs.cap[np.ix_(rows, np.arange(len(caps)))] = caps
        for cs in self.slots.values():
            cs.free[:] = cs.cap
            cs.total[:] = (cs.cap > 0).sum(axis=1)
            cs.refresh(slice(None))
        #: per class, each row's total capacity (milli)
        self.cap_total: dict[DeviceClass, np.ndarray] = {c: cs.cap.sum(axis=1, dtype=np.int64)
                                                         for c, cs in self.slots.items()}
        self.cpu_free = self.cpu_cap.copy()
        self.mem_free = self.mem_cap.copy()

    def _market_columns(self, plist: list[Provider]) -> None:
        n = self.n
        self.price = np.full(n, np.nan)
        self.domain = np.full(n, -1, dtype=np.int64)
        self.status = np.zeros(n, dtype=np.int8)
        self.stake = np.zeros(n, dtype=np.float64)
        self.load = np.zeros(n)
        self.lsa_at = np.full(n, np.nan)
        self.reliability = np.ones(n)
        self.attach = np.full(n, -1, dtype=np.int64)
        for i, p in enumerate(plist):
            self._set_market(i, p)
        #: every provider names an attachment node (latency is then a plain gather)
        self.attach_all = bool((self.attach >= 0).all())

    # ------------------------------------------------------------------ market facts

    def _set_market(self, i: int, p: Provider) -> None:
        if p.price is not None:
            self.price[i] = p.price
        self.domain[i] = -1 if p.domain is None else p.domain
        self.status[i] = STATUS_CODE[p.status]
        self.stake[i] = p.stake
        self.load[i] = p.load
        self.lsa_at[i] = np.nan if p.lsa_at is None else p.lsa_at
        self.reliability[i] = p.reliability
        if p.attach_node is not None and self.routing is not None:
            self.attach[i] = self.routing.index(p.attach_node)  # raises UnknownNode, naming it
        else:
            self.attach[i] = -1

    def update_market(self, p: Provider) -> None:
        """A new LSA or registry fact for a known provider (its hardware must not change)."""
        i = self.pos.get(p.provider_id)
        if i is None:
            raise InvalidProvider(f"provider {p.provider_id!r} is not in the index", field="provider_id")
        old = self.providers[i]
        if p.descriptor.devices != old.descriptor.devices or p.descriptor.memory_mib != old.descriptor.memory_mib:
            raise InvalidProvider(f"provider {p.provider_id!r} changed its hardware; re-register it",
                                  field="descriptor")
        self.providers[i] = p
        self._set_market(i, p)
        self.attach_all = bool((self.attach >= 0).all())
        self.version += 1

    # ------------------------------------------------------------------ fragmentation

    def _state_id(self, i: int) -> int:
        key = (int(self.group[i]), int(self.cpu_free[i]), int(self.mem_free[i]),
               *(cs.free[i].tobytes() for cs in self.slots.values()))
        sid = self._intern.get(key)
        if sid is None:
            sid = self._intern[key] = len(self._intern)
        return sid

    @property
    def n_states(self) -> int:
        """How many state ids have been handed out (ids are 0..n_states-1, never reused)."""
        return len(self._intern)

    def set_fragmentation(self, model: FragmentationModel | None) -> None:
        self.frag_model = model
        self.frag_class = None if model is None else model.dist.device_class
        # the measure reads free memory only against task types' memory asks: with none (the
        # paper's CPU+GPU measure), it only sees memory >= 0, true on any provider that fits
        self.memo_ignores_memory = model is None or all(t.memory_mib == 0 for t in model.dist.types)
        self._frag_memo = {}
        self.memos = {}
        self.frag_acc = np.zeros(self.n, dtype=np.int64)
        if model is None:
            self.frag = np.zeros(self.n)
            return
        # the access class is a function of the hardware group: the models of its devices
        for g, view in enumerate(self.group_views):
            models = tuple(sorted({d.model for d in view.descriptor.of_class(model.dist.device_class)}))
            self.frag_acc[self.group == g] = model.access_class(models)
        uniq, first, inv = np.unique(self.state, return_index=True, return_inverse=True)
        vals = self.frag_of(first)
        self._frag_memo = dict(zip(uniq.tolist(), vals.tolist()))
        self.frag = vals[inv]

    def frag_of(self, rows: np.ndarray, free: np.ndarray | None = None, cpu: np.ndarray | None = None,
                mem: np.ndarray | None = None) -> np.ndarray:
        if self.frag_model is None:
            return np.zeros(len(rows))
        cs = self.slots.get(self.frag_class)  # type: ignore[arg-type]
        f = (cs.free[rows] if cs is not None else np.zeros((len(rows), 0), dtype=np.int32)) if free is None else free
        return self.frag_model.node_frag(f, self.cpu_free[rows] if cpu is None else cpu,
                                         self.mem_free[rows] if mem is None else mem, self.frag_acc[rows])

    def frag1(self, i: int, free: list[int] | None, cpu: int, mem: int) -> float:
        """``frag_of`` for one row in plain Python (same bits): ``free`` None = row i's parts now."""
        model = self.frag_model
        if model is None:
            return 0.0
        if free is None:
            cs = self.slots.get(self.frag_class)  # type: ignore[arg-type]
            free = [] if cs is None else cs.free[i].tolist()
        return model.node_frag1(free, cpu, mem, int(self.frag_acc[i]))

    def fgd_slot(self, free: np.ndarray, eligible: np.ndarray, cpu_after: np.ndarray, mem_after: np.ndarray,
                 share: int, acc: np.ndarray, *, with_frag: bool = False):
        """The device a one-device fractional task takes on each row, as FGD chooses it: the
        eligible slot whose use leaves the node's fragmentation lowest, then the least free
        part (best fit), then the lowest index. ``free`` (R, G) and ``eligible`` (R, G) are
        before the placement, ``acc`` (R,) the rows' access classes; rows without an eligible
        slot get -1. With ``with_frag``, also
        each row's fragmentation after that choice (unrounded; NaN without a choice)."""
        r, g = free.shape
        if self.frag_model is None or r == 0:
            keyed = np.where(eligible, free, np.iinfo(np.int32).max)
            out = np.where(eligible.any(axis=1), np.argmin(keyed, axis=1), -1)
            return (out, np.zeros(r)) if with_frag else out
        rr, jj = np.nonzero(eligible)
        # slots of a row with equal free parts leave equal multisets, so equal fragmentation:
        # only the lowest such slot is a candidate (the tie-break would pick it anyway)
        vv = free[rr, jj]
        o = np.lexsort((jj, vv, rr))
        keep = np.ones(len(o), dtype=bool)
        keep[1:] = (rr[o][1:] != rr[o][:-1]) | (vv[o][1:] != vv[o][:-1])
        sel = np.sort(o[keep])
        rr, jj = rr[sel], jj[sel]
        after = free[rr].copy()
        after[np.arange(len(rr)), jj] -= share
        raw = self.frag_model.node_frag(after, cpu_after[rr], mem_after[rr], acc[rr])
        f = np.round(raw, 6)
        # lexicographic (row, frag, free part, slot): the first entry of each row wins
        order = np.lexsort((jj, free[rr, jj], f, rr))
        rr_sorted = rr[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = rr_sorted[1:] != rr_sorted[:-1]
        out = np.full(r, -1, dtype=np.int64)
        out[rr_sorted[first]] = jj[order][first]
        if not with_frag:
            return out
        frag = np.full(r, np.nan)
        frag[rr_sorted[first]] = raw[order][first]
        return out, frag

    def fgd_slot1(self, free: list[int], cpu_after: int, mem_after: int, share: int, acc: int) -> tuple[int, float]:
        """``fgd_slot`` for one row in plain Python: (slot, fragmentation after), or (-1, nan).
        The fragmentation depends on the multiset of free parts only, so slots with equal free
        parts are one candidate (the lowest index)."""
        model = self.frag_model
        best: tuple | None = None
        seen: set[int] = set()
        for j, v in enumerate(free):
            if v < share or v in seen:
                continue
            seen.add(v)
            parts = list(free)
            parts[j] = v - share
            raw = model.node_frag1(parts, cpu_after, mem_after, acc)  # type: ignore[union-attr]
            key = (round(raw * 1e6) / 1e6, v, j)  # np.round(raw, 6), as fgd_slot rounds
            if best is None or key < best[0]:
                best = (key, j, raw)
        if best is None:
            return -1, float("nan")
        return best[1], best[2]

    # ------------------------------------------------------------------ capacity

    def free_for_fit(self, i: int) -> dict[DeviceClass, object]:
        """Row ``i``'s free capacity in the form ``fit(free=...)`` takes."""
        out: dict[DeviceClass, object] = {DeviceClass.CPU: int(self.cpu_free[i])}
        for cls, cs in self.slots.items():
            k = self.views[i].slots.get(cls, 0)
            if k:
                out[cls] = [int(x) for x in cs.free[i, :k]]
        return out

    def take(self, i: int, pl: Placement, frag_after: float | None = None) -> None:
        """Take ``pl`` on row ``i``. ``frag_after``: the row's fragmentation after it, when the
        caller has simulated exactly this placement on the row's current state (not checked
        here: PlacementMemo.after under the memo's slot check, placement.Placer.frag_after)."""
        self._apply(i, pl, -1, frag_after)

    def give(self, i: int, pl: Placement) -> None:
        self._apply(i, pl, +1)

    def _apply(self, i: int, pl: Placement, sign: int, frag_after: float | None = None) -> None:
        if pl.device_class == DeviceClass.CPU:
            pass  # a CPU job's logical CPUs are in pl.cpu_milli
        else:
            cs = self.slots[pl.device_class]
            # the row in plain Python (a handful of slots): cheaper than numpy calls on a view
            row = cs.free[i].tolist()
            for j, milli in pl.slots:
                row[j] += sign * milli
            if min(row) < 0 or any(a > b for a, b in zip(row, cs.cap[i].tolist())):
                raise AssertionError(f"slot accounting broken on {self.ids[i]}")  # a bug, not an input error
            cs.free[i] = row
            cs.n_full[i] = sum(1 for a in row if a >= 1000)
            cs.max_free[i] = max(row) if row else 0
            self._count_kind(i, lease_kind(pl), -sign)  # taking capacity (sign -1) adds a lease
        self.cpu_free[i] += sign * pl.cpu_milli
        self.mem_free[i] += sign * pl.memory_mib
        sid = self.state[i] = self._state_id(i)
        if self.frag_model is not None:
            f = self._frag_memo.get(sid)
            if f is None:
                f = self._frag_memo[sid] = self.frag1(i, None, int(self.cpu_free[i]), int(self.mem_free[i])) \
                    if frag_after is None else frag_after
            self.frag[i] = f

    def _count_kind(self, i: int, kind: int, sign: int) -> None:
        arr = self.kinds.get(kind)
        if arr is None:
            arr = self.kinds[kind] = np.zeros(self.n, dtype=np.int32)
        before = arr[i]
        arr[i] = before + sign
        if before == 0 or arr[i] == 0:
            self.n_kinds[i] += 1 if before == 0 else -1

    def used_milli(self, cls: DeviceClass) -> int:
        cs = self.slots.get(cls)
        return 0 if cs is None else int((cs.cap.astype(np.int64) - cs.free).sum())

    def capacity_milli(self, cls: DeviceClass) -> int:
        cs = self.slots.get(cls)
        return 0 if cs is None else int(cs.cap.astype(np.int64).sum())
