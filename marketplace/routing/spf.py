"""Shortest paths by latency, cached per source, with incremental updates after changes.

``RoutingTable`` is the routing state of one engine: a topology plus the link and node
changes applied since (cost up or down, link down or up, node down or up), and one
shortest-path tree (distances and predecessors) per source asked for, computed on demand
by ``scipy.sparse.csgraph.dijkstra`` over a CSR adjacency matrix.

Incremental recomputation (``apply``), the way OSPF's incremental SPF does it, per cached tree:
- weights that went UP (cost up, link down, node down): only the nodes whose tree path used
  one of those edges can change, i.e. the subtrees hanging below them. Those nodes are
  reset, seeded from their neighbours outside the subtree, and settled by a Dijkstra over
  the subtree alone. Every other node keeps its distance: its old path is unchanged and
  nothing got cheaper, so it is still a shortest one;
- weights that went DOWN (cost down, link up, node up): the endpoints of those edges are
  relaxed and the improvement is propagated by Dijkstra from them, stopping where nothing
  improves;
- both kinds in one batch run in that order, each against the weights of its own phase,
  so each phase starts from exact distances;
- when the affected part exceeds ``incremental_limit`` of the graph the tree is recomputed
  in full instead, since scipy's compiled Dijkstra beats Python beyond that size.

Invariants: after any ``apply`` every cached tree equals what a full recomputation gives
(distances exactly, paths equal in length; among equal-length paths the choice may
differ); every path returned uses only links that are up and nodes that are up; weights in
the matrix are the minimum latency over the parallel links that are up, ``inf`` when none.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Iterable

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from marketplace.routing.errors import InvalidTopology, UnknownLink, Unreachable
from marketplace.routing.topology import MIN_LINK_LATENCY_MS, Link, Topology

log = logging.getLogger(__name__)

INF = math.inf
_NO_PRED = -9999  # scipy's marker for "no predecessor"


@dataclass(frozen=True, slots=True)
class LinkChange:
    """Change the link(s) ``u``-``v``: new latency and/or up/down. ``key`` picks one parallel link."""

    u: str
    v: str
    latency_ms: float | None = None
    up: bool = True
    key: int | None = None


@dataclass(frozen=True, slots=True)
class NodeChange:
    """A node fails (``up=False``: all its links are unusable) or comes back."""

    node: str
    up: bool


Change = LinkChange | NodeChange


@dataclass(frozen=True, slots=True)
class UpdateStats:
    """What one ``apply`` did: trees updated incrementally, trees recomputed in full, nodes touched."""

    incremental: int
    full: int
    touched: int


class RoutingTable:
    """Latency shortest paths over a topology, cached per source, updated incrementally."""

    def __init__(self, topology: Topology, *, max_cached_sources: int = 4096,
                 incremental_limit: float = 0.06) -> None:
        self._topology = topology
        self.name = topology.name
        self.nodes = topology.nodes
        self.node_index = topology.node_index
        self.n = n = len(topology.nodes)
        self.max_cached_sources = max_cached_sources
        self._limit = max(64, int(incremental_limit * n))
        self._links: list[Link] = list(topology.links)
        m = len(self._links)
        idx = topology.node_index
        lu = np.fromiter((idx[link.u] for link in self._links), dtype=np.int64, count=m)
        lv = np.fromiter((idx[link.v] for link in self._links), dtype=np.int64, count=m)
        self._lat = [link.latency_ms for link in self._links]
        self._lup = [link.up for link in self._links]
        self._node_up = [True] * n
        # one "pair" per pair of adjacent nodes, whatever the number of parallel links
        a, b = np.minimum(lu, lv), np.maximum(lu, lv)
        pair_codes, pair_of_link = np.unique(a * n + b, return_inverse=True)
        self._pa = (pair_codes // n).astype(np.int64)
        self._pb = (pair_codes % n).astype(np.int64)
        p = len(pair_codes)
        self._pair_links: list[list[int]] = [[] for _ in range(p)]
        for li, pi in enumerate(pair_of_link.tolist()):
            self._pair_links[pi].append(li)
        self._pair_id = {(int(x), int(y)): i for i, (x, y) in enumerate(zip(self._pa.tolist(), self._pb.tolist()))}
        self._node_pairs: list[list[int]] = [[] for _ in range(n)]
        for i, (x, y) in enumerate(zip(self._pa.tolist(), self._pb.tolist())):
            self._node_pairs[x].append(i)
            self._node_pairs[y].append(i)
        w = np.array([self._pair_weight(i) for i in range(p)], dtype=np.float64)
        # CSR with both directions of every pair; remember where each direction lives
        rows = np.concatenate([self._pa, self._pb])
        cols = np.concatenate([self._pb, self._pa])
        order = np.lexsort((cols, rows))
        indptr = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        indices = cols[order].astype(np.int32)
        data = np.concatenate([w, w])[order]
        where = np.empty(2 * p, dtype=np.int64)
        where[order] = np.arange(2 * p)
        self._pos_ab, self._pos_ba = where[:p], where[p:]
        self._csr = csr_matrix((data, indices, indptr), shape=(n, n))
        self._data = self._csr.data  # mutated in place on changes
        # Python mirrors for the incremental loops (list indexing is far cheaper than numpy scalars)
        self._indptr = indptr.tolist()
        self._indices = indices.tolist()
        self._wlist = data.tolist()
        self._trees: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._topo_dirty = False
        log.debug("routing table %s: %d nodes, %d links, %d adjacencies", self.name, n, m, p)

    # ------------------------------------------------------------------ queries

    @property
    def topology(self) -> Topology:
        """The topology with every change applied so far (links down are kept with ``up=False``)."""
        if self._topo_dirty:
            self._topology = Topology(self.name, self.nodes, tuple(self._links), self._topology.node_info)
            self._topo_dirty = False
        return self._topology

    def index(self, node: str) -> int:
        return self._topology.index(node)

    def node_up(self, node: str) -> bool:
        return self._node_up[self.index(node)]

    def distances_from(self, source: str) -> np.ndarray:
        """Latency (ms) from ``source`` to every node, indexed like ``nodes``; ``inf`` if unreachable.

        A read-only view of the cached tree: valid until the next ``apply``."""
        dist, _ = self._tree(self.index(source))
        view = dist.view()
        view.flags.writeable = False
        return view

    def latency(self, src: str, dst: str) -> float:
        """Latency (ms) of the shortest path; raises ``Unreachable`` if there is none."""
        d = float(self._tree(self.index(src))[0][self.index(dst)])
        if d == INF:
            raise Unreachable(src, dst)
        return d

    def path(self, src: str, dst: str) -> list[str]:
        """Node ids from ``src`` to ``dst`` inclusive; raises ``Unreachable``."""
        s, t = self.index(src), self.index(dst)
        dist, pred = self._tree(s)
        if dist[t] == INF:
            raise Unreachable(src, dst)
        out = [t]
        while out[-1] != s:
            out.append(int(pred[out[-1]]))
            if len(out) > self.n:  # a cycle would mean a corrupted tree: fail loudly, not forever
                raise InvalidTopology(f"predecessor cycle from {src!r} to {dst!r}")
        return [self.nodes[i] for i in reversed(out)]

    def clear_cache(self) -> None:
        """Forget every cached tree (they are recomputed on demand)."""
        self._trees.clear()

    def cached_sources(self) -> list[str]:
        return [self.nodes[i] for i in self._trees]

    # ------------------------------------------------------------------ full SPF

    def _full(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        dist, pred = dijkstra(self._csr, directed=True, indices=s, return_predecessors=True)
        return dist, pred.astype(np.int64, copy=False)

    def _tree(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        tree = self._trees.get(s)
        if tree is not None:
            self._trees.move_to_end(s)
            return tree
        tree = self._full(s)
        self._trees[s] = tree
        if len(self._trees) > self.max_cached_sources:
            self._trees.popitem(last=False)
        return tree

    def recompute(self, source: str) -> np.ndarray:
        """Drop the cached tree of ``source`` and compute it in full (used by benchmarks and checks)."""
        s = self.index(source)
        self._trees.pop(s, None)
        return self._tree(s)[0]

    # ------------------------------------------------------------------ changes

    def _pair_weight(self, p: int) -> float:
        if not (self._node_up[int(self._pa[p])] and self._node_up[int(self._pb[p])]):
            return INF
        best = INF
        for li in self._pair_links[p]:
            if self._lup[li] and self._lat[li] < best:
                best = self._lat[li]
        return best

    def _set_pair(self, p: int, w: float) -> None:
        for pos in (int(self._pos_ab[p]), int(self._pos_ba[p])):
            self._data[pos] = w
            self._wlist[pos] = w

    def _stage(self, change: Change) -> set[int]:
        """Record a change in the link/node state; return the pairs whose weight may differ."""
        if isinstance(change, NodeChange):
            i = self.index(change.node)
            self._node_up[i] = change.up
            return set(self._node_pairs[i])
        if not isinstance(change, LinkChange):
            raise InvalidTopology(f"not a routing change: {change!r}")
        a, b = self.index(change.u), self.index(change.v)
        p = self._pair_id.get((min(a, b), max(a, b)))
        links = [] if p is None else [li for li in self._pair_links[p]
                                      if change.key is None or self._links[li].key == change.key]
        if not links:
            raise UnknownLink(change.u, change.v, change.key)
        if change.latency_ms is not None and not (math.isfinite(change.latency_ms) and change.latency_ms >= 0):
            raise InvalidTopology(f"link {change.u!r}-{change.v!r}: latency {change.latency_ms!r} ms",
                                  hint="latency must be finite and >= 0")
        for li in links:
            self._lup[li] = change.up
            if change.latency_ms is not None:
                self._lat[li] = max(MIN_LINK_LATENCY_MS, float(change.latency_ms))
            self._links[li] = replace(self._links[li], up=change.up, latency_ms=self._lat[li],
                                      latency_source=self._links[li].latency_source
                                      if change.latency_ms is None else "given")
        self._topo_dirty = True
        return {p}

    def apply(self, changes: Change | Iterable[Change]) -> UpdateStats:
        """Apply one change or a batch, then update every cached tree (incrementally when small)."""
        batch = [changes] if isinstance(changes, (LinkChange, NodeChange)) else list(changes)
        old: dict[int, float] = {}
        for change in batch:
            for p in self._stage(change):
                old.setdefault(p, self._wlist[int(self._pos_ab[p])])
        new = {p: self._pair_weight(p) for p in old}
        up = [(p, new[p]) for p in old if new[p] > old[p]]
        down = [(p, new[p]) for p in old if new[p] < old[p]]
        self._topo_dirty = True
        inc = full = touched = 0
        # phase 1: weights up, against the matrix with only those raised;
        # phase 2: weights down, from the then exact distances
        for pairs, repair in ((up, self._raise), (down, self._lower)):
            for p, w in pairs:
                self._set_pair(p, w)
            if not pairs:
                continue
            for s, (dist, pred) in list(self._trees.items()):
                k = repair(dist, pred, pairs)
                if k < 0:  # the change touched too much: a full run is cheaper
                    self._trees[s] = self._full(s)
                    full += 1
                else:
                    inc += 1
                    touched += k
        log.debug("routing table %s: %d changes, %d pairs up, %d down; %d trees incremental, %d full",
                  self.name, len(batch), len(up), len(down), inc, full)
        return UpdateStats(inc, full, touched)

    def _raise(self, dist: np.ndarray, pred: np.ndarray, raised: list[tuple[int, float]]) -> int:
        """Repair a tree after weights went up. Returns nodes touched, or -1 to ask for a full run."""
        indptr, indices, wl = self._indptr, self._indices, self._wlist
        pa, pb = self._pa, self._pb
        roots = []
        for p, _ in raised:
            a, b = int(pa[p]), int(pb[p])
            if pred[b] == a:
                roots.append(b)
            elif pred[a] == b:
                roots.append(a)
        if not roots:
            return 0
        sub: set[int] = set()
        stack = roots
        limit = self._limit
        while stack:
            x = stack.pop()
            if x in sub:
                continue
            sub.add(x)
            if len(sub) > limit:
                return -1
            for j in range(indptr[x], indptr[x + 1]):
                y = indices[j]
                if pred[y] == x:
                    stack.append(y)
        for x in sub:
            dist[x] = INF
            pred[x] = _NO_PRED
        heap: list[tuple[float, int]] = []
        for x in sub:
            best, bp = INF, _NO_PRED
            for j in range(indptr[x], indptr[x + 1]):
                y = indices[j]
                if y not in sub:
                    d = dist[y] + wl[j]
                    if d < best:
                        best, bp = d, y
            if best < INF:
                dist[x] = best
                pred[x] = bp
                heap.append((best, x))
        heapq.heapify(heap)
        while heap:
            d, x = heapq.heappop(heap)
            if d > dist[x]:
                continue
            for j in range(indptr[x], indptr[x + 1]):
                y = indices[j]
                if y in sub:
                    nd = d + wl[j]
                    if nd < dist[y]:
                        dist[y] = nd
                        pred[y] = x
                        heapq.heappush(heap, (nd, y))
        return len(sub)

    def _lower(self, dist: np.ndarray, pred: np.ndarray, lowered: list[tuple[int, float]]) -> int:
        """Propagate improvements after weights went down. Returns nodes touched, or -1 for a full run."""
        indptr, indices, wl = self._indptr, self._indices, self._wlist
        heap: list[tuple[float, int]] = []
        for p, w in lowered:
            a, b = int(self._pa[p]), int(self._pb[p])
            for x, y in ((a, b), (b, a)):
                nd = dist[x] + w
                if nd < dist[y]:
                    dist[y] = nd
                    pred[y] = x
                    heap.append((nd, y))
        heapq.heapify(heap)
        settled = 0
        limit = self._limit
        while heap:
            d, x = heapq.heappop(heap)
            if d > dist[x]:
                continue
            settled += 1
            if settled > limit:
                return -1
            for j in range(indptr[x], indptr[x + 1]):
                y = indices[j]
                nd = d + wl[j]
                if nd < dist[y]:
                    dist[y] = nd
                    pred[y] = x
                    heapq.heappush(heap, (nd, y))
        return settled


#: the name the issue uses for the same thing
ShortestPaths = RoutingTable
