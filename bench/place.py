"""Placement throughput: signed orders through ``POST /v1/orders`` from concurrent buyers, on anvil and embedded.

The market is ``cona up --providers 0`` (``bench.api.market``) on the chain named, so what is
measured is the placement path alone (request checks, simulation, the ``placeSignedOrders``
transaction, the receipt): with no provider the engine queues nothing it could match.

Set-up, not measured: ``CLIENTS`` fresh buyer keys (derived from a label, so runs repeat) are
funded with test ETH by a development account through ``<api>/rpc`` (raw signed transactions,
the only write ``/rpc`` takes), each deposits the escrow of all its orders into the market, and
every order is signed beforehand (consecutive nonces per buyer, a distinct spec each), so the
clients only send.

Measured: ``CLIENTS`` threads, one keep-alive HTTP/1.1 connection each, each posting its own
buyer's orders one after another (closed loop: a client sends its next order when the previous
one is answered; nonces in order). A request's latency runs from its send to the last byte of
the answer. ``orders_per_s`` is the orders answered 201 over the wall time from the first send
to the last answer; ``p50_ms``/``p99_ms`` over every measured request; ``errors`` counts any
other answer or a lost connection (none are expected). The first ``WARMUP`` orders of each
client are sent and checked but not measured (connections, the server's first batch).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.stats import percentile, rnd
from marketplace.client import ApiClient

log = logging.getLogger(__name__)

CLIENTS = 20
#: orders each client sends (measured, after WARMUP) per chain, and in quick mode
PER_CLIENT = {"anvil": 60, "embedded": 25}
QUICK_PER_CLIENT = 4
WARMUP = 2
#: the development account that funds the bench's buyers (no role, demo provider or faucet uses it)
FUNDER_ACCOUNT = 18
MAX_PRICE = 3 * 10**15
DURATION_S = 60
REQUEST_TIMEOUT_S = 60.0


@dataclass
class Client:
    """One buyer: its key and its pre-signed request bodies."""

    key: Any
    bodies: list[bytes]


def prepare(api: str, clients: int, per_client: int, *, label: str) -> list[Client]:
    """Fund ``clients`` fresh buyers, deposit their escrow, and sign ``per_client`` orders each."""
    from eth_utils import keccak

    from marketplace.chain.backends import dev_accounts
    from marketplace.chain.contracts import Chain
    from marketplace.chain.market import Market
    from marketplace.chain.writer import Signer, TxRequest
    from marketplace.engine.spec import Spec
    from marketplace.settings import ConaSettings

    with ApiClient(api, timeout=30) as client:
        dep = client.deployment()
    chain = Chain.open(ConaSettings(chain="rpc", rpc_url=f"{api}/rpc"))
    try:
        m = Market.from_deployment(chain, dep)
        funder = Signer(dev_accounts(ConaSettings().project().mnemonic, FUNDER_ACCOUNT + 1)[FUNDER_ACCOUNT].key)
        buyers = [Signer(keccak(f"cona bench place {label} {i}".encode())) for i in range(clients)]
        chain.writer.transact_many(funder, [TxRequest(to=b.address, value=10**18, label=f"fund {b.address}")
                                            for b in buyers])
        deadline = m.chain_time() + 3600
        out = []
        for i, buyer in enumerate(buyers):
            bodies = []
            escrow = 0
            for n in range(per_client):
                spec = Spec.from_dict({"requirement": {"device_class": "cpu", "count": 1, "share_milli": 1000,
                                                       "duration_s": DURATION_S, "cpu_milli": 0, "features": []},
                                       "workload": {"module": "sha256", "input": f"{label} {i} {n}".encode().hex(),
                                                    "fuel": 100_000},
                                       "attachment": "4"})
                it = m.intent(buyer.address, requirement=spec.digest(), device_class=int(spec.requirement.device_class),
                              units=1, duration=DURATION_S, max_price=MAX_PRICE, nonce=n, deadline=deadline)
                escrow += it.escrow()
                bodies.append(json.dumps({"intent": it.to_dict(), "signature": "0x" + m.sign(buyer, it).hex(),
                                          "spec": spec.to_dict()}).encode())
            m.deposit(buyer, escrow)
            out.append(Client(buyer, bodies))
        return out
    finally:
        chain.close()


def _post_all(api: str, client: Client, start: threading.Barrier, lat: list[float], errors: list[str],
              ends: list[float], ok: list[int]) -> None:
    host, port = api.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=REQUEST_TIMEOUT_S)
    try:
        start.wait()
        for n, body in enumerate(client.bodies):
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/orders", body, {"Content-Type": "application/json",
                                                          "Idempotency-Key": f"bench-{client.key.address}-{n}"})
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=REQUEST_TIMEOUT_S)
                continue
            took = (time.perf_counter() - t0) * 1000
            if resp.status != 201:
                errors.append(f"{resp.status}: {data[:300]!r}")
                continue
            ok.append(1)
            if n >= WARMUP:
                lat.append(took)
        ends.append(time.perf_counter())
    finally:
        conn.close()


def measure(api: str, clients: list[Client]) -> dict[str, Any]:
    """Send every client's orders at once (one thread each); the figures of the measured part."""
    start = threading.Barrier(len(clients) + 1)
    lat: list[float] = []
    errors: list[str] = []
    ends: list[float] = []
    ok: list[int] = []
    threads = [threading.Thread(target=_post_all, args=(api, c, start, lat, errors, ends, ok), daemon=True)
               for c in clients]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = max(ends, default=time.perf_counter()) - t0
    total_ok = len(ok)
    if errors:
        log.warning("%d placement error(s), first: %s", len(errors), errors[0])
    return {"orders_per_s": rnd(total_ok / wall) if wall > 0 else 0.0,
            "p50_ms": rnd(percentile(lat, 50)) if lat else 0.0, "p99_ms": rnd(percentile(lat, 99)) if lat else 0.0,
            "orders": total_ok, "errors": len(errors), "first_error": errors[0] if errors else None,
            "load_avg": round(os.getloadavg()[0], 2)}


def run_chain(chain: str, *, quick: bool = False, clients: int = CLIENTS) -> dict[str, Any]:
    """``clients`` buyers placing orders through a ``cona up --providers 0`` on ``chain``."""
    from bench.api import market

    per_client = WARMUP + (QUICK_PER_CLIENT if quick else PER_CLIENT[chain])
    with tempfile.TemporaryDirectory(prefix=f"cona-bench-place-{chain}-") as tmp:
        with market(Path(tmp) / "state", providers=0, chain=chain) as api:
            prepared = prepare(api, clients, per_client, label=f"{chain} {time.time_ns()}")
            return measure(api, prepared)


def run(quick: bool = False) -> dict[str, Any]:
    """The placement figures on anvil and on the embedded chain, as ``cona bench api`` reports them."""
    out: dict[str, Any] = {}
    for chain in ("anvil", "embedded"):
        r = run_chain(chain, quick=quick)
        out.update({f"place_orders_per_s_{chain}": r["orders_per_s"], f"place_p99_ms_{chain}": r["p99_ms"],
                    f"place_p50_ms_{chain}": r["p50_ms"], f"place_errors_{chain}": r["errors"],
                    f"place_load_avg_{chain}": r["load_avg"]})
    out["place_clients"] = CLIENTS
    return out


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO)
    chains = [a for a in sys.argv[1:] if not a.startswith("--")] or ["anvil", "embedded"]
    print(json.dumps({c: run_chain(c, quick="--quick" in sys.argv) for c in chains}, indent=1))
