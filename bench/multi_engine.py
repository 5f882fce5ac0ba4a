"""``multi_engine_converge_ms``: an LSA change in one domain until every engine's view reflects it.

The market is what ``cona up --domains 3`` runs (``marketplace.federation.launch``): one anvil and
three ``cona serve`` engine processes on GEANT 2012 (Topology Zoo), one per domain, joined as
flooding peers and domain speakers along the regions of the graph (a triangle), each signing
with its own orchestrator key. The five demo hardware profiles are registered on chain in the
domains of their nodes (the 4x Ascend node in domain 2, with the L40S server), and each
provider's signed Compute LSA is posted to its own domain's engine, as its agent would.

A change: the Ascend node posts a new LSA instance to its domain's engine in which half its
NPUs are busy, then all free again (alternately). The clock runs from the POST until every engine
shows it: the provider list carries the new sequence number (the LSA was flooded and passed the
registry checks of each engine) *and* the domain router's table holds its domain's NPU summary
with the new free capacity (the summary was originated and crossed the sessions). Engines are
polled over HTTP every 5 ms, which bounds the resolution. Changes are 1.5 s apart, longer than
the routers' MRAI (1 s), so no change waits on a timer the previous one started: what is
measured is flooding, checking, summarising and one UPDATE per session.

Figures: ``multi_engine_converge_ms`` (median), ``multi_engine_converge_ms_max``,
``multi_engine_lsa_ms`` (the LSA part alone, median), ``multi_engine_changes``.
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.stats import rnd
from marketplace.chain.market import Market
from marketplace.convergence.lsa import Availability, encode_lsa
from marketplace.demo import DEMO_PROVIDERS, FIRST_PROVIDER_ACCOUNT, PROFILES, DemoProvider
from marketplace.federation.launch import Launch
from marketplace.resources.model import DeviceClass
from marketplace.settings import ConaSettings
from provider_agent.probe import discover_dump

ETH = 10**18
GAP_S = 1.5
POLL_S = 0.005
LIFETIME = 3600


@functools.lru_cache(maxsize=None)
def _descriptor(name: str):
    return discover_dump(PROFILES / name).descriptor


def _lsa(p: DemoProvider, key: bytes, seq: int, busy: int = 0) -> bytes:
    d = _descriptor(p.name)
    avail = []
    for cls in sorted({x.device_class for x in d.devices}):
        total = sum(x.count * x.share_milli for x in d.of_class(cls))
        used = min(total, busy * 1000) if cls == DeviceClass.NPU else 0
        avail.append(Availability(cls, total - used, used * 10_000 // total if total else 0))
    prices = [(DeviceClass[c.upper()], w) for c, w in sorted(p.prices.items())]
    return encode_lsa(d, avail, prices, p.domain, p.attachment, sequence=seq, lifetime=LIFETIME, key=key)


def _views(http: httpx.Client, urls: list[str], addr: str, domain: int) -> list[tuple[int, float | None]]:
    """Per engine: the provider's LSA sequence it shows, and ``domain``'s NPU free capacity in its table."""
    out = []
    for url in urls:
        seq = http.get(f"{url}/v1/providers/{addr}").json().get("lsa_sequence", 0)
        routes = http.get(f"{url}/v1/domains").json()["routes"]
        free = next((r["free"] for r in routes if r["origin"] == domain and r["device_class"] == "npu"), None)
        out.append((seq, free))
    return out


def run(quick: bool = False) -> dict:
    changes = 3 if quick else 12
    with tempfile.TemporaryDirectory() as tmp:
        settings = ConaSettings(data_dir=Path(tmp), chain="anvil", api_port=0)
        with Launch(settings, domains=3) as launch:
            return _measure(launch, changes)


def _measure(launch: Launch, changes: int) -> dict:
    providers = launch.demo_providers(len(DEMO_PROVIDERS))
    chain, dep = launch.chain, launch.deployment
    assert chain is not None and dep is not None
    market = Market.from_deployment(chain, dep)
    accounts = chain.backend.accounts
    urls = launch.engine_urls()
    keys = {}
    for i, p in enumerate(providers):
        acct = accounts[FIRST_PROVIDER_ACCOUNT + i]
        keys[p.name] = bytes(acct.key)
        d = _descriptor(p.name)
        prices = [p.prices.get(c, 0) for c in ("cpu", "gpu", "npu", "tpu")]
        market.registry.register(chain.signers[FIRST_PROVIDER_ACCOUNT + i], hardware=d.digest(), domain=p.domain,
                                 prices=prices, stake=market.registry.min_stake or ETH)
    with httpx.Client(timeout=5.0) as http:
        for p in providers:
            r = http.post(f"{urls[p.domain]}/v1/lsas", content=_lsa(p, keys[p.name], 1),
                          headers={"content-type": "application/octet-stream"})
            r.raise_for_status()
        ascend = next(p for p in providers if p.name == "ascend-node")
        if sum(p.domain == ascend.domain for p in providers if "npu" in p.prices) != 1:
            raise RuntimeError(f"the Ascend node should be the only NPU provider of its domain {ascend.domain}")
        addr = chain.signers[FIRST_PROVIDER_ACCOUNT + providers.index(ascend)].address
        everyone = list(urls.values())
        _until(lambda: all(v == (1, 4.0) for v in _views(http, everyone, addr, ascend.domain)), 60)
        total, lsa_part = [], []
        for k in range(changes):
            time.sleep(GAP_S)
            seq, busy = k + 2, 2 if k % 2 == 0 else 0
            raw = _lsa(ascend, keys[ascend.name], seq, busy)
            t0 = time.perf_counter()
            http.post(f"{urls[ascend.domain]}/v1/lsas", content=raw,
                      headers={"content-type": "application/octet-stream"})
            lsa_at = None
            want = (seq, 4.0 - busy)
            while True:
                views = _views(http, everyone, addr, ascend.domain)
                if lsa_at is None and all(v[0] >= seq for v in views):
                    lsa_at = time.perf_counter()
                if all(v == want for v in views):
                    break
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError(f"change {k} not converged in 30 s: {views}, want {want}")
                time.sleep(POLL_S)
            done = time.perf_counter()
            total.append((done - t0) * 1000)
            lsa_part.append(((lsa_at or done) - t0) * 1000)
    return {"multi_engine_converge_ms": rnd(statistics.median(total)),
            "multi_engine_converge_ms_max": rnd(max(total)),
            "multi_engine_lsa_ms": rnd(statistics.median(lsa_part)),
            "multi_engine_changes": changes, "multi_engine_engines": 3}


def _until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the three engines did not converge on the providers within the time")
        time.sleep(0.05)


if __name__ == "__main__":
    import json

    print(json.dumps(run()))
