"""An engine's place in a multi-domain market: its flooding peer, its domain speaker, its handovers.

``EngineLink(engine, federation, domain, key)`` attaches to a running ``Engine`` (``start``) and
runs three threads beside it:

- **the peer** (asyncio): a ``PeerNode`` with node id = the domain, listening where the federation
  says and dialling the neighbour domains numbered above its own (one circuit per pair, no
  duplicate to drop; a restarted engine is redialled within ``backoff_max``, 1 s); only
  neighbours may form an adjacency (``allowed_peers``). Its ``PeerListener`` is this link: LSAs
  installed from a neighbour go to the bridge; adjacencies and domain messages go to the
  ``DomainSpeaker``, whose timers it ticks every 50 ms;
- **the bridge**: hands each flooded LSA to ``engine.submit_lsa(flood=False)`` (the registry checks
  of ``intake``: only a registered, eligible provider's LSA is matched or shown), and advertises
  the engine's own capacity (``engine.capacities()``) through the speaker when it changed: at once
  after an LSA (its provider's availability may have moved), else every 0.2 s (leases bound or
  ended by the engine);
- **handovers**: takes the orders ``Ownership`` decided to hand over and posts each, signed
  (``session.sign_handover``), to the target engine's ``POST /v1/handovers``; the answer (taken,
  refused with a reason, unreachable) goes back to ``Ownership``.

The engine's own LSAs (posted by agents over HTTP) reach the peer through
``engine.intake.on_installed`` → ``PeerNode.inject``; at start, every LSA the engine restored is
injected too, so a restarted engine floods what it kept. ``receive_handover`` is the other
side of a handover, called by the API: it checks the signature and the sender's domain
(``session.check_handover``), fetches from the sender the artifacts the order names that this
engine lacks (``mirror``: its providers fetch them here), then ``engine.accept_handover``.
``fetch_artifact`` answers an artifact miss at this engine's API from the other engines.

Invariants: the engine is only entered through its public calls and under its lock (each of them
takes it); the router only through the speaker's lock; a refused OPEN, UPDATE or handover is
counted under its reason (``status()``, and Prometheus through the API) and logged.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter
from typing import Any, Callable

import httpx

from marketplace.chain.market import Market
from marketplace.engine.errors import HandoverRefused
from marketplace.engine.ownership import Handover
from marketplace.engine.orders import hexbytes
from marketplace.engine.spec import Spec, spec_digest
from marketplace.errors import ConaError, InputError
from marketplace.federation.config import Federation
from marketplace.federation.mirror import ArtifactMirror
from marketplace.federation.session import check_handover, sign_handover
from marketplace.federation.speaker import DomainSpeaker
from marketplace.peering.node import PeerConfig, PeerNode
from marketplace.peering.wire import DomainOpen, DomainUpdate

log = logging.getLogger(__name__)

TICK_S = 0.05
ADVERTISE_S = 0.2
HANDOVER_TIMEOUT_S = 3.0
#: a positive ``orchestrators(addr)`` answer is kept this long (revocations go through the timelock)
ORCHESTRATOR_TTL_S = 60.0


class EngineLink:
    """See the module docstring."""

    def __init__(self, engine: Any, fed: Federation, domain: int, key: bytes, market: Market, *,
                 post: Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]] | None = None) -> None:
        """``post(url, body) -> (status, json)`` sends a handover (default: HTTP with ``httpx``)."""
        self.engine, self.fed, self.domain, self.key, self.market = engine, fed, domain, key, market
        self.post = post or self._http_post
        entry = fed.entry(domain)
        neighbours = fed.neighbours(domain)
        knobs = {k: v for k, v in fed.timers.items() if k in PeerConfig.__dataclass_fields__}
        max_age = int(engine.config.lsa_max_age)
        self.node = PeerNode(PeerConfig(
            node_id=domain, listen_port=entry.peer_port, listen_host=entry.peer_host,
            neighbors=tuple((fed.entry(n).peer_host, fed.entry(n).peer_port) for n in sorted(neighbours) if n > domain),
            allowed_peers=tuple(sorted(neighbours)), max_age=max_age, refresh_interval=max_age / 2,
            **{"backoff_max": 1.0, **knobs}), listener=self)
        self.speaker = DomainSpeaker(domain, fed, key=key, send=self.node.send_to, close=self.node.close_circuit,
                                     is_orchestrator=self._is_orchestrator)
        self.counters: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self._lsas: queue.Queue[bytes] = queue.Queue()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._threads: list[threading.Thread] = []
        self._orchestrators: dict[str, float] = {}
        self._advertised: list[Any] | None = None
        self._http = httpx.Client(timeout=HANDOVER_TIMEOUT_S)
        self.mirror = ArtifactMirror(engine.artifact_store, fed, domain)

    # -- lifecycle

    def start(self, timeout: float = 10.0) -> "EngineLink":
        for name, target in (("peer", self._run_peer), ("bridge", self._bridge), ("handover", self._handovers)):
            t = threading.Thread(target=target, name=f"cona-{name}-{self.domain}", daemon=True)
            t.start()
            self._threads.append(t)
        if not self._ready.wait(timeout):
            self.stop()
            raise ConaError(f"domain {self.domain}: the flooding peer did not listen within {timeout:.0f} s",
                            hint="is its port in use?")
        self.engine.federation = self
        self.engine.ownership.routes = self.speaker.routes
        self.engine.intake.on_installed = self._installed_here
        with self.engine.lock:
            kept = [self.engine.lsdb.raw(lsa.key) for lsa in self.engine.lsdb]
        for raw in kept:
            self.node.inject(raw)
        log.info("domain %d: linked (peer on %s:%d, %d LSAs kept, neighbours %s)", self.domain,
                 self.node.config.listen_host, self.node.config.listen_port, len(kept),
                 sorted(self.fed.neighbours(self.domain)))
        return self

    def stop(self) -> None:
        self._stop.set()
        self.engine.intake.on_installed = None
        self.engine.ownership.routes = None
        self.engine.federation = None
        for t in self._threads:
            t.join(timeout=5.0)
        self._threads = []
        self._http.close()
        self.mirror.close()

    def _run_peer(self) -> None:
        try:
            asyncio.run(self._peer_main())
        except Exception:  # the engine serves on without peers; logged with the domain
            log.exception("domain %d: the flooding peer stopped", self.domain)
        finally:
            self._ready.set()

    async def _peer_main(self) -> None:
        await self.node.start()
        self._ready.set()
        try:
            while not self._stop.is_set():
                self.speaker.tick()
                await asyncio.sleep(TICK_S)
        finally:
            await self.node.close()

    def _installed_here(self, raw: bytes) -> None:
        """An agent's LSA the engine installed: flood it, and advertise the domain's capacity now."""
        self.node.inject(raw)
        self._lsas.put(b"")  # an empty item wakes the bridge to advertise at once

    # -- PeerListener (the node's thread)

    def lsa_installed(self, raw: bytes) -> None:
        self._lsas.put(raw)

    def adjacency_up(self, peer_id: int, circuit: str) -> None:
        self.speaker.adjacency_up(peer_id, circuit)

    def adjacency_down(self, peer_id: int, circuit: str) -> None:
        self.speaker.adjacency_down(peer_id, circuit)

    def domain_message(self, peer_id: int, circuit: str, msg: DomainOpen | DomainUpdate) -> None:
        self.speaker.domain_message(peer_id, circuit, msg)

    # -- the bridge

    def _bridge(self) -> None:
        next_advert = 0.0
        while not self._stop.is_set():
            try:
                raw = self._lsas.get(timeout=ADVERTISE_S / 2)
            except queue.Empty:
                raw = None
            try:
                if raw:
                    res = self.engine.submit_lsa(raw, flood=False)
                    self.counters[f"flooded_lsa_{res.outcome.value}"] += 1
                if raw is not None or time.monotonic() >= next_advert:
                    next_advert = time.monotonic() + ADVERTISE_S
                    self._advertise()
            except Exception:  # one bad LSA or turn must not stop the bridge
                self.counters["bridge_errors"] += 1
                log.exception("domain %d: bridge turn failed", self.domain)

    def _advertise(self) -> None:
        caps = self.engine.capacities()
        if caps != self._advertised:
            self._advertised = caps
            self.speaker.originate(caps)

    # -- handovers out

    def _handovers(self) -> None:
        jobs = self.engine.ownership.jobs
        while not self._stop.is_set():
            try:
                job = jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                outcome = self._post(job)
            except Exception as exc:  # never lose the order: it comes back to this engine
                log.exception("domain %d: handover of order %d failed", self.domain, job.order)
                outcome = f"error:{type(exc).__name__}"
            with self.engine.lock:
                if outcome is None:
                    self.engine.ownership.handed_over(job.order, job.domain)
                else:
                    self.engine.ownership.handover_failed(job.order, job.domain, outcome)
            self.engine.wake.set()

    def _post(self, job: Handover) -> str | None:
        """None when the target took the order, else why not."""
        target = self.fed.entry(job.domain)
        signed = sign_handover(self.key, self.fed, order=job.order, spec_digest=spec_digest(job.spec),
                               sender=self.domain, receiver=job.domain, now=time.time())
        try:
            status, answer = self.post(f"{target.api}/v1/handovers", {**signed, "spec": job.spec})
        except httpx.HTTPError as exc:
            log.warning("domain %d: domain %d's engine unreachable for order %d: %s", self.domain, job.domain,
                        job.order, exc)
            return "unreachable"
        if status < 300:
            return None
        reason = str(answer.get("reason") or status)
        log.info("domain %d: domain %d refused order %d: %s", self.domain, job.domain, job.order, reason)
        return reason

    def _http_post(self, url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        resp = self._http.post(url, json=body)
        try:
            doc = resp.json()
        except ValueError:
            doc = {}
        return resp.status_code, doc if isinstance(doc, dict) else {}

    # -- handovers in (the API's thread)

    def receive_handover(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InputError("a handover is an object", field="body")
        fields = {}
        for name in ("order", "from_domain", "to_domain", "timestamp"):
            v = body.get(name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InputError(f"{name} must be an integer >= 0", field=name)
            fields[name] = v
        spec = body.get("spec")
        if not isinstance(spec, dict):
            raise InputError("spec must be the order's document", field="spec")
        reason = check_handover(fed=self.fed, order=fields["order"], spec_digest=spec_digest(spec),
                                sender=fields["from_domain"], receiver=fields["to_domain"],
                                timestamp=fields["timestamp"], signature=hexbytes(body.get("signature", ""), "signature"),
                                me=self.domain, now=time.time(), is_orchestrator=self._is_orchestrator)
        if reason is not None:
            self.rejected[f"handover:{reason}"] += 1
            log.warning("domain %d: handover of order %d claimed from domain %d refused: %s", self.domain,
                        fields["order"], fields["from_domain"], reason)
            raise HandoverRefused(f"handover refused: {reason}", reason=reason, field="signature")
        # the order's artifacts follow it: this domain's providers fetch them from this engine
        refs = Spec.from_dict(spec, modules=self.engine.modules).artifacts()
        self.mirror.for_refs(((r.digest, r.kind) for r in refs), fields["from_domain"])
        return self.engine.accept_handover(fields["order"], spec, fields["from_domain"])

    # -- results of orders another domain served (the API's thread)

    def fetch_result(self, order_id: int) -> bytes | None:
        """The result bytes of ``order_id`` from the engine of its provider's domain (None: not there);
        the caller keeps them only if they hash to the result on chain."""
        order = self.market.order(order_id)
        domain = self.market.registry.provider(order.provider).domain
        entry = self.fed.domains.get(domain)
        if entry is None or domain == self.domain:
            return None
        try:
            resp = self._http.get(f"{entry.api}/v1/orders/{order_id}/result")
        except httpx.HTTPError as exc:
            log.warning("domain %d: result of order %d not fetched from domain %d: %s", self.domain, order_id,
                        domain, exc)
            return None
        if resp.status_code != 200:
            return None
        self.counters["results_fetched"] += 1
        return resp.content

    def fetch_artifact(self, digest: str) -> Any:
        """An artifact this engine lacks, from the first other engine that has it (checked and kept
        here by the mirror; None: nobody had it)."""
        return self.mirror.fetch(digest, None, sorted(self.fed.domains))

    def _is_orchestrator(self, address: str) -> bool:
        if time.monotonic() < self._orchestrators.get(address, 0.0):
            return True
        try:
            ok = bool(self.market.is_orchestrator(address))
        except ConaError as exc:
            log.warning("domain %d: cannot ask the chain whether %s is an orchestrator: %s", self.domain, address, exc)
            return False
        if ok:
            self._orchestrators[address] = time.monotonic() + ORCHESTRATOR_TTL_S
        return ok

    # -- views

    def status(self) -> dict[str, Any]:
        out = self.speaker.status()
        out["peering"] = self._node_status()
        out["engines"] = {str(d): e.api for d, e in sorted(self.fed.domains.items())}
        out["home"] = self.fed.entry(self.domain).home
        out["bridge"] = dict(self.counters)
        out["artifacts"] = dict(self.mirror.counters)
        out["rejected"] = {**out["rejected"], **self.rejected}
        with self.engine.lock:
            out["ownership"] = self.engine.ownership.status()
        return out

    def _node_status(self) -> dict[str, Any]:
        loop = self.node.loop
        if loop is None or loop.is_closed():
            return {}

        async def read() -> dict[str, Any]:
            return self.node.status()

        try:
            return asyncio.run_coroutine_threadsafe(read(), loop).result(timeout=1.0)
        except Exception:  # the loop is stopping
            return {}


def member_config(fed: Federation, domain: int, base: Any) -> Any:
    """The ``EngineConfig`` of domain ``domain``'s engine: ``base`` with its domain, home node, and the
    ``balanced`` matching policy (spread by advertised load and path latency)."""
    from dataclasses import replace

    from marketplace.matching import MatchingConfig

    entry = fed.entry(domain)
    matching = base.matching if base.matching.policy != "default" else MatchingConfig(policy="balanced")
    return replace(base, domain=domain, home=entry.home, matching=matching)
