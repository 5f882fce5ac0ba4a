"""Three engines on one chain, one per domain, joined by real TCP peering (in one process).

Each engine signs with its own orchestrator key, registered through the timelock; each links to
the others with an ``EngineLink`` over loopback: Compute LSAs posted to one engine reach the others
by flooding, domain summaries cross between them, and an order that its entry engine cannot serve
is handed over and assigned by the engine of the domain that can. Bad input: an engine that lies
about its domain (an OPEN or a handover signed with another key) is refused with a counted reason.
Real hardware dumps and the GEANT topology, as in ``test_engine.py``.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from marketplace.chain.lifecycle import OrderState
from marketplace.chain.writer import Signer
from marketplace.convergence.heartbeat import sign as sign_heartbeat
from marketplace.convergence.lsa import Availability, encode_lsa
from marketplace.convergence.lsdb import Outcome as LsdbOutcome
from marketplace.engine.errors import HandoverRefused
from marketplace.engine.orders import Status
from marketplace.engine.service import Engine, EngineConfig
from marketplace.federation.config import DomainEntry, Federation
from marketplace.federation.link import EngineLink
from marketplace.federation.session import check_open, open_for, sign_handover
from marketplace.engine.spec import spec_digest
from marketplace.errors import ConaError
from marketplace.resources.model import DeviceClass
from tests.chain.test_engine import ETH, HW, PRICE, TOPOLOGY, Clock, w, world  # noqa: F401

pytestmark = pytest.mark.chain

#: provider account -> domain; orchestrator account per domain
DOMAIN_OF = {3: 1, 4: 2, 5: 3}
ORCHESTRATORS = {1: 7, 2: 8, 3: 9}
TIMERS = {"hello_interval": 0.1, "hold_time": 0.5, "retransmit_interval": 0.3, "csnp_interval": 1.0,
          "tick_interval": 0.2, "min_arrival_interval": 0.05}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(what: str, predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


class Federated:
    """Three engines, their links and their loops."""

    def __init__(self, w, tmp_path) -> None:
        self.w = w
        operator = next(s for s in w.signers if s.address == w.dep.roles["operator"])
        for d, i in ORCHESTRATORS.items():
            w.market.set_orchestrator(operator, w.signers[i].address)
        self.fed = Federation(w.chain.backend.chain_id, w.market.address, {
            d: DomainEntry(d, f"http://127.0.0.1:{_port()}", "127.0.0.1", _port(), w.signers[i].address, home)
            for (d, i), home in zip(ORCHESTRATORS.items(), ("0", "5", "9"))}, ((1, 2, 2.0), (2, 3, 2.0)), TIMERS)
        self.engines: dict[int, Engine] = {}
        self.links: dict[int, EngineLink] = {}
        self.stops: dict[int, threading.Event] = {}
        self.threads: list[threading.Thread] = []
        for d, i in ORCHESTRATORS.items():
            self.start(d, tmp_path / f"engine{d}")

    def key(self, d: int) -> bytes:
        return bytes(self.w.accounts[ORCHESTRATORS[d]].key)

    def start(self, d: int, state_dir) -> None:
        w = self.w
        engine = Engine(w.chain, w.dep, topology=TOPOLOGY, state_dir=state_dir, clock=Clock(),
                        orchestrator=Signer(self.key(d)),
                        config=EngineConfig(domain=d, home=self.fed.entry(d).home))
        self.engines[d] = engine
        self.links[d] = EngineLink(engine, self.fed, d, self.key(d), w.market, post=self.post).start()
        stop = self.stops[d] = threading.Event()
        t = threading.Thread(target=engine.run, args=(stop, 0.05), daemon=True)
        t.start()
        self.threads.append(t)

    def post(self, url: str, body: dict) -> tuple[int, dict]:
        """A handover delivered to the target's link as its API would (no HTTP server in this test)."""
        target = next(d for d, e in self.fed.domains.items() if url.startswith(e.api))
        link = self.links.get(target)
        if link is None or self.stops[target].is_set():
            raise httpx.ConnectError("connection refused")
        try:
            return 202, link.receive_handover(body)
        except ConaError as exc:
            return exc.http_status, exc.to_dict()

    def stop(self, d: int) -> None:
        self.stops[d].set()
        self.links[d].stop()
        self.engines[d].close()

    def close(self) -> None:
        for d in list(self.engines):
            if not self.stops[d].is_set():
                self.stop(d)
        for t in self.threads:
            t.join(timeout=5)

    def register_providers(self) -> None:
        w = self.w
        for i, d in DOMAIN_OF.items():
            w.market.registry.register(w.signers[i], hardware=w.desc[i].digest(), domain=d, prices=[PRICE] * 4,
                                       stake=2 * ETH)

    def lsa(self, i: int, *, seq: int = 1, domain: int | None = None) -> bytes:
        w = self.w
        d = w.desc[i]
        gpus = d.device_count(DeviceClass.GPU)
        return encode_lsa(d, [Availability(DeviceClass.GPU, gpus * 1000, 0)], [(DeviceClass.GPU, PRICE)],
                          DOMAIN_OF[i] if domain is None else domain, HW[i][1], sequence=seq, lifetime=3600,
                          key=w.key(i))

    def routes(self, d: int) -> set[int]:
        return {s.origin_as for s in self.links[d].speaker.routes(DeviceClass.GPU)}


@pytest.fixture
def fed(w, tmp_path):
    f = Federated(w, tmp_path)
    try:
        wait("sessions up", lambda: f.links[1].speaker.sessions() == [2] and f.links[3].speaker.sessions() == [2]
             and f.links[2].speaker.sessions() == [1, 3])
        yield f
    finally:
        f.close()


def test_lsas_flood_to_every_engine_each_matches_its_own_and_summaries_cross(fed):
    fed.register_providers()
    for i in DOMAIN_OF:  # every agent posts to engine 1, as the README's contributor does
        assert fed.engines[1].submit_lsa(fed.lsa(i)).outcome == LsdbOutcome.INSTALLED
    providers = {fed.w.signers[i].address: d for i, d in DOMAIN_OF.items()}
    for d, engine in fed.engines.items():
        wait(f"engine {d} shows every provider", lambda e=engine: len(e.providers()) == 3)
        mine = {a for a, dom in providers.items() if dom == d}
        assert set(engine.matcher.providers) == mine  # only its own are matched
        assert {p["address"]: p["domain"] for p in engine.providers()} == providers
    wait("engine 1 learns domains 2 and 3", lambda: fed.routes(1) == {1, 2, 3})
    wait("engine 3 learns domain 1 through 2", lambda: fed.routes(3) == {1, 2, 3})
    via = {s.origin_as: s.as_path for s in fed.links[3].speaker.routes(DeviceClass.GPU)}
    assert via[1] == (2, 1)


def test_an_order_for_another_domain_is_handed_over_and_assigned_there_once(fed):
    w = fed.w
    fed.register_providers()
    for i in DOMAIN_OF:
        fed.engines[1].submit_lsa(fed.lsa(i))
    wait("engine 1 learns domain 3", lambda: 3 in fed.routes(1))
    spec = w.spec(domain=3)
    it, sig = w.signed(6, spec)
    oid = fed.engines[1].place_order(it, sig, spec)
    wait("assigned", lambda: w.market.state(oid) == OrderState.ASSIGNED, timeout=20)
    order = w.market.order(oid)
    assert order.provider == w.signers[5].address  # the domain-3 provider
    engine1, engine3 = fed.engines[1], fed.engines[3]
    engine3.indexer.sync()
    (assigned,) = engine3.indexer.events("ComputeMarket", "Assigned", order=oid)
    tx = w.chain.backend.request("eth_getTransactionByHash", [assigned.tx_hash])
    assert tx["from"].lower() == w.signers[ORCHESTRATORS[3]].address.lower()  # engine 3 signed it
    assert engine1.ownership.handed == {oid: 3}
    assert oid in engine3.ownership.accepted
    wait("engine 1 sees the assignment", lambda: engine1.orders[oid].status == Status.ASSIGNED)
    # taking it again is idempotent where it was taken; any other engine refuses it now: not Open
    assert engine3.accept_handover(oid, spec, 1)["accepted"]
    with pytest.raises(HandoverRefused) as err:
        fed.engines[2].accept_handover(oid, spec, 1)
    assert err.value.reason == "order-not-open"


def test_an_engine_lying_about_its_domain_is_refused_and_counted(fed):
    w = fed.w
    link2 = fed.links[2]
    # an OPEN for domain 1 signed with domain 3's key: domain-mismatch; a circuit that says 1 in
    # its HELLO but opens as 3: peer-domain-mismatch
    forged = open_for(fed.key(3), fed.fed, 1, 2, time.time())
    assert check_open(forged, fed=fed.fed, heard=1, me=2, now=time.time(),
                      is_orchestrator=lambda a: True) == "domain-mismatch"
    honest = open_for(fed.key(3), fed.fed, 3, 2, time.time())
    assert check_open(honest, fed=fed.fed, heard=1, me=2, now=time.time(),
                      is_orchestrator=lambda a: True) == "peer-domain-mismatch"
    assert check_open(honest, fed=fed.fed, heard=3, me=2, now=time.time() + 3600,
                      is_orchestrator=lambda a: True) == "stale"
    # a key the contract does not list: not-an-orchestrator (checked on chain)
    assert check_open(honest, fed=fed.fed, heard=3, me=2, now=time.time(),
                      is_orchestrator=lambda a: False) == "not-an-orchestrator"
    # the live speaker refuses a forged OPEN heard on a circuit, counts it and drops the circuit
    closed = []
    speaker = link2.speaker
    speaker.close, real_close = (lambda c, why: closed.append((c, why))), speaker.close
    try:
        speaker.domain_message(1, "forged-circuit", forged)
    finally:
        speaker.close = real_close
    assert speaker.rejected["domain-mismatch"] == 1 and closed and "domain-mismatch" in closed[0][1]
    assert speaker.sessions() == [1, 3]  # the real sessions are untouched
    # a handover signed with the wrong domain's key
    spec = w.spec()
    body = {**sign_handover(fed.key(3), fed.fed, order=1, spec_digest=spec_digest(spec), sender=1, receiver=2,
                            now=time.time()), "spec": spec}
    with pytest.raises(HandoverRefused) as err:
        link2.receive_handover(body)
    assert err.value.reason == "domain-mismatch"
    assert link2.status()["rejected"]["handover:domain-mismatch"] == 1


def test_an_lsa_naming_another_domain_than_its_registration_is_refused(fed):
    fed.register_providers()
    res = fed.engines[1].submit_lsa(fed.lsa(3, domain=2))
    assert res.outcome == LsdbOutcome.REJECTED and res.reason == "contradicts-registration"


def test_a_stopped_engine_leaves_the_others_tables_and_comes_back(fed, tmp_path):
    fed.register_providers()
    for i in DOMAIN_OF:
        fed.engines[1].submit_lsa(fed.lsa(i))
    wait("engine 1 learns domain 3", lambda: fed.routes(1) == {1, 2, 3})
    fed.stop(3)
    t0 = time.monotonic()
    wait("domain 3 withdrawn at engines 1 and 2", lambda: 3 not in fed.routes(1) and 3 not in fed.routes(2),
         timeout=3.0)
    assert time.monotonic() - t0 < 3.0
    fed.start(3, tmp_path / "engine3")  # same state: its LSDB comes back from disk
    # its providers are offered (and summarised) again once heard: their agents heartbeat to it
    for i in (i for i, d in DOMAIN_OF.items() if d == 3):
        fed.engines[3].heartbeat(sign_heartbeat(fed.w.key(i), sequence=1, timestamp=int(fed.engines[3].clock()))
                                 .to_dict())
    wait("domain 3 back at engine 1", lambda: 3 in fed.routes(1), timeout=10)
