"""``order_to_lease_ms``: a buyer's signed order submitted through the engine until ``Assigned`` on chain.

Embedded chain (eth-tester + py-evm, automine). Three providers register real hardware
(provider_agent/profiles: h100-server, l40s-server, t4-node) and send signed Compute LSAs on
the GEANT 2012 topology. Each sample: ``Engine.place_order`` (``placeSignedOrders`` mined),
then one ``Engine.step`` (index sync, matching round, one ``assignBatch`` transaction that
records the batch and assigns the order, mined); the clock stops when the order is Assigned on chain (checked,
or the sample is not counted). The buyer then cancels (not timed) so capacity is free again.

- ``order_to_lease_ms_p50``, ``order_to_lease_ms_p99``: over the samples;
- ``order_to_lease_samples``: how many.
- ``failure_detect_ms``: heartbeat loss. A lease is accepted and its provider sends one signed
  heartbeat, then goes silent; the engine runs its own loop (``Engine.run``, period 0.05 s) with
  heartbeats expected every 0.2 s and 3 misses allowed. The time from that last heartbeat to
  the ``fail`` transaction mined (the order moved to its backup on chain).
  ``failure_detect_bound_ms`` is the stated bound: ``miss_limit x interval + period``, plus the
  one ``fail`` transaction.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from bench.stats import percentile, rnd
from marketplace.chain.backends import EmbeddedBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import MarketParams, deploy_market
from marketplace.chain.market import Market, OrderState
from marketplace.convergence.lsa import Availability, encode_lsa
from marketplace.convergence.heartbeat import sign as sign_heartbeat
from marketplace.engine.service import Engine, EngineConfig
from marketplace.engine.spec import spec_digest
from marketplace.resources.model import DeviceClass
from marketplace.settings import PACKAGE_ROOT, ProjectConfig
from provider_agent.probe import discover_dump

PROFILES = {3: ("h100-server", "0"), 4: ("l40s-server", "5"), 5: ("t4-node", "9")}
TOPOLOGY = PACKAGE_ROOT / "marketplace" / "data" / "topologies" / "Geant2012.graphml"
PRICE = 36 * 10**14
ETH = 10**18


def run(quick: bool = False, *, chain_dir: Path | None = None) -> dict:
    """``chain_dir``: keep the embedded chain there (durable: a block log fsynced per block)."""
    n = 20 if quick else 200
    project = ProjectConfig.load(PACKAGE_ROOT)
    chain = Chain(EmbeddedBackend(project.mnemonic, 8, data_dir=chain_dir), project)
    try:
        dep = deploy_market(chain, params=MarketParams(min_stake=ETH, unbonding_period=3600))
        market = Market.from_deployment(chain, dep)
        signers, accounts = chain.signers, chain.backend.accounts
        with tempfile.TemporaryDirectory() as tmp:
            engine = Engine(chain, dep, topology=TOPOLOGY, state_dir=Path(tmp))
            for i, (profile, node) in PROFILES.items():
                d = discover_dump(PACKAGE_ROOT / "provider_agent" / "profiles" / profile).descriptor
                market.registry.register(signers[i], hardware=d.digest(), domain=1, prices=[PRICE] * 4, stake=2 * ETH)
                gpus = d.device_count(DeviceClass.GPU)
                engine.submit_lsa(encode_lsa(d, [Availability(DeviceClass.GPU, gpus * 1000, 0)],
                                             [(DeviceClass.GPU, PRICE)], 1, node, sequence=1, lifetime=3600,
                                             key=bytes(accounts[i].key)))
            buyer = signers[6]
            spec = {"requirement": {"device_class": "gpu", "count": 1, "duration_s": 600, "min_memory_mib": 40960},
                    "workload": {"module": "sha256", "input": "6869", "fuel": 10**6}, "attachment": "1"}
            digest = spec_digest(spec)
            market.deposit(buyer, (n + 1) * PRICE)
            samples = []
            for _ in range(n):
                it = market.intent(buyer.address, requirement=digest, device_class=int(DeviceClass.GPU), units=1,
                                   duration=600, max_price=PRICE)
                sig = market.sign(buyer, it)
                t0 = time.perf_counter()
                oid = engine.place_order(it, sig, spec)
                engine.step()
                t1 = time.perf_counter()
                if market.state(oid) == OrderState.ASSIGNED:
                    samples.append((t1 - t0) * 1000)
                market.cancel(buyer, oid)
            engine.step()
            engine.close()
        with tempfile.TemporaryDirectory() as tmp:
            detect_ms, bound_ms = _failure_detect(chain, dep, market, Path(tmp), spec, digest, buyer, accounts)
    finally:
        chain.close()
    return {"order_to_lease_ms_p50": rnd(percentile(samples, 50)), "order_to_lease_ms_p99": rnd(percentile(samples, 99)),
            "order_to_lease_samples": len(samples), "failure_detect_ms": rnd(detect_ms),
            "failure_detect_bound_ms": rnd(bound_ms)}


def _failure_detect(chain, dep, market, state_dir, spec, digest, buyer, accounts) -> tuple[float, float]:
    """One lease whose provider stops heartbeating; ms from its last heartbeat to ``fail`` mined."""
    period, interval, misses = 0.05, 0.2, 3
    engine = Engine(chain, dep, topology=TOPOLOGY, state_dir=state_dir,
                    config=EngineConfig(heartbeat_interval=interval, miss_limit=misses))
    for i, (profile, node) in PROFILES.items():  # the agents announce themselves to this engine
        d = discover_dump(PACKAGE_ROOT / "provider_agent" / "profiles" / profile).descriptor
        gpus = d.device_count(DeviceClass.GPU)
        engine.submit_lsa(encode_lsa(d, [Availability(DeviceClass.GPU, gpus * 1000, 0)], [(DeviceClass.GPU, PRICE)],
                                     1, node, sequence=2, lifetime=3600, key=bytes(accounts[i].key)))
    it = market.intent(buyer.address, requirement=digest, device_class=int(DeviceClass.GPU), units=1, duration=600,
                       max_price=PRICE)
    oid = engine.place_order(it, market.sign(buyer, it), spec)
    engine.step()
    first = market.order(oid)
    idx = next(i for i in PROFILES if chain.signers[i].address == first.provider)
    market.accept(chain.signers[idx], oid)
    engine.step()
    stop = threading.Event()
    loop = threading.Thread(target=engine.run, args=(stop, period), daemon=True)
    loop.start()
    try:
        t_hb = time.time()
        engine.heartbeat(sign_heartbeat(bytes(accounts[idx].key), sequence=1, timestamp=int(t_hb),
                                        leases=[oid]).to_dict())
        deadline = time.monotonic() + 30
        while market.order(oid).provider == first.provider:
            if time.monotonic() > deadline:
                raise RuntimeError(f"order {oid}: the silent provider was not failed within 30 s")
            time.sleep(0.002)
        detect = (time.time() - t_hb) * 1000
    finally:
        stop.set()
        loop.join(10)
        engine.close()
    return detect, (misses * interval + period) * 1000



if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(quick=True)))
