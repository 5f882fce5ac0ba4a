"""The dashboard in headless Debian Chromium: the page loads, the map shows the topology's nodes
and the providers attached to it, an order placed on chain appears live (server-sent events),
its lease moves on the page as it is assigned and accepted, the audit view reads its on-chain
history, and a screenshot is kept.

The market is real: an embedded chain with the contracts deployed, the engine with a Topology
Zoo network (Geant2012), three providers registered with real hardware profiles that sent
signed LSAs, all served by uvicorn on a loopback port. Chromium comes from apt
(``/usr/bin/chromium``); Playwright only drives it (never ``playwright install``).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import uvicorn

from marketplace.api.app import ApiState, create_app
from marketplace.chain.backends import EmbeddedBackend, free_port
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import MarketParams, deploy_market
from marketplace.chain.market import Market
from marketplace.convergence.lsa import Availability, encode_lsa
from marketplace.engine.service import Engine
from marketplace.engine.spec import spec_digest
from marketplace.resources.model import DeviceClass
from marketplace.settings import ProjectConfig
from provider_agent.probe import discover_dump

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOPOLOGY = ROOT / "tests" / "fixtures" / "topologies" / "Geant2012.graphml"
PROFILES = ROOT / "provider_agent" / "profiles"
ETH = 10**18
PRICE = 36 * 10**14
# provider account -> (hardware profile, attachment node in Geant2012)
HW = {3: ("h100-server", "0"), 4: ("l40s-server", "5"), 5: ("t4-node", "9")}


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """A running market: chain, contracts, engine with three providers, and the API on a free port."""
    project = ProjectConfig.load(ROOT)
    chain = Chain(EmbeddedBackend(project.mnemonic, 10), project)
    dep = deploy_market(chain, params=MarketParams(min_stake=ETH, unbonding_period=3600))
    mkt = Market.from_deployment(chain, dep)
    engine = Engine(chain, dep, topology=TOPOLOGY, state_dir=tmp_path_factory.mktemp("engine"))
    for i, (profile, node) in HW.items():
        desc = discover_dump(PROFILES / profile).descriptor
        mkt.registry.register(chain.signers[i], hardware=desc.digest(), domain=1, prices=[PRICE] * 4, stake=2 * ETH)
        gpus = desc.device_count(DeviceClass.GPU)
        lsa = encode_lsa(desc, [Availability(DeviceClass.GPU, gpus * 1000, 0)], [(DeviceClass.GPU, PRICE)], 1, node,
                         sequence=1, lifetime=3600, key=bytes(chain.backend.accounts[i].key))
        assert engine.submit_lsa(lsa).outcome.value == "installed"
    app = create_app(ApiState(chain=chain, deployment=dep.to_dict(), engine=engine))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="dashboard-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield {"url": f"http://127.0.0.1:{port}", "chain": chain, "market": mkt, "dep": dep, "engine": engine}
    server.should_exit = True
    thread.join(timeout=10)
    engine.close()
    chain.close()


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium "
                    "fonts-liberation) - the project's bootstrap does this; never `playwright install`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def test_dashboard_shows_the_market_and_follows_an_order_live(market, browser, tmp_path):
    chain, mkt = market["chain"], market["market"]
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(market["url"] + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)

    # the map: every node of Geant2012 with coordinates, and the three providers where their LSAs attach them
    topo = market["engine"].topology
    located = [n for n in topo.nodes if topo.node_info[n].lat is not None]
    nodes = page.locator("#map circle[data-node]")
    assert 0 < nodes.count() == len(located)
    assert page.locator("#map line.link").count() > 40
    provs = page.locator("#map circle[data-provider]")
    assert provs.count() == 3
    on_map = {provs.nth(i).get_attribute("data-provider") for i in range(3)}
    assert on_map == {chain.signers[i].address for i in HW}
    assert "Geant" in page.locator("#topo-summary").inner_text()
    # the hardware table comes from the engine's LSAs: real device names from the profiles
    table = page.locator("#providers tbody").inner_text()
    assert "H100" in table and "L40S" in table and "T4" in table
    page.wait_for_selector("#live.on", timeout=10_000)
    assert page.locator("#orders tbody tr[id^=order-]").count() == 0

    # an order placed on chain by a buyer shows up on the page, live
    buyer, provider, orchestrator = chain.signers[6], chain.signers[3], chain.signers[1]
    spec = {"requirement": {"device_class": "gpu", "count": 1, "duration_s": 3600},
            "workload": {"module": "sha256", "input": "6869", "fuel": 10**6}, "attachment": "1"}
    intent = mkt.intent(buyer.address, requirement=spec_digest(spec), device_class=int(DeviceClass.GPU), units=1,
                        duration=3600, max_price=PRICE)
    mkt.deposit(buyer, intent.escrow())
    oid = mkt.place(buyer, intent)
    row = page.locator(f"#order-{oid}")
    row.wait_for(timeout=10_000)
    assert row.get_attribute("data-state") == "open"
    assert "GPU" in row.inner_text()

    # its lease moves: assigned, then running, on the row and on its timeline
    mkt.assign(orchestrator, oid, provider.address, PRICE)
    mkt.accept(provider, oid)
    page.wait_for_selector(f"#order-{oid}[data-state='running']", timeout=10_000)
    assert page.locator(f"#timelines .tl[data-order='{oid}'] .bar span").count() == 3

    # the audit view: the order's on-chain history
    row.click()
    page.wait_for_selector("#audit-table tbody tr", timeout=10_000)
    audit = page.locator("#audit").inner_text()
    assert "consistent" in audit and "OrderPlaced" in audit and "Accepted" in audit
    assert page.locator("#audit-table tbody tr").count() == 3

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000, len(data)
    assert not errors, errors
    page.close()
