"""``/healthz`` tells the truth (issue 13, "Bad input"): it reports a chain that does not answer or does
not mine, and an engine loop that stopped turning, instead of always "ok".

Each fault is real: a block log the disk has no room for, an embedded chain with automining off while
the engine's writer waits for a receipt, a node that hangs (SIGSTOP: it takes connections and never
answers), a node that is gone, a real-network node (anvil on a non-development chain id, not mining)
whose head grows old, an engine loop whose thread ended, one stuck behind its lock, and one whose
every turn fails. The answer is a 503 problem detail naming what fails, with every check.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
from fastapi.testclient import TestClient

from marketplace.api.app import ApiState, create_app
from marketplace.chain.backends import AnvilBackend, EmbeddedBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import MarketParams, deploy_market
from marketplace.chain.durable import LOG_NAME
from marketplace.chain.writer import TxRequest
from marketplace.engine.service import Engine
from marketplace.health import HealthConfig, HealthMonitor, LoopBeat
from marketplace.settings import PACKAGE_ROOT
from tests.faults import file_size_limit

pytestmark = pytest.mark.chain

TOPOLOGY = PACKAGE_ROOT / "tests" / "fixtures" / "topologies" / "Geant2012.graphml"
QUICK = HealthConfig(probe_timeout=0.5, mine_stall=0.5, head_stale=1.0, turn_stall=0.5, fail_limit=3, cache_s=0.0)


def _healthz(chain: Chain, monitor: HealthMonitor | None = None) -> tuple[int, dict]:
    with TestClient(create_app(ApiState(chain=chain, health=monitor))) as client:
        resp = client.get("/healthz")
    return resp.status_code, resp.json()


def _failing(status: int, body: dict, check: str, words: str) -> None:
    assert status == 503, body
    assert body["type"] == "/problems/unhealthy" and words in body["detail"], body
    assert body["checks"][check]["ok"] is False and words in body["checks"][check]["detail"], body


def test_a_healthy_market_says_so_with_every_check(project):
    chain = Chain(EmbeddedBackend(project.mnemonic, 3), project)
    try:
        status, body = _healthz(chain)
        assert status == 200 and body["status"] == "ok"
        assert body["checks"]["chain"] == {"ok": True, "detail": body["checks"]["chain"]["detail"]}
        assert body["checks"]["chain"]["detail"].startswith("head block 0")
    finally:
        chain.close()


def test_a_chain_whose_block_log_cannot_be_written_is_reported(project, tmp_path):
    chain = Chain(EmbeddedBackend(project.mnemonic, 3, data_dir=tmp_path / "chain"), project)
    try:
        assert _healthz(chain)[0] == 200
        signer = chain.signers[1]
        raw, _ = signer.sign_1559(chain_id=chain.backend.chain_id, nonce=0, tip=10**9, max_fee=10**10, gas=21_000,
                                  to=chain.signers[2].address, value=1, data=b"")
        with file_size_limit((tmp_path / "chain" / LOG_NAME).stat().st_size + 100):  # no room for a block
            chain.backend.forward({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                                   "params": ["0x" + raw.hex()]})
        _failing(*_healthz(chain), "chain", "block log cannot be written")
    finally:
        chain.close()


def test_a_chain_that_takes_transactions_and_does_not_mine_is_reported(project):
    chain = Chain(EmbeddedBackend(project.mnemonic, 3), project)
    monitor = HealthMonitor(chain.backend, chain.writer, config=QUICK)
    chain.backend.set_automine(False)
    sender = threading.Thread(target=chain.writer.transact,
                              args=(chain.signers[1], TxRequest(to=chain.signers[2].address, value=1, gas=21_000)))
    try:
        sender.start()
        time.sleep(1.0)  # the writer has waited longer than mine_stall for its receipt
        _failing(*_healthz(chain, monitor), "chain", "does not mine: a transaction has waited")
        chain.backend.mine()
        sender.join(timeout=10)
        assert _healthz(chain, monitor)[0] == 200
    finally:
        chain.backend.set_automine(True)
        sender.join(timeout=10)
        chain.close()


def test_a_node_that_hangs_and_one_that_is_gone_are_reported(project):
    chain = Chain(AnvilBackend(PACKAGE_ROOT, project.mnemonic, accounts=1), project)
    node = chain.backend.process
    monitor = HealthMonitor(chain.backend, chain.writer, config=QUICK)
    try:
        assert _healthz(chain, monitor)[0] == 200
        node.send_signal(signal.SIGSTOP)  # hung: its socket takes connections, nothing answers
        _failing(*_healthz(chain, monitor), "chain", "did not answer within 0.5 s")
        node.kill()  # gone: connections refused (once the probe still in flight has given up)
        node.wait(timeout=10)
        deadline = time.monotonic() + 30
        while "cannot reach" not in str(_healthz(chain, monitor)[1]):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        # from then on every report names it, also while a newer probe is still retrying
        for _ in range(3):
            _failing(*_healthz(chain, monitor), "chain", "the chain does not answer: cannot reach the JSON-RPC node")
    finally:
        chain.close()


def test_a_real_network_whose_head_grows_old_is_reported_and_an_idle_dev_chain_is_not(project):
    # anvil as a stand-in for a real network: a chain id that is not a development chain's, no mining
    chain = Chain(AnvilBackend(PACKAGE_ROOT, project.mnemonic, accounts=1, chain_id=4242,
                               extra_args=("--no-mining",)), project)
    try:
        time.sleep(2.2)
        _failing(*_healthz(chain, HealthMonitor(chain.backend, config=QUICK)), "chain", "its head, block 0, is")
    finally:
        chain.close()
    dev = Chain(EmbeddedBackend(project.mnemonic, 1), project)  # mines on demand: an old head is only idle
    try:
        time.sleep(2.2)
        assert _healthz(dev, HealthMonitor(dev.backend, config=QUICK))[0] == 200
    finally:
        dev.close()


@pytest.fixture
def engine(project, tmp_path):
    chain = Chain(EmbeddedBackend(project.mnemonic, 3), project)
    dep = deploy_market(chain, params=MarketParams())
    engine = Engine(chain, dep, topology=TOPOLOGY, state_dir=tmp_path / "engine")
    yield engine
    engine.close()
    chain.close()


class Loop:
    """The engine's loop in a thread, as the host runs it, and the monitor the host builds over it."""

    def __init__(self, engine: Engine) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=engine.run, args=(self.stop, 0.02), daemon=True)
        self.monitor = HealthMonitor(engine.chain.backend, engine.chain.writer, beat=engine.beat,
                                     loop_alive=self.thread.is_alive, config=QUICK)
        self.thread.start()

    def end(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def test_an_engine_loop_that_turns_is_healthy_and_one_that_ended_is_reported(engine):
    loop = Loop(engine)
    try:
        time.sleep(0.3)
        status, body = _healthz(engine.chain, loop.monitor)
        assert status == 200 and body["checks"]["engine"]["ok"] and body["checks"]["engine"]["detail"].startswith(
            "last turn")
    finally:
        loop.end()
    _failing(*_healthz(engine.chain, loop.monitor), "engine", "the engine loop is not running")


def test_an_engine_loop_stuck_in_a_turn_is_reported(engine):
    loop = Loop(engine)
    try:
        with engine.lock:  # a turn waits for the engine's lock, as behind a request that never ends
            time.sleep(1.0)
            _failing(*_healthz(engine.chain, loop.monitor), "engine", "has not turned for")
        time.sleep(0.3)
        assert _healthz(engine.chain, loop.monitor)[0] == 200
    finally:
        loop.end()


def test_an_engine_loop_whose_turns_fail_is_reported(engine):
    loop = Loop(engine)
    try:
        with engine.lock:  # between turns (closing it under a running query would crash sqlite)
            engine.indexer.close()  # every turn's index sync now fails
        deadline = time.monotonic() + 10
        while engine.beat.failed_in_row < QUICK.fail_limit and time.monotonic() < deadline:
            time.sleep(0.05)
        _failing(*_healthz(engine.chain, loop.monitor), "engine", "engine turns failed")
    finally:
        loop.end()


def test_a_beat_counts_failed_turns_in_a_row():
    now = [100.0]
    beat = LoopBeat(clock=lambda: now[0])
    beat.turned(RuntimeError("boom"))
    beat.turned(ValueError("again"))
    assert beat.failed_in_row == 2 and beat.last_error == "ValueError: again" and beat.last_turn == 100.0
    beat.turned()
    assert beat.failed_in_row == 0
