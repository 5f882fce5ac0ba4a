"""Time to the first server-sent event when many clients subscribe at once (``GET /v1/events``).

A market (``cona up --providers 0``, ``bench.api.market``) with ``HISTORY`` orders placed (so the
feed has events to fold) and buyers still placing orders while it is measured (the head moves,
so the feed keeps refreshing) gets ``CLIENTS`` subscriptions opened together (one asyncio
connection each, from this process); each is timed from its request's send to the first complete event record (``event: hello``). Then one more client subscribes
alone while the others stay connected and polling: that is the first event a new dashboard
sees on a busy market. Figures: ``sse_first_event_p50_ms``, ``_p99_ms`` and ``_max_ms`` over the
crowd, ``sse_first_event_alone_ms`` for a client alone on an idle market, and
``sse_first_event_busy_ms`` for the late one.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import percentile, rnd

CLIENTS = 200
TIMEOUT_S = 60.0
#: orders placed before the measure (4 buyers), and placed during it (4 buyers, closed loop)
HISTORY = 400
DURING = 4 * 150


async def _first_event(host: str, port: int, path: str, hold: asyncio.Event | None = None,
                       got: list[float] | None = None) -> float:
    """Subscribe to ``path``; the milliseconds from the request to the first complete event. With
    ``hold``, stay subscribed (appending the figure to ``got`` first) until it is set."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        t0 = time.perf_counter()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        buf = b""
        while b"\r\n\r\n" not in buf or b"\n\n" not in buf.split(b"\r\n\r\n", 1)[1]:
            chunk = await asyncio.wait_for(reader.read(65536), TIMEOUT_S)
            if not chunk:
                raise RuntimeError(f"the stream closed before its first event: {buf[:200]!r}")
            buf += chunk
        took = (time.perf_counter() - t0) * 1000
        if hold is not None:
            assert got is not None
            got.append(took)
            await hold.wait()
        return took
    finally:
        writer.close()


async def _crowd(api: str, clients: int) -> dict[str, Any]:
    host, port = api.removeprefix("http://").split(":")
    path = "/v1/events?backlog=0"
    alone = await _first_event(host, int(port), path)
    hold, got = asyncio.Event(), []
    tasks = [asyncio.create_task(_first_event(host, int(port), path, hold, got)) for _ in range(clients)]
    try:
        while len(got) < clients:
            failed = [t for t in tasks if t.done() and t.exception() is not None]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # the crowd stays subscribed and polling
        late = await _first_event(host, int(port), path)
    finally:
        hold.set()
        times = [t for t in await asyncio.gather(*tasks, return_exceptions=True) if isinstance(t, float)]
    return {"sse_clients": clients, "sse_first_event_p50_ms": rnd(percentile(times, 50)),
            "sse_first_event_p99_ms": rnd(percentile(times, 99)), "sse_first_event_max_ms": rnd(max(times)),
            "sse_first_event_alone_ms": rnd(alone), "sse_first_event_busy_ms": rnd(late),
            "sse_load_avg": round(os.getloadavg()[0], 2)}


def run(clients: int = CLIENTS) -> dict[str, Any]:
    import threading

    from bench import place
    from bench.api import market

    with tempfile.TemporaryDirectory(prefix="cona-bench-sse-") as tmp:
        with market(Path(tmp) / "state", providers=0) as api:
            place.measure(api, place.prepare(api, 4, HISTORY // 4, label=f"sse history {time.time_ns()}"))
            during = place.prepare(api, 4, DURING // 4, label=f"sse during {time.time_ns()}")
            busy = threading.Thread(target=place.measure, args=(api, during), daemon=True)
            busy.start()
            try:
                return asyncio.run(_crowd(api, clients))
            finally:
                busy.join()


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
