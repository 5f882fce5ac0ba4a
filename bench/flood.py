"""``flood_converge_ms``: how fast 1,000 new Compute LSAs reach every engine peer.

Workload: five peer processes (``python -m marketplace.peering.node``) in a line on
loopback, so the far end is four hops from the originator. Once every adjacency is up,
peer 1 is told (control socket) to originate 1,000 LSAs, one per Alibaba GPU trace node
(``tests/fixtures/traces/openb_node_list_gpu_node.csv``), each under its own fresh
secp256k1 provider key. The clock starts when the command is sent and stops when every
peer's LSDB digest equals peer 1's and holds all 1,000 LSAs (status polled every 10 ms).
It includes signing at the originator, and at every hop decoding, signature recovery,
installation, acknowledgement and forwarding.

Figures: ``flood_converge_ms`` (median over ``runs`` fresh meshes), ``flood_converge_ms_max``,
``originate_ms`` (peer 1 signing and installing the batch, median), ``flood_lsas_per_s``
(LSAs times peers reached per second), plus the parameters. Quick mode: 100 LSAs, one run.

    python -c "import bench.flood, json; print(json.dumps(bench.flood.run()))"
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from bench.stats import rnd
from marketplace.peering.harness import PeerMesh
from marketplace.peering.workload import trace_originations

CSV = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "traces" / "openb_node_list_gpu_node.csv"
PEERS = 5
#: production-like timers: nothing here should fire during a run except the CSNPs at adjacency up
TIMERS = dict(hello_interval=1.0, hold_time=3.0, retransmit_interval=5.0, csnp_interval=30.0, tick_interval=1.0)


def _one_run(lsas: int, seed: int) -> tuple[float, float]:
    originations = trace_originations(CSV, lsas, seed=seed)
    with PeerMesh(PEERS, topology="line", timers=TIMERS, log_level="WARNING") as mesh:
        mesh.start_all()
        ends = {1: [2], PEERS: [PEERS - 1]}
        mesh.wait_until("adjacencies up", lambda: all(
            s["neighbours_up"] == ends.get(i, [i - 1, i + 1]) for i, s in mesh.statuses().items()), timeout=30)
        path = mesh.originate_file(1, originations)
        start = time.perf_counter()
        reply = mesh.originate(1, path)
        originated = time.perf_counter()
        if reply.get("originated") != lsas:
            raise RuntimeError(f"peer 1 did not originate {lsas} LSAs: {reply}")

        def converged() -> bool:
            st = mesh.statuses()
            return len({s["digest"] for s in st.values()}) == 1 and all(s["size"] == lsas for s in st.values())

        mesh.wait_until("every digest equals the originator's", converged, timeout=120, poll=0.01)
        done = time.perf_counter()
        st = mesh.statuses()
        if any(s["rejected"] for s in st.values()):
            raise RuntimeError(f"LSAs rejected during the run: {[s['rejected'] for s in st.values()]}")
    return (done - start) * 1000, (originated - start) * 1000


def run(quick: bool = False) -> dict:
    lsas = 100 if quick else 1000
    runs = 1 if quick else 3
    converge, originate = [], []
    for r in range(runs):
        c, o = _one_run(lsas, seed=1000 + r)
        converge.append(c)
        originate.append(o)
    median = statistics.median(converge)
    return {
        "flood_converge_ms": rnd(median),
        "flood_converge_ms_max": rnd(max(converge)),
        "originate_ms": rnd(statistics.median(originate)),
        "flood_lsas_per_s": rnd(lsas * (PEERS - 1) / (median / 1000)),
        "flood_lsas": lsas,
        "flood_peers": PEERS,
        "flood_runs": runs,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run()))
