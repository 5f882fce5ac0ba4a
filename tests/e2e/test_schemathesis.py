"""The API against its own OpenAPI document, with schemathesis, in process (ASGI).

The app is the one `cona up` serves: an embedded chain with the market deployed, the engine
with a Topology Zoo network (Geant2012) and a provider that sent its LSA, and a few orders on
chain so the read views answer with data. Every generated request must get a response that
conforms to the document (status code, content type, body schema) and never a 5xx.

Not fuzzed, and why:
- ``POST /rpc``: the chain's JSON-RPC, whose contract is Ethereum's (tested in test_api_base
  and the conformance suite), not an OpenAPI schema; it answers JSON-RPC errors with 200.
- ``GET /v1/orders/{id}/events`` and ``GET /v1/events``: server-sent event streams; the second
  never ends and the first ends only when its order is final, so a generated request on a live
  order would never return (they are tested in tests/chain/test_api_views.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

from marketplace.api.app import ApiState, create_app
from marketplace.chain.backends import EmbeddedBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import MarketParams, deploy_market
from marketplace.chain.market import Market
from marketplace.convergence.lsa import Availability, encode_lsa
from marketplace.engine.service import Engine
from marketplace.resources.model import DeviceClass
from marketplace.settings import ProjectConfig
from provider_agent.probe import discover_dump

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = ROOT / "tests" / "fixtures" / "topologies" / "Geant2012.graphml"
ETH = 10**18
PRICE = 36 * 10**14
MAX_EXAMPLES = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_app(tmp_path_factory):
    project = ProjectConfig.load(ROOT)
    chain = Chain(EmbeddedBackend(project.mnemonic, 10), project)
    dep = deploy_market(chain, params=MarketParams(min_stake=ETH, unbonding_period=3600))
    mkt = Market.from_deployment(chain, dep)
    engine = Engine(chain, dep, topology=TOPOLOGY, state_dir=tmp_path_factory.mktemp("engine"))
    desc = discover_dump(ROOT / "provider_agent" / "profiles" / "h100-server").descriptor
    mkt.registry.register(chain.signers[3], hardware=desc.digest(), domain=1, prices=[PRICE] * 4, stake=2 * ETH)
    engine.submit_lsa(encode_lsa(desc, [Availability(DeviceClass.GPU, 8000, 0)], [(DeviceClass.GPU, PRICE)], 1, "0",
                                 sequence=1, lifetime=3600, key=bytes(chain.backend.accounts[3].key)))
    buyer = chain.signers[6]
    for units in (1, 2, 1):
        it = mkt.intent(buyer.address, requirement=b"\x01" * 32, device_class=2, units=units, duration=600,
                        max_price=PRICE)
        mkt.deposit(buyer, it.escrow())
        mkt.place(buyer, it)
    app = create_app(ApiState(chain=chain, deployment=dep.to_dict(), engine=engine))
    yield schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/rpc").exclude(
        path_regex=r".*/events$")
    engine.close()
    chain.close()


def test_every_response_conforms_to_the_openapi_document(api_app):
    # schemathesis' own pytest loader (from_fixture) fails on this pytest; hypothesis drives each operation here
    failures: dict[str, str] = {}
    operations = []
    for result in api_app.get_all_operations():
        operation = result.ok()
        operations.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure, then report all
            failures[operation.label] = str(exc)[:2000]
    assert "GET /v1/orders" in operations and "GET /v1/topology" in operations, operations
    assert not any("/events" in label or label.endswith("/rpc") for label in operations)
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
