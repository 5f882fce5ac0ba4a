"""A decentralised market with real processes: ``cona up --domains 3``, then an engine SIGKILLed.

The market is ``marketplace.federation.launch.Launch`` (what ``cona up --domains 3`` runs): one
anvil, three ``cona serve`` engine processes each signing with its own orchestrator key that the
timelock registered, joined as flooding peers along the GEANT regions, and the five demo agents as
processes, each attached to its own domain's engine. Orders are placed through domain 1's API with
the buyer's CLI, as the README does.

The kill test: an order for domain 3 is handed over and completed there (its result served by the
engine the buyer ordered at, fetched from domain 3's and checked against the chain); domain 3's
engine is then SIGKILLed. Its domain's orders stay safe on chain (no other engine touches its leases: one
``Assigned`` per order, nothing failed or timed out, escrow balanced), its providers leave the other
engines' domain tables within 3 s (peering hellos every 0.2 s, hold 1 s), and an order for domain 3
waits Open meanwhile; restarted with the same state, the engine's summaries come back and the
waiting order is handed to it and served.

A buyer's own module and input file, uploaded at domain 1's engine, follow an order handed to
domain 3 (engine 3 fetches them from engine 1 on the handover), and its output file, uploaded by
domain 3's provider to engine 3, is downloaded at engine 1 (fetched there on the miss, checked).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from marketplace import demo
from marketplace.chain.audit import Auditor
from marketplace.chain.backends import free_port
from marketplace.chain.contracts import Chain
from marketplace.chain.indexer import EventIndexer
from marketplace.chain.market import Market
from marketplace.engine.spec import spec_digest
from marketplace.federation.launch import Launch
from marketplace.federation.session import sign_handover
from marketplace.results import result_digest
from marketplace.settings import PACKAGE_ROOT, ConaSettings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def _wait(what: str, predicate, timeout: float, poll: float = 0.1) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(poll)
    return time.monotonic() - start


def _origins(api: str) -> set[int]:
    try:
        doc = httpx.get(f"{api}/v1/domains", timeout=2).json()
    except httpx.HTTPError:
        return set()
    return {r["origin"] for r in doc["routes"]}


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("domains")
    settings = ConaSettings(data_dir=tmp / "state", chain="anvil", api_port=free_port())
    launch = Launch(settings, domains=3).start()
    try:
        chosen = launch.demo_providers(5)
        addresses = demo.launch(launch, chosen, engines=launch.engine_urls(), rpc_url=launch.rpc_url)
        env = {**os.environ, "CONA_DATA_DIR": str(tmp / "state"), "HOME": str(tmp),
               "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        yield {"launch": launch, "providers": dict(zip(addresses, (p.domain for p in chosen))), "env": env}
    finally:
        launch.stop()


def _place(market, *args: str) -> int:
    api = market["launch"].api_url
    run = subprocess.run(["cona", "order", "place", "--api", api, "--dev-account", "3", "--duration", "60",
                          "--max-price", "3000000000000000", "--attachment", "4", "--module", "sha256",
                          "--input", "x", "--fuel", "1000000", *args], cwd=PACKAGE_ROOT, env=market["env"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return int(run.stdout.strip().splitlines()[-1])


def _cona(market, *args: str) -> str:
    run = subprocess.run(["cona", *args], cwd=PACKAGE_ROOT, env=market["env"], capture_output=True, text=True,
                         timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout.strip()


def test_the_domains_peer_and_each_engine_matches_only_its_own_providers(market):
    launch = market["launch"]
    for d, api in launch.engine_urls().items():
        _wait(f"engine {d} knows every domain", lambda a=api: _origins(a) == {1, 2, 3}, timeout=30)
        listed = {p["address"]: p["domain"] for p in httpx.get(f"{api}/v1/providers", timeout=5).json()}
        assert listed == market["providers"]  # every LSA reached every engine by flooding
        doc = httpx.get(f"{api}/v1/domains", timeout=5).json()
        assert doc["sessions"] == sorted(launch.federation.neighbours(d))
        assert doc["peering"]["lsdb_rejected"] == {} and not any(doc["rejected"].values())


def test_a_forged_handover_is_refused_over_http_and_counted_in_the_metrics(market):
    launch = market["launch"]
    url = launch.engine_urls()[2]
    spec = {"requirement": {"device_class": "gpu", "count": 1, "duration_s": 60},
            "workload": {"module": "sha256", "input": "78", "fuel": 1000000}, "attachment": "4"}
    # domain 1 claimed, signed with a key no federation lists
    body = {**sign_handover(os.urandom(32), launch.federation, order=1, spec_digest=spec_digest(spec), sender=1,
                            receiver=2, now=time.time()), "spec": spec}
    resp = httpx.post(f"{url}/v1/handovers", json=body, timeout=5)
    assert resp.status_code == 409 and resp.json()["reason"] == "domain-mismatch", resp.text
    assert httpx.post(f"{url}/v1/handovers", json={"order": -1}, timeout=5).status_code == 422
    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    assert 'cona_domain_refused_total{reason="handover:domain-mismatch"} 1.0' in metrics
    assert "cona_domain_events_total" in metrics and "cona_peering_refused_total" in metrics


def test_a_killed_engine_leaves_the_others_tables_its_orders_stay_safe_and_it_comes_back(market):
    launch = market["launch"]
    urls = launch.engine_urls()
    chain = Chain.open(ConaSettings(chain="rpc", rpc_url=launch.rpc_url))
    try:
        m = Market.from_deployment(chain, launch.deployment)
        first = _place(market, "--device-class", "gpu", "--domain", "3", "--watch", "--until", "completed")
        assert market["providers"][m.order(first).provider] == 3
        # the buyer asks the engine it ordered at for the result: fetched from domain 3's, checked on chain
        _wait("the result served by domain 1's engine",
              lambda: httpx.get(f"{urls[1]}/v1/orders/{first}/result", timeout=5).status_code == 200, timeout=30)
        data = httpx.get(f"{urls[1]}/v1/orders/{first}/result", timeout=5).content
        assert result_digest(data) == m.order(first).result

        launch.kill(3)
        t = _wait("domain 3 gone from engines 1 and 2",
                  lambda: 3 not in _origins(urls[1]) and 3 not in _origins(urls[2]), timeout=3.0, poll=0.05)
        print(f"domain 3 withdrawn everywhere {t:.2f} s after the SIGKILL")
        waiting = _place(market, "--device-class", "gpu", "--domain", "3")
        time.sleep(3.0)  # the others hold it back: nobody else may serve domain 3
        assert m.order(waiting).state.name == "OPEN"
        assert m.order(first).state.name == "COMPLETED"  # no other engine failed or timed out its lease

        launch.restart(3)
        _wait("domain 3 back at engines 1 and 2", lambda: 3 in _origins(urls[1]) and 3 in _origins(urls[2]),
              timeout=20)
        _wait("the waiting order served in domain 3", lambda: m.order(waiting).state.name in ("RUNNING", "COMPLETED"),
              timeout=60)
        assert market["providers"][m.order(waiting).provider] == 3
        indexer = EventIndexer(chain.backend, {
            "ComputeMarket": (m.address, chain.abis["ComputeMarket"]),
            "ProviderRegistry": (m.registry.address, chain.abis["ProviderRegistry"])},
            start_block=launch.deployment.block)
        indexer.sync()
        for oid in (first, waiting):
            assert len(indexer.events("ComputeMarket", "Assigned", order=oid)) == 1
            assert not indexer.events("ComputeMarket", "OrderFailed", order=oid)
        assert Auditor(m, indexer).escrow().balanced
    finally:
        chain.close()


def test_a_buyers_module_and_input_follow_the_order_across_domains_and_its_outputs_come_back(market, tmp_path):
    """Artifacts uploaded at domain 1's engine, an order for domain 3: on the handover engine 3 fetches
    them from engine 1 (its provider fetches from its own engine), and the buyer at engine 1 downloads
    the output files domain 3's provider uploaded there (fetched by engine 1 on the miss, checked)."""
    launch = market["launch"]
    urls = launch.engine_urls()
    fox = tmp_path / "fox.txt"
    fox.write_text("the quick brown fox\njumps over the lazy dog\n")
    module = PACKAGE_ROOT / "provider_agent" / "workloads" / "src" / "examples" / "wordcount-c.wasm"
    wc = int(_cona(market, "order", "place", "--api", launch.api_url, "--dev-account", "3", "--device-class", "gpu",
                   "--domain", "3", "--duration", "60", "--max-price", "3000000000000000", "--attachment", "4",
                   "--wasm", str(module), "--arg", "fox.txt", "--input-artifact", f"fox.txt={fox}",
                   "--fuel", "100000000", "--watch", "--until", "completed").splitlines()[-1])
    order = httpx.get(f"{urls[1]}/v1/orders/{wc}", timeout=5).json()
    assert market["providers"][order["provider"]] == 3
    mirrored = httpx.get(f"{urls[3]}/v1/domains", timeout=5).json()["artifacts"]
    assert mirrored.get("fetched", 0) >= 2 and not any(k.startswith("failed") for k in mirrored), mirrored
    _cona(market, "order", "result", str(wc), "--api", launch.api_url, "--out-dir", str(tmp_path / "out"))
    assert (tmp_path / "out" / "counts.tsv").read_text() == "fox.txt\t2\t9\t44\n"
    assert httpx.get(f"{urls[1]}/v1/domains", timeout=5).json()["artifacts"].get("fetched", 0) >= 1
    # another engine's own request is answered from the store alone: no asking in a circle
    missing = "sha256:" + "ab" * 32
    resp = httpx.get(f"{urls[2]}/v1/artifacts/{missing}/info", headers={"X-Cona-From-Domain": "1"}, timeout=5)
    assert resp.status_code == 404
    assert httpx.get(f"{urls[2]}/v1/artifacts/{missing}/info", timeout=10).status_code == 404
    assert httpx.get(f"{urls[2]}/v1/domains", timeout=5).json()["artifacts"].get("not-there", 0) >= 2


def test_stopping_the_market_leaves_no_process_behind(market):
    """Last in this module: ``cona up --domains``'s Ctrl-C path stops agents, engines and anvil."""
    launch = market["launch"]
    children = list(launch.supervisor.children)
    anvil = getattr(launch.chain.backend, "process", None) if launch.chain is not None else None
    launch.stop()
    assert len(children) >= 3 + 5 and not [c.name for c in children if c.alive()]
    if anvil is not None:
        assert anvil.poll() is not None
    # nor a grandchild: no process left whose command line names this market's state directory
    state = str(launch.settings.state_dir)
    left = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and state in cmdline:
            left.append(cmdline)
    assert not left, left
