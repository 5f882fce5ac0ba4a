"""``marketplace.host``: the one composition root of ``cona up`` and ``cona serve``, and the typed
``ApiClient`` (``marketplace.client``) against the API the host serves.

A real host on the embedded chain: contracts deployed, the engine loop and uvicorn in their
threads. The client's errors are the real API's problem details, mapped to ``ConaError``s.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from marketplace.chain.backends import free_port
from marketplace.chain.deploy import Deployment
from marketplace.client import ApiClient, ApiUnreachable
from marketplace.convergence.heartbeat import sign as sign_heartbeat
from marketplace.errors import ChainUnavailable, ConaError, ConfigError, InputError, NotFound, Rejected
from marketplace.host import Host, HostConfig, claim_state, orchestrator_signer
from marketplace.settings import ConaSettings
from provider_agent import keystore

pytestmark = pytest.mark.chain


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    h = Host(ConaSettings(chain="embedded", data_dir=tmp_path_factory.mktemp("host")), HostConfig(port=0)).start()
    yield h
    h.stop()


def test_the_host_serves_its_deployment_and_says_where(host):
    with ApiClient(host.api_url) as api:
        dep = api.deployment()
    assert dep.contracts == host.deployment.contracts and dep.chain_id == host.deployment.chain_id
    info = host.info()
    assert info["api"] == host.api_url and info["pid"] == os.getpid()
    assert info["orchestrator"] == host.deployment.roles["orchestrator"] == host.engine.orchestrator.address
    assert (host.engine_dir / "market.json").exists() and info["engine_dir"] == str(host.engine_dir)
    assert host.chain.writer.journal.path is None  # the embedded chain dies with the process: nothing to re-send
    assert not (host.engine_dir / "journal.jsonl").exists()


def test_the_client_maps_the_apis_problems_to_errors(host):
    with ApiClient(host.api_url) as api:
        assert api.providers() == [] and api.providers(device_class="gpu", domain=None) == []
        assert api.topology()["name"].startswith("Geant")
        with pytest.raises(NotFound) as nf:
            api.order(999_999)
        assert nf.value.http_status == 404 and "/v1/orders/999999" in nf.value.message
        with pytest.raises(InputError) as bad:
            api.quote({"device_class": "gpu", "count": 0, "duration_s": 60}, "4")
        assert bad.value.http_status in (400, 422)
        with pytest.raises(ConaError) as lsa:
            api.post_lsa(b"not an LSA")
        assert 400 <= lsa.value.http_status < 500
        stranger = sign_heartbeat(os.urandom(32), sequence=1, timestamp=int(time.time()))
        with pytest.raises(Rejected) as hb:
            api.post_heartbeat(stranger.to_dict())
        assert hb.value.reason == "unknown-provider" and hb.value.http_status == 409
        with pytest.raises(NotFound):
            api.order_result(999_999)
        with pytest.raises(InputError):
            api.relay(1, "cancel", b"\x01\x02")


def test_an_api_that_does_not_answer_is_unreachable_with_the_clients_hint():
    dead = f"http://127.0.0.1:{free_port()}"
    with ApiClient(dead, attempts=2, unreachable_hint="start it") as api:
        with pytest.raises(ApiUnreachable) as exc:
            api.providers()
    assert isinstance(exc.value, ChainUnavailable) and exc.value.hint == "start it" and dead in exc.value.message


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # uvicorn's exit in its thread
def test_a_host_that_cannot_listen_stops_what_it_started(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        h = Host(ConaSettings(chain="embedded", data_dir=tmp_path), HostConfig(port=port))
        with pytest.raises(ChainUnavailable) as exc:
            h.start()
    assert f":{port}" in exc.value.message and "--port" in exc.value.hint
    assert h.chain is None and h.engine is None and h.server is None  # nothing left half up
    h.stop()  # idempotent


def _dep(market: str, genesis: str = "0x" + "aa" * 32) -> Deployment:
    return Deployment(backend="anvil", chain_id=31337, genesis=genesis, block=1, asset="0x" + "00" * 20,
                      contracts={"ComputeMarket": market}, roles={"orchestrator": "0x" + "01" * 20})


def test_engine_state_is_kept_only_for_its_own_chain_and_market(tmp_path):
    d = tmp_path / "engine" / "31337"
    claim_state(d, _dep("0x" + "11" * 20))
    (d / "journal.jsonl").write_text("kept\n")
    claim_state(d, _dep("0x" + "11" * 20))
    assert (d / "journal.jsonl").exists()  # same chain, same market: resume
    claim_state(d, _dep("0x" + "22" * 20))
    assert not (d / "journal.jsonl").exists() and (d / "market.json").exists()  # another market: afresh
    (d / "journal.jsonl").write_text("x\n")
    claim_state(d, _dep("0x" + "22" * 20, genesis="0x" + "bb" * 32))
    assert not (d / "journal.jsonl").exists()  # a new chain with the same id: afresh
    (d / "journal.jsonl").write_text("x\n")
    (d / "market.json").write_text("{not json")
    claim_state(d, _dep("0x" + "22" * 20, genesis="0x" + "bb" * 32))
    assert not (d / "journal.jsonl").exists()  # an unreadable mark belongs to nobody
    (d / "journal.jsonl").write_text("x\n")
    claim_state(d, _dep("0x" + "22" * 20, genesis="0x" + "bb" * 32), fresh=True)
    assert not (d / "journal.jsonl").exists()  # the embedded chain: always afresh


def test_the_orchestrator_key_must_be_the_deployments(host, tmp_path):
    (tmp_path / "pass").write_text("a passphrase\n")
    keystore.create(tmp_path / "ks.json", "a passphrase", key=os.urandom(32), scrypt_n=2**14)
    with pytest.raises(ConfigError) as exc:
        orchestrator_signer(host.chain, host.deployment, tmp_path / "ks.json", tmp_path / "pass")
    assert exc.value.fields["field"] == "orchestrator_key_file"
    nobody = Deployment(**{**host.deployment.to_dict(), "roles": {"orchestrator": "0x" + "ee" * 20}})
    with pytest.raises(ConfigError, match="no key for the orchestrator"):
        orchestrator_signer(host.chain, nobody, None, None)
    assert orchestrator_signer(host.chain, host.deployment, None, None).address == host.deployment.roles["orchestrator"]


def test_one_event_index_serves_the_engine_the_read_views_and_the_audit(host):
    """One ``cona up`` process indexes the chain once: the API's feed and auditor read the engine's index."""
    services = host.server.config.app.state.services
    assert services.feed.indexer is host.engine.indexer
    assert services.audit.auditor.indexer is host.engine.indexer
    with ApiClient(host.api_url) as api:
        assert api.get("/v1/audit/escrow")["balanced"] is True
