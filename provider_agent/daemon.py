"""The provider daemon (``cona-agent run``): advertise, heartbeat, serve leases, get paid.

One process, three activities:
- a heartbeat thread signs and posts a heartbeat every ``heartbeat_interval`` seconds,
  listing the leases it is running, so the engine notices a dead provider within
  ``miss_limit x interval`` seconds (``marketplace.convergence.heartbeat``);
- the LSA: a signed Compute LSA is posted on start, on every change of availability (a
  lease starting or ending changes ``free_milli``; each instance has a new sequence
  number, persisted in the journal so a restart never reuses one), and before expiry
  (``Originator.refresh_due``: at 3/4 of the lifetime). An instance the engine did not take
  is sent again: "too-soon" (its MinLSArrival of 1 s; a lease shorter than that would
  otherwise leave the engine showing the node busy until the next refresh) after 1 s, a
  refusal after 30 s, an unreachable engine after 5 s; a heartbeat refused with "unknown-provider"
  (an engine that restarted without our LSA) makes the main loop advertise at once;
- the lease loop polls the market's logs from its journaled cursor for ``Assigned``,
  ``AcceptanceTimedOut`` and ``OrderFailed`` events that name this provider (the latter
  two hand an order to the next backup), then advances every open lease one step.

A lease: ``seen`` -> (spec fetched and checked against the order's on-chain requirement
digest, its artifacts fetched and checked) ``spec`` -> ``accepted`` (before the acceptance
deadline) -> ``ran`` (the workload on the workbench; result bytes and output files stored
content-addressed) -> ``completed`` (result hash and usage on chain) -> ``uploaded`` (output
files as artifacts, then the result bytes, to the engine) -> ``settled`` (after the dispute
window; anyone may settle, we do). Earnings are withdrawn every ``withdraw_every`` seconds.

Crash safety (invariants):
- the chain is the truth and the journal our memory: each step first reads the order on
  chain and acts only on what the chain says is still to do (an order that is already
  ``Running`` is never accepted again, a ``Completed`` one never completed again);
- every chain write carries an idempotency key derived from (order, step, the chain's own
  timestamps of that attempt), kept by the writer's journal in the state directory, so a
  write interrupted between signing and journaling is re-sent as the very same bytes;
- result bytes are durable before ``complete`` is sent, so a completed result is never lost;
- re-running a workload after a crash gives the same bytes and the same fuel (the runtime
  is deterministic), so a crash before ``ran`` costs time, not correctness.

Work (``provider_agent.work``): before accepting, the agent checks the order document against
what it advertises, fetches every artifact it names by digest (kept only when its bytes hash to
it), compiles a buyer's module or loads an image; then the workbench runs it (wasm, a container,
a native program), its output files are kept content-addressed and uploaded as artifacts with the
result bytes; usage is billed from fuel (wasm), CPU time (native) or wall time (containers). A
native or container run is not reproducible, so a crash before ``ran`` re-runs it and commits
whatever that second run gives.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address

from marketplace.chain.lifecycle import HANDOVERS
from marketplace.chain.market import MarketTerms, Order, OrderState, ProviderStatus
from marketplace.client import ApiClient, ApiUnreachable
from marketplace.convergence.heartbeat import sign as sign_heartbeat
from marketplace.artifacts.kinds import Kind
from marketplace.artifacts.transfer import upload as upload_artifact
from marketplace.convergence.errors import LsaEncodeError
from marketplace.convergence.lsa import Availability, LsaContent, encode_lsa
from marketplace.convergence.lsdb import Originator
from marketplace.engine.spec import Spec
from marketplace.errors import AgentError, ChainError, ConaError, InputError, Rejected, TransactionReverted
from marketplace.resources.model import DeviceClass, NodeDescriptor
from provider_agent.account import Account, attachment_digest, fetch_deployment, load_deployment_file
from provider_agent.journal import Journal, Lease
from provider_agent.runtime.cdi import DevicePool, read_specs
from provider_agent.runtime.container import ContainerConfig, ContainerLimits, ContainerRuntime
from provider_agent.runtime.native import NativeLimits, NativeProgram, NativeRuntime, allowlist
from provider_agent.runtime.wasm import WasmRuntime
from provider_agent.runtime.workbench import Workbench
from provider_agent.work import (FUEL_PER_UNIT_SECOND, WASM_MODULES, ArtifactCache, Ceilings, Planner, SpecError,
                                 check_spec, describe, offer_of, result_bytes, usage_for)

log = logging.getLogger(__name__)

WATCHED = ("Assigned", *HANDOVERS)
#: test hook: ``after:<step>`` or ``before:<step>`` SIGKILLs the agent at that point of any lease,
#: so crash recovery is tested with a real kill at an exact place (never set in production)
CRASH_ENV = "CONA_AGENT_CRASH_AT"
LOG_CHUNK = 5_000
#: outcomes of ``POST /v1/lsas`` that mean the engine holds this instance (or an equal one)
LSA_TAKEN = ("installed", "duplicate")
#: resend delays: after "too-soon" (the engine's MinLSArrival is 1 s), after an unreachable engine,
#: and after a refusal (e.g. while paused: not eligible; every resend costs a sequence number)
LSA_RETRY_TOO_SOON = 1.0
LSA_RETRY_AWAY = 5.0
LSA_RETRY_REFUSED = 30.0
#: the reasons the engine gives for refusing a heartbeat of a provider whose LSA it does not hold
#: ("unknown-provider" since the engine persists its LSDB; earlier engines said "unknown-originator")
UNKNOWN_PROVIDER = ("unknown-provider", "unknown-originator")


__all__ = ["FUEL_PER_UNIT_SECOND", "WASM_MODULES", "Agent", "AgentConfig", "SpecError", "check_spec", "result_bytes",
           "usage_for"]


@dataclass(frozen=True, slots=True)
class AgentConfig:
    engine: str
    rpc_url: str
    attachment: str
    domain: int
    prices: tuple[int, ...]
    state_dir: Path
    stake: int | None = None
    heartbeat_interval: float = 1.0
    poll_interval: float = 0.25
    lsa_lifetime: int = 3600
    withdraw_every: float = 60.0
    deployment_file: Path | None = None
    max_wall_seconds: float = 600.0
    engine_wait: float = 60.0
    #: the native runtime's allowlist (empty: not opted in) and its per-run ceilings
    native_programs: tuple[NativeProgram, ...] = ()
    native_limits: NativeLimits = NativeLimits()
    containers: ContainerConfig | None = None  # the container runtime (None: not opted in), its ceilings:
    container_limits: ContainerLimits = ContainerLimits()
    #: buyers' wasm modules run besides the shipped ones: all, deterministic (no clocks), shipped (none)
    wasm_modules: str = "all"

    def __post_init__(self) -> None:
        if self.wasm_modules not in WASM_MODULES:
            raise InputError(f"--wasm-modules must be one of {', '.join(WASM_MODULES)}", field="wasm_modules")


class Agent:
    def __init__(self, cfg: AgentConfig, key: bytes, descriptor: NodeDescriptor) -> None:
        self.cfg = cfg
        self.key = key
        self.descriptor = descriptor
        self.journal = Journal(cfg.state_dir)
        self.api = ApiClient(cfg.engine, timeout=10.0, unreachable_hint="is the engine running?")
        dep = load_deployment_file(cfg.deployment_file) if cfg.deployment_file else self._wait_deployment()
        self.acct = Account.open(rpc_url=cfg.rpc_url, key=key, deployment=dep,
                                 journal_path=Path(cfg.state_dir) / "writer.jsonl")
        self.me = self.acct.address
        self.market = self.acct.market
        self.terms: dict[int, MarketTerms] = {}  # an order's terms version never changes: read each once
        self.originator = Originator(key, time.time, max_age=cfg.lsa_lifetime,
                                     sequence=int(self.journal.meta("lsa_sequence", 0)))
        self.runs: dict[int, Future] = {}
        self.busy: dict[int, tuple[int, int]] = {}  # order -> (device class, units) while running
        self._advertised: tuple | None = None
        self._lsa_retry_at = 0.0
        #: set by the heartbeat thread when the engine answers "unknown provider"; the main loop
        #: (which owns the originator) then advertises at once, and ``wake`` cuts its sleep short
        self._readvertise = threading.Event()
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self._hb_seq = 0
        self._retry_at: dict[tuple[int, str], float] = {}
        self._last_withdraw = time.monotonic()
        self._crash_at = os.environ.get(CRASH_ENV, "")
        self.workbench, self.planner = self._workbench(cfg)
        log.info("agent %s on chain %d, state %s, runs %s", self.me, dep.chain_id, cfg.state_dir,
                 ", ".join(self.offer.runtimes))

    # -- setup -------------------------------------------------------------------------

    def _workbench(self, cfg: AgentConfig) -> tuple[Workbench, Planner]:
        """Every runtime the provider opted into behind one call, what it advertises, and the planner."""
        programs = allowlist(cfg.native_programs)
        native = NativeRuntime(Path(cfg.state_dir) / "native") if programs else None
        devices = DevicePool(read_specs()) if cfg.containers is not None else None
        bench = Workbench(WasmRuntime(Path(cfg.state_dir) / "wasm"), native,
                          cfg.containers and ContainerRuntime(cfg.containers), devices)
        self.offer = offer_of(cfg.wasm_modules, tuple(programs), cfg.containers, devices)
        try:  # an offer too large for one LSA is refused here, at start, not at the first advertisement
            encode_lsa(self._content(self.availability()), sequence=1, lifetime=1, key=self.key)
        except LsaEncodeError as exc:
            bench.close()
            raise AgentError(f"what this agent offers does not fit one Compute LSA: {exc.message}",
                             hint="offer fewer native programs or registry images") from None
        planner = Planner(bench, ArtifactCache(Path(cfg.state_dir) / "artifacts"), self.api, self.offer, programs,
                          Ceilings(cfg.native_limits, cfg.container_limits, cfg.max_wall_seconds))
        return bench, planner

    def _wait_deployment(self):
        deadline = time.monotonic() + self.cfg.engine_wait
        while True:
            try:
                return fetch_deployment(self.cfg.engine)
            except ConaError as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("waiting for the engine: %s", exc)
                time.sleep(1.0)

    def ensure_registered(self) -> None:
        info = self.acct.registry.provider(self.me)
        hw = self.descriptor.digest()
        meta = attachment_digest(self.cfg.attachment)
        if info.status == ProviderStatus.NONE:
            if self.cfg.stake is None:
                raise AgentError(f"{self.me} is not registered", hint="pass --stake WEI to register on start")
            tx = self.acct.registry.register(self.acct.signer, hardware=hw, domain=self.cfg.domain,
                                             prices=list(self.cfg.prices), stake=self.cfg.stake, metadata=meta)
            log.info("registered %s hardware 0x%s stake %d (tx %s)", self.me, hw.hex(), self.cfg.stake, tx.tx_hash)
            return
        if (info.hardware, info.domain, info.prices, info.metadata) != (hw, self.cfg.domain, self.cfg.prices, meta):
            try:
                self.acct.registry.update(self.acct.signer, hardware=hw, domain=self.cfg.domain,
                                          prices=list(self.cfg.prices), metadata=meta)
                log.info("updated %s's registration to hardware 0x%s", self.me, hw.hex())
            except TransactionReverted as exc:
                log.warning("could not update %s's registration: %s", self.me, exc)
        if info.status != ProviderStatus.ACTIVE:
            log.warning("provider %s is %s: no new leases will come", self.me, info.status.name.lower())

    def close(self) -> None:
        self.stop.set()
        self.wake.set()
        self.workbench.close()
        self.api.close()
        self.acct.close()
        self.journal.close()

    def _crash(self, where: str) -> None:
        if self._crash_at == where:
            log.warning("%s=%s: killing myself", CRASH_ENV, where)
            os.kill(os.getpid(), signal.SIGKILL)

    def _record(self, order: int, step: str, **data: Any) -> Lease:
        self._crash(f"before:{step}")
        lease = self.journal.record(order, step, **data)
        self._crash(f"after:{step}")
        if lease.finished:
            self._forget(lease)
        return lease

    def _forget(self, lease: Lease) -> None:
        """A lease ended: the artifacts it fetched and the outputs it kept leave the cache (the market
        holds them), unless an open lease uses them too."""
        def used(one: Lease) -> set[str]:
            raw = one.data("spec").get("spec")
            try:
                spec = Spec.from_dict(raw) if raw is not None else None
            except ConaError:
                spec = None
            return self.planner.artifacts_of(spec, one.data("ran"))

        keep = set().union(*(used(other) for other in self.journal.open_leases()))
        self.planner.cache.drop(used(lease) - keep)

    # -- advertising -------------------------------------------------------------------

    def availability(self) -> tuple[Availability, ...]:
        with self._lock:
            busy = dict(self.busy)
        out = []
        for dc in sorted({d.device_class for d in self.descriptor.devices}):
            total = sum(d.count * d.share_milli for d in self.descriptor.of_class(dc))
            used = sum(units * 1000 for c, units in busy.values() if c == int(dc))
            free = max(0, total - used)
            load = min(10000, (total - free) * 10000 // total) if total else 0
            out.append(Availability(DeviceClass(dc), free, load))
        return tuple(out)

    def _content(self, avail: tuple[Availability, ...]) -> LsaContent:
        return LsaContent(self.descriptor, avail, tuple((DeviceClass(i + 1), p) for i, p in enumerate(self.cfg.prices)
                                                        if p), self.cfg.domain, self.cfg.attachment,
                          runtimes=self.offer)

    def advertise(self, force: bool = False) -> None:
        if self._readvertise.is_set():
            self._readvertise.clear()
            force = True
        avail = self.availability()
        if not force and avail == self._advertised and not self.originator.refresh_due():
            return
        if not force and time.monotonic() < self._lsa_retry_at:
            return  # the engine said "too soon" (or was away): resend once its interval has passed
        raw = self.originator.next(self._content(avail))
        self.journal.set_meta("lsa_sequence", self.originator.sequence)
        self._advertised = avail
        self._send_lsa(raw, avail)

    def _send_lsa(self, raw: bytes, avail: tuple[Availability, ...]) -> None:
        seq = self.originator.sequence
        try:
            answer = self.api.post_lsa(raw)
        except ApiUnreachable as exc:
            log.warning("LSA seq %d not delivered: %s", seq, exc)
            self._lsa_not_taken(LSA_RETRY_AWAY)
            return
        except ConaError as exc:  # a problem detail: refused (4xx), or the engine failed (5xx)
            log.warning("LSA seq %d not installed: %d rejected %s", seq, exc.http_status,
                        exc.fields.get("reason") or exc.message)
            self._lsa_not_taken(LSA_RETRY_REFUSED if exc.http_status < 500 else LSA_RETRY_AWAY)
            return
        log.info("LSA seq %d (%s) -> %s%s", seq, " ".join(f"{a.device_class.name}:{a.free_milli}" for a in avail),
                 answer.outcome, f" ({answer.reason})" if answer.reason else "")
        if answer.outcome in LSA_TAKEN:
            self._lsa_retry_at = 0.0
        elif answer.outcome == "too-soon":
            # RFC 2328 MinLSArrival: the engine dropped this instance without installing it, so it
            # still holds the previous one (e.g. "busy" after a lease that already ended); the
            # originator must send again once the interval has passed, or the engine keeps a
            # stale availability until the next refresh, 45 minutes later
            self._lsa_not_taken(LSA_RETRY_TOO_SOON)
        else:
            log.warning("LSA seq %d not installed: %s %s", seq, answer.outcome, answer.reason or "")
            self._lsa_not_taken(LSA_RETRY_REFUSED)

    def _lsa_not_taken(self, seconds: float) -> None:
        self._advertised = None
        self._lsa_retry_at = time.monotonic() + seconds

    def _heartbeats(self) -> None:
        while not self.stop.is_set():
            with self._lock:
                leases = sorted(self.busy)
            # sequences strictly increase across restarts too: milliseconds since the epoch
            self._hb_seq = max(self._hb_seq + 1, time.time_ns() // 1_000_000)
            hb = sign_heartbeat(self.key, sequence=self._hb_seq, timestamp=int(time.time()), leases=leases)
            try:
                self.api.post_heartbeat(hb.to_dict())
            except Rejected as exc:
                if exc.reason in UNKNOWN_PROVIDER:
                    # the engine holds no LSA of ours (it restarted, or our LSA aged out): an engine
                    # that does not know us never matches us, and declares our leases failed once
                    # its heartbeat bound passes; advertise again now, not at the next refresh
                    if not self._readvertise.is_set():
                        log.warning("heartbeat %d: the engine does not know %s; advertising again",
                                    self._hb_seq, self.me)
                    self._readvertise.set()
                    self.wake.set()
                else:
                    log.debug("heartbeat %d refused: %s", self._hb_seq, exc)
            except ConaError as exc:
                log.debug("heartbeat %d not delivered: %s", self._hb_seq, exc)
            self.stop.wait(self.cfg.heartbeat_interval)

    # -- chain watching ------------------------------------------------------------------

    def poll_chain(self) -> None:
        backend = self.acct.chain.backend
        latest = backend.block_number()
        start = int(self.journal.meta("next_block", self.acct.deployment.block))
        abi = self.market.contract.abi
        while start <= latest:
            end = min(latest, start + LOG_CHUNK - 1)
            raw = backend.request("eth_getLogs", [{
                "address": self.market.address, "fromBlock": hex(start), "toBlock": hex(end),
                "topics": [[abi.topic(name) for name in WATCHED]]}])
            for ev in self.market.contract.decode_logs(raw):
                who = ev.args.get("provider") if ev.name == "Assigned" else ev.args.get("next")
                if who is not None and to_checksum_address(who) == self.me:
                    order = int(ev.args["order"])
                    if self.journal.lease(order) is None:
                        self._record(order, "seen", event=ev.name, block=ev.block_number, tx=ev.tx_hash)
            self.journal.set_meta("next_block", end + 1)
            start = end + 1

    # -- leases ----------------------------------------------------------------------------

    def _due(self, order: int, what: str) -> bool:
        return time.monotonic() >= self._retry_at.get((order, what), 0.0)

    def _later(self, order: int, what: str, seconds: float) -> None:
        self._retry_at[(order, what)] = time.monotonic() + seconds

    def step_leases(self) -> None:
        for lease in self.journal.open_leases():
            try:
                self.advance(lease)
            except ChainError as exc:  # the chain, or the engine's API (ApiUnreachable), is away
                log.warning("lease %d: %s (will retry)", lease.order, exc)
                self._later(lease.order, "any", 1.0)

    def advance(self, lease: Lease) -> None:
        oid = lease.order
        if not self._due(oid, "any"):
            return
        o = self.market.order(oid)
        mine = o.provider == self.me
        ran = lease.data("ran")
        if mine and o.state in (OrderState.COMPLETED, OrderState.SETTLED, OrderState.DISPUTED,
                                OrderState.RESOLVED) and ran and o.result.hex() == ran["result_hash"][2:]:
            self._after_completion(lease, o)
            return
        if mine and o.state == OrderState.ASSIGNED:
            self._accept(lease, o)
            return
        if mine and o.state == OrderState.RUNNING:
            self._run_or_complete(lease, o)
            return
        # the chain moved the order away from us (timed out, failed over, cancelled, refunded)
        if oid in self.runs and not self.runs[oid].done():
            return  # let the run end first: the thread cannot be interrupted mid-module
        self._set_busy(oid, None)
        self._record(oid, "lost", state=o.state.name, provider=o.provider)

    def _accept(self, lease: Lease, o: Order) -> None:
        now = self.market.chain_time()
        if now > o.accept_deadline:
            log.warning("lease %d: acceptance deadline %d passed (chain time %d)", o.id, o.accept_deadline, now)
            self._later(o.id, "any", 2.0)
            return
        if not lease.has("spec"):
            if not self._due(o.id, "spec"):
                return
            try:
                spec = self.api.order_spec(o.id)
                self.planner.admit(self._check(spec, o), o)  # its artifacts fetched, checked, loaded
            except (ConaError, ValueError) as exc:
                # not accepting is the safe answer to a spec we cannot verify or run; retry until the deadline
                log.error("lease %d: %s", o.id, exc)
                self._later(o.id, "spec", 1.0 if isinstance(exc, ChainError) else 5.0)
                return
            lease = self._record(o.id, "spec", spec=spec)
        tx = self.market.accept(self.acct.signer, o.id, key=self._key(o, "accept", o.accept_deadline))
        self._record(o.id, "accepted", tx=tx.tx_hash, started_at=tx.event("Accepted").args["startedAt"])

    def _run_or_complete(self, lease: Lease, o: Order) -> None:
        if not lease.has("accepted"):  # accepted on chain, the journal line was lost in a crash
            self._record(o.id, "accepted", tx="", started_at=o.started_at, reconciled=True)
        if lease.has("ran"):
            ran = lease.data("ran")
            self.journal.result(ran["result_hash"])  # refuse to complete a result we could not upload
            # the contract caps usage at units x seconds elapsed since the lease started: a run that metered
            # more than that (a machine faster than the reference) is paid for the time it took
            usage = min(int(ran["usage"]), self.market.max_usage(o.id))
            tx = self.market.complete(self.acct.signer, o.id, bytes.fromhex(ran["result_hash"][2:]), usage,
                                      key=self._key(o, "complete", o.started_at))
            self._record(o.id, "completed", tx=tx.tx_hash)
            self._set_busy(o.id, None)
            return
        fut = self.runs.get(o.id)
        if fut is None:
            if not lease.has("spec"):  # accepted before the spec line was journaled cannot happen, but be safe
                spec = self.api.order_spec(o.id)
                self.planner.admit(self._check(spec, o), o)
                self._record(o.id, "spec", spec=spec)
                lease = self.journal.lease(o.id)
            spec = self._check(lease.data("spec")["spec"], o)
            self._set_busy(o.id, (o.device_class, o.units))
            work = self.planner.work(spec, o, max(1, o.duration - o.served))
            log.info("lease %d: running %s", o.id, describe(spec))
            self.runs[o.id] = self.workbench.submit(work)
            return
        if not fut.done():
            return
        del self.runs[o.id]
        blob, ran = self.planner.ran(fut.result(), o)  # output files durable before ``ran`` names them
        digest = self.journal.put_result(blob)
        if ran["status"] != "ok":
            log.warning("lease %d: workload stopped: %s %s; reporting it", o.id, ran["status"], ran["detail"])
        self._record(o.id, "ran", result_hash=digest, **ran)

    def _check(self, raw: Any, o: Order) -> Spec:
        return check_spec(raw, o, self.offer.programs, self.cfg.native_limits.cpu_seconds)

    def _after_completion(self, lease: Lease, o: Order) -> None:
        self._set_busy(o.id, None)
        if not lease.has("completed"):
            self._record(o.id, "completed", tx="", reconciled=True)
        if not lease.has("uploaded"):
            if not self._due(o.id, "upload"):
                return
            ran = lease.data("ran")
            blob = self.journal.result(ran["result_hash"])
            try:
                for digest in ran.get("files") or ():  # the files the committed manifest names, then the bytes
                    upload_artifact(self.api, self.acct.signer, self.planner.cache.path(digest), Kind.DATA,
                                    chain_id=self.acct.deployment.chain_id, market=self.market.address)
                stored = self.api.upload_result(o.id, blob)
            except ApiUnreachable as exc:
                log.warning("lease %d: result upload failed: %s", o.id, exc)
                self._later(o.id, "upload", 2.0)
                return
            except ConaError as exc:
                log.warning("lease %d: the engine refused the result: %d %s", o.id, exc.http_status, exc.message)
                self._later(o.id, "upload", 5.0)
                return
            self._record(o.id, "uploaded", result=stored.get("result"))
        if o.state == OrderState.COMPLETED:
            # the next block's timestamp: a node that mines on demand (anvil) leaves the latest
            # block's time behind the wall clock; a settle sent too early is refused by gas
            # estimation, before it is signed or journaled, and retried
            if max(self.market.chain_time(), int(time.time())) < o.completed_at + self._terms(o).dispute_window:
                self._later(o.id, "any", 1.0)
                return
            tx = self.market.settle(self.acct.signer, o.id, key=self._key(o, "settle", o.completed_at))
            paid = tx.event("Settled").args["paid"]
            self._record(o.id, "settled", tx=tx.tx_hash, paid=str(paid))
        elif o.state in (OrderState.SETTLED, OrderState.RESOLVED):
            self._record(o.id, "settled", tx="", state=o.state.name, reconciled=True)
        # DISPUTED: the arbiter decides; keep watching

    def _terms(self, o: Order) -> MarketTerms:
        if o.terms not in self.terms:
            self.terms[o.terms] = self.market.terms(o.terms)
        return self.terms[o.terms]

    def _key(self, o: Order, step: str, stamp: int) -> str:
        return f"{self.acct.deployment.chain_id}:{self.market.address}:{o.id}:{step}:{stamp}"

    def _set_busy(self, order: int, value: tuple[int, int] | None) -> None:
        with self._lock:
            if value is None:
                self.busy.pop(order, None)
            else:
                self.busy[order] = value

    def reconcile(self) -> None:
        """After a restart: what was running is running again (availability), everything else
        is settled by ``advance`` against the chain."""
        for lease in self.journal.open_leases():
            if lease.has("accepted") and not lease.has("completed"):
                try:
                    o = self.market.order(lease.order)
                except ChainError as exc:
                    log.warning("lease %d: cannot read the order: %s", lease.order, exc)
                    continue
                if o.state == OrderState.RUNNING and o.provider == self.me:
                    self._set_busy(o.id, (o.device_class, o.units))
        log.info("reconciled %d open lease(s) from the journal", len(self.journal.open_leases()))

    def maybe_withdraw(self) -> None:
        if self.cfg.withdraw_every <= 0 or time.monotonic() - self._last_withdraw < self.cfg.withdraw_every:
            return
        self._last_withdraw = time.monotonic()
        bal = self.market.balance(self.me)
        if bal > 0:
            tx = self.market.withdraw(self.acct.signer, bal)
            log.info("withdrew %d wei (tx %s)", bal, tx.tx_hash)

    # -- main loop -------------------------------------------------------------------------

    def run_forever(self) -> None:
        def _stop(*_: Any) -> None:
            self.stop.set()
            self.wake.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _stop)
        self.ensure_registered()
        self.reconcile()
        self.advertise(force=True)
        hb = threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True)
        hb.start()
        while not self.stop.is_set():
            try:
                self.poll_chain()
                self.step_leases()
                self.advertise()
                self.maybe_withdraw()
            except ChainError as exc:
                log.warning("chain: %s (retrying)", exc)
            self.wake.wait(self.cfg.poll_interval)
            self.wake.clear()
        log.info("agent %s stopping", self.me)
