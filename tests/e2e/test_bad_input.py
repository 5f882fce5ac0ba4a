"""The "Bad input" probes of issue 13 against a real ``cona up`` process: each gets a 4xx problem detail
or a JSON-RPC error with a code, the process stays up, and its memory stays bounded.

Once, two requests killed the whole market: JSON nested 100,000 deep (a segfault) and a JSON-RPC
batch of plain numbers (2 MB grew it by 542 MiB; 100 MB got it killed). Here every probe is sent
over a real socket to ``cona up --providers 0`` (the embedded chain, the engine and the API in one
process), and the process's resident memory is read from ``/proc`` before and after.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from marketplace.settings import PACKAGE_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

#: how much the market may grow over all the probes (the allocator keeps some of what a request used)
MAX_GROWTH_MIB = 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-input")
    env = {**os.environ, "HOME": str(tmp), "CONA_DATA_DIR": str(tmp / "state"), "CONA_CHAIN": "embedded"}
    port = _free_port()
    log = open(tmp / "up.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "marketplace.cli.main", "up", "--port", str(port),
                             "--providers", "0"], cwd=PACKAGE_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    api = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while "CONA is up" not in (tmp / "up.log").read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"cona up did not start:\n{(tmp / 'up.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield api, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def raw_post(port: int, path: str, head_length: int, body: bytes) -> tuple[int, bytes]:
    """POST announcing ``head_length`` bytes but sending only ``body``: the answer to the headers alone."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {head_length}\r\n\r\n".encode() + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_every_probe_is_refused_and_the_market_stays_up_and_small(market):
    api, proc = market
    port = int(api.rsplit(":", 1)[1])
    rpc = f"{api}/rpc"
    with httpx.Client(timeout=60) as http:
        http.get(f"{api}/v1/orders")  # warm: the views' index and the first request's allocations
        before = rss_mib(proc.pid)
        bomb = b"[" * 100_000 + b"]" * 100_000
        # JSON nested 100,000 deep: a JSON-RPC error at /rpc, a 413 problem at /v1/quotes
        r = http.post(rpc, content=b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":' + bomb + b"}")
        assert r.json()["error"]["code"] == -32600
        r = http.post(f"{api}/v1/orders", content=b'{"spec":' + bomb + b"}",
                      headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["limit"] == "max_depth"
        # a batch of plain numbers, 2 MB (once +542 MiB)
        numbers = ("[" + ",".join(["1"] * 1_000_000) + "]").encode()
        assert http.post(rpc, content=numbers).json()["error"]["code"] == -32600
        # 100 MB announced: refused from its headers, never read
        status, head = raw_post(port, "/rpc", 100 * 1024 * 1024, b"[1,1,1,")
        assert status == 413, head
        status, head = raw_post(port, "/v1/quotes", 100 * 1024 * 1024, b"{")
        assert status == 413 and b"application/problem+json" in head, head
        # rewriting the chain through /rpc
        for method, params in (("evm_snapshot", []), ("evm_increaseTime", [300]), ("evm_setAutomine", [False]),
                               ("anvil_impersonateAccount", ["0x" + "11" * 20]),
                               ("eth_sendTransaction", [{"to": "0x" + "11" * 20}])):
            answer = http.post(rpc, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).json()
            assert answer["error"]["code"] == -32601, (method, answer)
        # a validly signed order the contract would refuse costs nothing: 4xx, no transaction
        r = http.post(f"{api}/v1/orders", json={"intent": {}, "signature": "0x00", "spec": {}})
        assert 400 <= r.status_code < 500 and r.headers["content-type"] == "application/problem+json"
        after = rss_mib(proc.pid)
        assert http.get(f"{api}/healthz").json() == {"status": "ok"}
        head = http.post(rpc, json={"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber", "params": []}).json()
        assert head["result"].startswith("0x")
    assert proc.poll() is None
    print(f"market resident memory: {before:.0f} MiB before the probes, {after:.0f} MiB after")
    assert after - before < MAX_GROWTH_MIB, f"the market grew from {before:.0f} to {after:.0f} MiB"
