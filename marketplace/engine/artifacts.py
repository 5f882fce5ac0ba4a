"""The engine's side of artifacts: an order's artifacts checked before escrow moves, what its workload
needs of a provider, and which artifacts live orders keep from expiring.

``check_spec(spec, serviceable=...)`` runs when an order document arrives, before the order is
placed on chain (``OrderDesk.spec``): every artifact it names must be in the store
(``ArtifactRejected`` naming the spec field otherwise) and of the kind its place needs (a module
uploaded as ``wasm``, an image as ``oci``); a deterministic order may not name a module that
imports a clock or randomness (the agent's own rule, ``provider_agent.runtime.wasm.check_imports``).
With ``serviceable`` (an order the engine itself will place, so no escrow has moved yet) an order
whose workload no provider in the market advertises a runtime for is refused too (``NotServed``),
with what the providers do offer: one clear error before money moves. An order already on chain
(the buyer's own transaction) is accepted and waits: the matcher's ``RuntimeSupport`` filter never
assigns it to a provider that cannot run it, and ``explain`` says why.

``need_of(spec)``: the matcher's ``WorkloadNeed`` of a spec, with its image archive's architectures
from the store (kept per spec digest: a spec and its artifacts never change).

``maybe_sweep(now)``: at most every ``sweep_every`` seconds, expire the artifacts no live order names
(the artifacts of every order not final, and the output files its result's manifest lists).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from marketplace.artifacts import ArtifactRejected, ArtifactStore
from marketplace.engine.errors import NotServed
from marketplace.engine.orders import OrderRecord
from marketplace.engine.spec import Spec
from marketplace.engine.store import EngineStore
from marketplace.engine.workload import ContainerWorkload, WasmWorkload
from marketplace.errors import NotFound
from marketplace.matching import Provider
from marketplace.resources.runtimes import WorkloadNeed, unmet
from marketplace.results import parse_result

log = logging.getLogger(__name__)

#: where a reason ``unmet`` gives points in the order document
REASON_FIELD = {"program": "spec.workload.program", "image": "spec.workload.image", "platform": "spec.workload.image",
                "network": "spec.workload.network", "devices": "spec.requirement.device_class",
                "wasm-modules": "spec.workload.module", "nondeterministic": "spec.workload.deterministic"}


class ArtifactDesk:
    """See the module docstring. ``providers``: the matcher's providers by address (what they advertise);
    ``results``: the engine's stored result bytes (their manifests name output files)."""

    def __init__(self, store: ArtifactStore, *, orders: dict[int, OrderRecord], specs: dict[bytes, Spec],
                 providers: Callable[[], dict[str, Provider]], results: EngineStore, lock: threading.RLock,
                 sweep_every: float = 60.0) -> None:
        self.store = store
        self.orders = orders
        self.specs = specs
        self.providers = providers
        self.results = results
        self.lock = lock
        self.sweep_every = sweep_every
        self._needs: dict[bytes, WorkloadNeed | None] = {}
        self._outputs: dict[int, tuple[str, ...]] = {}
        self._swept_at = float("-inf")

    # -- orders in

    def check_spec(self, spec: Spec, *, serviceable: bool) -> None:
        for ref in spec.artifacts():
            try:
                info = self.store.info(ref.digest, ref.field)
            except NotFound:
                raise ArtifactRejected(f"no artifact {ref.digest} in this market", field=ref.field,
                                       hint="upload it first: `cona artifact put FILE` (POST /v1/artifacts)") from None
            if ref.kind is not None and ref.kind not in info.kinds:
                raise ArtifactRejected(f"{ref.digest} was uploaded as {' and '.join(info.kinds)}, not as {ref.kind}",
                                       field=ref.field, hint=f"upload it with kind {ref.kind}")
        wl = spec.workload
        if isinstance(wl, WasmWorkload) and wl.buyer_module:
            self._check_determinism(wl)
        if serviceable:
            self._check_served(spec)

    def _check_determinism(self, wl: WasmWorkload) -> None:
        from provider_agent.runtime.wasm import WorkloadRejected, check_imports

        facts = self.store.info(wl.module).facts.get("wasm", {})
        imports = [tuple(i.split(".", 1)) for i in facts.get("imports", [])]
        try:
            check_imports(imports, wl.deterministic)
        except WorkloadRejected as exc:
            raise ArtifactRejected(exc.message, field="spec.workload.deterministic", hint=exc.hint) from None

    def _check_served(self, spec: Spec) -> None:
        need = self.need_of(spec)
        if need is None or need.trivial:
            return
        with self.lock:
            offers = [p.runtimes for p in self.providers().values()]
        reasons = [unmet(o, need) for o in offers]
        if any(not r for r in reasons):
            return
        # what is missing, most specific first: a provider that runs the runtime but not this image says more
        # than one that runs no containers at all
        counts: dict[tuple[str, str], int] = {}
        for r in reasons:
            for pair in r:
                counts[pair] = counts.get(pair, 0) + 1
        ranked = sorted(counts, key=lambda p: (p[0] == "runtime", -counts[p], p))
        first = ranked[0][0] if ranked else "runtime"
        shown = "; ".join(f"{m} ({counts[(c, m)]})" for c, m in ranked[:3]) or "there are no providers"
        raise NotServed(f"no provider in this market runs this workload ({len(offers)} provider(s)): {shown}",
                        field=REASON_FIELD.get(first, "spec.workload.runtime"),
                        hint="`cona providers --json` lists what each provider runs")

    def need_of(self, spec: Spec) -> WorkloadNeed | None:
        """The matcher's need of ``spec`` (its archive's architectures from the store)."""
        d = spec.digest()
        if d not in self._needs:
            arches: tuple[str, ...] = ()
            wl = spec.workload
            if isinstance(wl, ContainerWorkload) and wl.archive:
                info = self.store.get(wl.image)
                arches = tuple((info.facts.get("oci") or {}).get("arches", ())) if info is not None else ()
            self._needs[d] = spec.need(arches)
        return self._needs[d]

    # -- expiry

    def pinned(self) -> set[str]:
        """Every artifact a live order names: its spec's, and its result's output files."""
        out: set[str] = set()
        for rec in list(self.orders.values()):
            if rec.state.final:
                self._outputs.pop(rec.id, None)
                continue
            spec = self.specs.get(rec.spec_digest)
            if spec is not None:
                out.update(ref.digest for ref in spec.artifacts())
            out.update(self._output_files(rec.id))
        return out

    def _output_files(self, order_id: int) -> tuple[str, ...]:
        if order_id not in self._outputs:
            blob = self.results.result(order_id)
            if blob is None:
                return ()  # not uploaded yet: asked again at the next sweep
            rec = parse_result(blob)
            self._outputs[order_id] = tuple("sha256:" + f.sha256.hex() for f in rec.files) if rec else ()
        return self._outputs[order_id]

    def maybe_sweep(self, now: float) -> list[str]:
        if now - self._swept_at < self.sweep_every:
            return []
        self._swept_at = now
        return self.store.sweep(self.pinned())
