"""Bad input and faults at the chain port: unreachable nodes, wrong chain ids, the anvil process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from marketplace.chain.backends import AnvilBackend, RpcBackend, free_port, open_backend
from marketplace.errors import ChainMismatch, ChainUnavailable, ConfigError
from tests.conftest import ROOT

pytestmark = pytest.mark.rpc


def test_unreachable_rpc_url_is_one_clear_error():
    port = free_port()  # nothing listens there
    with pytest.raises(ChainUnavailable) as info:
        RpcBackend(f"http://127.0.0.1:{port}", retries=1).chain_id
    msg = str(info.value)
    assert f"127.0.0.1:{port}" in msg and "running" in msg


def test_not_a_url_is_a_config_error():
    with pytest.raises(ConfigError):
        RpcBackend("localhost:8545")
    with pytest.raises(ConfigError, match="CONA_RPC_URL"):
        open_backend("rpc", root=ROOT, mnemonic="x", rpc_url=None)
    with pytest.raises(ConfigError, match="embedded, anvil or rpc"):
        open_backend("ganache", root=ROOT, mnemonic="x")


def test_rpc_backend_with_wrong_chain_id_is_refused(project):
    with AnvilBackend(ROOT, project.mnemonic, accounts=1) as node:
        with pytest.raises(ChainMismatch, match="chain id 31337, expected 1"):
            RpcBackend(node.url, expected_chain_id=1)
        ok = RpcBackend(node.url, expected_chain_id=31337)
        assert ok.block_number() == 0


def test_anvil_shuts_down_cleanly(project):
    node = AnvilBackend(ROOT, project.mnemonic, accounts=1)
    pid = node.process.pid
    node.close()
    node.close()  # idempotent
    assert node.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_no_orphan_anvil_when_the_parent_is_killed(project, tmp_path):
    """SIGKILL the process that owns anvil: the kernel's parent-death signal takes anvil down too."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from marketplace.chain.backends import AnvilBackend
        node = AnvilBackend(__import__("pathlib").Path({str(ROOT)!r}), {project.mnemonic!r}, accounts=1)
        print(node.process.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    anvil_pid = int(parent.stdout.readline())
    os.kill(anvil_pid, 0)  # alive
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(anvil_pid, 0)
        except ProcessLookupError:
            break
        # reap it if it became our zombie (it is not our child, so this only waits)
        time.sleep(0.05)
    else:
        os.kill(anvil_pid, signal.SIGKILL)
        pytest.fail("anvil outlived its killed parent")


def test_http_client_retries_a_dropped_node_with_backoff():
    """A node that fails twice (HTTP 503, then a dropped connection) is retried until it answers."""
    import http.server
    import json
    import threading

    from marketplace.chain.http_rpc import Call, HttpJsonRpc

    seen: list[str] = []

    class Flaky(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body["method"])
            if len(seen) == 1:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if len(seen) == 2:
                self.close_connection = True
                self.connection.shutdown(2)  # drop it on the floor
                return
            data = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": "0x7a69"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = HttpJsonRpc(f"http://127.0.0.1:{server.server_address[1]}", retries=3, backoff=0.01)
        (answer,) = client.send([Call("eth_chainId", [])])
        assert answer["result"] == "0x7a69"
        assert seen == ["eth_chainId"] * 3
    finally:
        server.shutdown()
