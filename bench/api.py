"""``cona bench api``: API read latency under a bounded open-loop load, and order to lease through HTTP.

The market is brought up the way ``make run`` does: ``cona up --port P --providers N`` as its
own process (embedded chain, contracts, the engine loop and the API in that one process, and
N demo provider agents as further processes with real hardware profiles), on loopback, with a
temporary state directory (``CONA_DATA_DIR``). The bench then, as a buyer would:

- places ``ORDERS`` signed orders (EIP-712 intents signed here with a development account,
  ``POST /v1/orders``) one after another, and times each from the POST until
  ``GET /v1/orders/{id}`` shows it assigned on chain: ``order_to_lease_ms_p50`` (``_p99``,
  ``order_to_lease_samples``). The poll runs every ``POLL_S``, so a figure is at most that
  much late;
- starts the load generator (``python -m bench.api --loadgen``, its own process) that reads
  the API at a fixed offered rate over ``CONNECTIONS`` HTTP/1.1 keep-alive connections.

The load is open-loop: request *i* is due at ``t0 + i / rate`` whatever happened to the
ones before it, and its latency runs from that due time to the last byte of the response.
A request that finds every connection busy waits in the generator's queue and that wait
counts, so a slow server cannot hide its queueing by slowing the client down (coordinated
omission). ``client_lag_p99_ms`` says how late the generator itself sent (its timer and its
share of the CPU), which is part of every latency. A warm-up (``WARMUP_S``, not measured)
opens the connections and the server's caches first.

Then ``bench.place`` measures placement throughput (20 buyers, ``POST /v1/orders``) on a market of
its own per chain: ``place_orders_per_s_anvil``, ``place_p99_ms_anvil``, ``place_orders_per_s_embedded``,
``place_p99_ms_embedded`` (and their ``_p50_ms``, ``_errors`` and the load average while measured).

Figures: ``read_p50_ms``, ``read_p99_ms``, ``read_p999_ms``, ``read_max_ms`` over every
measured read, ``read_p99_ms_<endpoint>`` per endpoint, ``offered_rps``, ``achieved_rps``
(responses per second over the measured window), ``read_requests``, ``read_errors``
(non-200, lost or unanswered by the end: none are expected), ``read_mix`` (endpoint:share).

Bounded: the load stops by itself (``DURATION_S``; quick: ``QUICK_DURATION_S`` at
``QUICK_RPS``), everything listens on 127.0.0.1, and every process started here is stopped
at the end, on error too (``cona up`` stops its agents; its process group is killed if it
does not exit in time).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from bench import place
from bench.stats import percentile, rnd
from marketplace.client import ApiClient
from marketplace.errors import ConaError, NotFound
from marketplace.settings import PACKAGE_ROOT

log = logging.getLogger(__name__)

RPS, DURATION_S = 1000, 10.0
QUICK_RPS, QUICK_DURATION_S = 200, 2.0
WARMUP_S = 1.0
CONNECTIONS = 16
PROVIDERS = 5
ORDERS, QUICK_ORDERS = 8, 3
POLL_S = 0.005
BUYER_ACCOUNT = 3  # a README buyer: never a demo provider's account (see marketplace.demo)
START_TIMEOUT_S = 120.0
LEASE_TIMEOUT_S = 30.0
#: the dashboard's reads and a buyer's: (endpoint label, weight); ``order`` cycles the placed orders
MIX: tuple[tuple[str, int], ...] = (("/v1/providers", 2), ("/v1/orders/{id}", 3), ("/v1/orders?limit=20", 2),
                                    ("/v1/topology", 1), ("/healthz", 2))
_LEASED = {"assigned", "running", "completed", "settled"}
_WORKED = {"completed", "settled", "disputed", "resolved", "cancelled", "refunded"}
SETTLE_TIMEOUT_S = 90.0


# ============================================================================ the market under load


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_setup() -> None:  # pragma: no cover - runs between fork and exec
    """Its own session (Ctrl-C here reaches only the bench, which stops it in order), and SIGTERM
    if this process dies without its ``finally`` (killed), so no market outlives the bench."""
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@contextmanager
def market(state_dir: Path, providers: int = PROVIDERS, chain: str = "embedded") -> Iterator[str]:
    """``cona up`` as a child process on ``chain``; yields the API URL once every demo provider is installed."""
    port = _free_port()
    env = {**os.environ, "CONA_DATA_DIR": str(state_dir), "CONA_CHAIN": chain, "CONA_API_HOST": "127.0.0.1"}
    env.pop("CONA_API_URL", None)
    log_path = state_dir.parent / "up.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "marketplace.cli.main", "up", "--port", str(port),
                                 "--providers", str(providers)], cwd=PACKAGE_ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_child_setup)
    api = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"cona up exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            if _listed(api) == providers and "CONA is up" in log_path.read_text():
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the market was not up within {START_TIMEOUT_S:.0f} s: "
                                   f"{log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        log.info("market up at %s (pid %d, %d providers)", api, proc.pid, providers)
        yield api
    finally:
        proc.send_signal(signal.SIGTERM)  # cona up stops its agents, the API, then the chain
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log.warning("cona up (pid %d) did not stop in 30 s: killing its process group", proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _listed(api: str) -> int:
    """How many providers the engine lists (0 while it does not answer)."""
    try:
        with ApiClient(api, timeout=2) as client:
            return len(client.providers())
    except ConaError:
        return 0


# ============================================================================ orders through HTTP


def place_orders(api: str, n: int) -> tuple[list[int], list[float]]:
    """Sign and place ``n`` orders one after another; return their ids and their order-to-lease times (ms)."""
    from marketplace.chain.backends import dev_accounts
    from marketplace.chain.contracts import Chain
    from marketplace.chain.market import Market
    from marketplace.chain.writer import Signer
    from marketplace.engine.spec import Spec
    from marketplace.settings import ConaSettings

    client = ApiClient(api, timeout=10)
    dep = client.deployment()
    chain = Chain.open(ConaSettings(chain="rpc", rpc_url=f"{api}/rpc"))
    try:
        m = Market.from_deployment(chain, dep)
        signer = Signer(dev_accounts(ConaSettings().project().mnemonic, BUYER_ACCOUNT + 1)[BUYER_ACCOUNT].key)
        ids, times = [], []
        for i in range(n):
            # one CPU for 60 s near Frankfurt (GEANT node 4): every demo provider sells CPU
            spec = Spec.from_dict({"requirement": {"device_class": "cpu", "count": 1, "share_milli": 1000,
                                                   "duration_s": 60, "cpu_milli": 0, "features": []},
                                   "workload": {"module": "sha256", "input": f"bench order {i}".encode().hex(),
                                                "fuel": 100_000_000},
                                   "attachment": "4"})
            intent = m.intent(signer.address, requirement=spec.digest(), device_class=int(spec.requirement.device_class),
                              units=1, duration=60, max_price=3 * 10**15, valid_for=600)
            short = intent.escrow() - m.balance(signer.address)
            if short > 0:
                m.deposit(signer, short)
            body = {"intent": intent.to_dict(), "signature": "0x" + m.sign(signer, intent).hex(),
                    "spec": spec.to_dict()}
            key = "bench:" + m.digest(intent).hex()
            t0 = time.perf_counter()
            oid = client.place_order(body, key)
            while True:
                state = client.order(oid)["state"]
                if state in _LEASED:
                    times.append((time.perf_counter() - t0) * 1000)
                    break
                if time.perf_counter() - t0 > LEASE_TIMEOUT_S:
                    raise RuntimeError(f"order {oid} still {state} {LEASE_TIMEOUT_S:.0f} s after it was placed")
                time.sleep(POLL_S)
            ids.append(oid)
            log.info("order %d leased in %.1f ms", oid, times[-1])
        return ids, times
    finally:
        chain.close()
        client.close()


def settle(api: str, ids: list[int], *, wait: bool = True, timeout: float = SETTLE_TIMEOUT_S) -> None:
    """Wait until the agents have run the placed orders and uploaded their results (or ``timeout``),
    so the agents' work (wasm compile and run, result upload) does not share the two cores with the
    measured reads; then read each endpoint of the mix once (the first ``/v1/orders`` opens the
    views' event index, a cold start this bench does not measure)."""
    deadline = time.monotonic() + timeout
    with ApiClient(api, timeout=10) as client:
        for oid in ids if wait else ():
            while client.order(oid)["state"] not in _WORKED or not _has_result(client, oid):
                if time.monotonic() > deadline:
                    log.warning("order %d not done within %.0f s: measuring anyway", oid, timeout)
                    break
                time.sleep(0.2)
        for label, _ in MIX:
            client.get(label.replace("{id}", str(ids[0]) if ids else "1"))


def _has_result(client: ApiClient, oid: int) -> bool:
    try:
        client.order_result(oid)
    except NotFound:
        return False
    return True


# ============================================================================ the load generator (own process)


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request in flight, responses framed by Content-Length."""

    def __init__(self, gen: "_Load") -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.current: tuple[int, float, int] | None = None  # (endpoint, due time, measured 0/1)
        self.need: int | None = None
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, req: tuple[int, float, int]) -> None:
        self.current = req
        assert self.transport is not None
        self.transport.write(self.gen.wire[req[0]])

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.current is not None:
            if self.need is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).decode("latin-1").lower()
                self.status = int(head[9:12])
                length = 0
                for line in head.split("\r\n")[1:]:
                    if line.startswith("content-length:"):
                        length = int(line[15:])
                    elif line.startswith("transfer-encoding:"):
                        raise RuntimeError("chunked responses are not expected on these endpoints")
                self.need = end + 4 + length
            if len(self.buf) < self.need:
                return
            del self.buf[:self.need]
            self.need = None
            req, self.current = self.current, None
            self.gen.done(self, req, self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.lost(self)


class _Load:
    def __init__(self, host: str, port: int, paths: list[str], kinds: list[int]) -> None:
        self.host, self.port = host, port
        self.wire = [f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n\r\n".encode()
                     for p in paths]
        self.kinds = kinds  # endpoint label index of each path
        self.idle: deque[_Conn] = deque()
        self.queue: deque[tuple[int, float, int]] = deque()
        self.lat: dict[int, list[float]] = {}
        self.lag: list[float] = []
        self.errors = 0
        self.outstanding = 0
        self.last_done = 0.0
        self.all_done = asyncio.Event()

    def dispatch(self, req: tuple[int, float, int]) -> None:
        self.outstanding += 1
        if self.idle:
            self.idle.popleft().send(req)  # FIFO: every connection stays busy, none idles into the keep-alive timeout
        else:
            self.queue.append(req)

    def done(self, conn: _Conn, req: tuple[int, float, int], status: int) -> None:
        now = time.perf_counter()
        if req[2]:
            self.last_done = now
            if status == 200:
                self.lat.setdefault(self.kinds[req[0]], []).append((now - req[1]) * 1000)
            else:
                self.errors += 1
        if self.queue:
            conn.send(self.queue.popleft())
        else:
            self.idle.append(conn)
        self.outstanding -= 1
        if self.outstanding == 0:
            self.all_done.set()

    def lost(self, conn: _Conn) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.current is not None:
            self.errors += conn.current[2]
            conn.current = None
            self.outstanding -= 1

    async def run(self, rate: float, duration: float, warmup: float, connections: int) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        for _ in range(connections):
            _, conn = await loop.create_connection(lambda: _Conn(self), self.host, self.port)
            self.idle.append(conn)
        interval = 1.0 / rate
        n_warm, n = int(warmup * rate), int((warmup + duration) * rate)
        t0 = time.perf_counter() + 0.01
        i = 0
        while i < n:
            now = time.perf_counter()
            while i < n and t0 + i * interval <= now:
                due = t0 + i * interval
                if i >= n_warm:
                    self.lag.append((now - due) * 1000)
                self.dispatch((i % len(self.wire), due, int(i >= n_warm)))
                i += 1
            if i < n:
                await asyncio.sleep(t0 + i * interval - time.perf_counter())
        self.all_done.clear()  # it was set whenever the server caught up during the run
        try:
            if self.outstanding:
                await asyncio.wait_for(self.all_done.wait(), timeout=10)
        except asyncio.TimeoutError:
            pass
        unanswered = self.outstanding
        self.errors += unanswered
        start = t0 + n_warm * interval
        window = max(self.last_done, t0 + n * interval) - start
        return {"lat": {str(k): v for k, v in self.lat.items()}, "lag": self.lag, "errors": self.errors,
                "unanswered": unanswered, "sent": n - n_warm, "window_s": window}


def _loadgen_main(args: dict[str, Any]) -> None:
    gen = _Load(args["host"], args["port"], args["paths"], args["kinds"])
    out = asyncio.run(gen.run(args["rate"], args["duration"], args["warmup"], args["connections"]))
    json.dump(out, sys.stdout)


def offered_load(api: str, order_ids: list[int], *, rate: float, duration: float, warmup: float = WARMUP_S,
                 connections: int = CONNECTIONS) -> dict[str, Any]:
    """Run the load generator in its own process against ``api``; return its raw figures."""
    host, port = api.removeprefix("http://").split(":")
    paths, kinds = [], []
    ids = order_ids or [1]
    k = 0
    for label_index, (label, weight) in enumerate(MIX):
        for _ in range(weight):
            paths.append(label.replace("{id}", str(ids[k % len(ids)])))
            kinds.append(label_index)
            k += 1
    # interleave the endpoints so each stretch of the run sees the whole mix
    order = sorted(range(len(paths)), key=lambda j: (j - sum(w for _, w in MIX[:kinds[j]])) / MIX[kinds[j]][1])
    args = {"host": host, "port": int(port), "paths": [paths[j] for j in order], "kinds": [kinds[j] for j in order],
            "rate": rate, "duration": duration, "warmup": warmup, "connections": connections}
    run = subprocess.run([sys.executable, "-m", "bench.api", "--loadgen", json.dumps(args)], cwd=PACKAGE_ROOT,
                         capture_output=True, text=True, timeout=warmup + duration + 60)
    if run.returncode != 0:
        raise RuntimeError(f"the load generator failed ({run.returncode}): {run.stderr[-2000:]}")
    return json.loads(run.stdout)


# ============================================================================ the bench


def run(quick: bool = False) -> dict:
    rate, duration = (QUICK_RPS, QUICK_DURATION_S) if quick else (RPS, DURATION_S)
    with tempfile.TemporaryDirectory(prefix="cona-bench-api-") as tmp:
        with market(Path(tmp) / "state") as api:
            ids, lease_ms = place_orders(api, QUICK_ORDERS if quick else ORDERS)
            settle(api, ids, wait=not quick)  # quick: the agents may still be at work
            raw = offered_load(api, ids, rate=rate, duration=duration)
    every = [x for v in raw["lat"].values() for x in v]
    if not every:
        raise RuntimeError(f"no read succeeded ({raw['errors']} errors)")
    out: dict[str, Any] = {
        "read_p50_ms": rnd(percentile(every, 50)), "read_p99_ms": rnd(percentile(every, 99)),
        "read_p999_ms": rnd(percentile(every, 99.9)), "read_max_ms": rnd(max(every)),
        "offered_rps": rate, "achieved_rps": rnd(len(every) / raw["window_s"]),
        "read_requests": raw["sent"], "read_errors": raw["errors"], "read_duration_s": duration,
        "read_connections": CONNECTIONS,
        "read_mix": ",".join(f"{label}:{w / sum(w for _, w in MIX):.0%}" for label, w in MIX),
        "client_lag_p99_ms": rnd(percentile(raw["lag"], 99)), "client_lag_max_ms": rnd(max(raw["lag"])),
    }
    for idx, (label, _) in enumerate(MIX):
        vals = raw["lat"].get(str(idx))
        if vals:
            name = label.strip("/").removeprefix("v1/").split("?")[0].replace("/{id}", "_id").replace("/", "_")
            out[f"read_p99_ms_{name}"] = rnd(percentile(vals, 99))
    out.update({"order_to_lease_ms_p50": rnd(percentile(lease_ms, 50)),
                "order_to_lease_ms_p99": rnd(percentile(lease_ms, 99)),
                "order_to_lease_samples": len(lease_ms)})
    out.update(place.run(quick=quick))  # placement throughput, each chain on a market of its own
    return out


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--loadgen":
        _loadgen_main(json.loads(sys.argv[2]))
    else:
        print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
