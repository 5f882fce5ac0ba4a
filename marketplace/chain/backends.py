"""The chain port: one interface, three backends.

``ChainBackend`` is what the rest of CONA sees of a chain: JSON-RPC requests
(one or a batch), a ``Web3`` object for ABI work, the funded development
accounts, snapshots and time control. Three backends implement it:

- ``EmbeddedBackend``: eth-tester with py-evm in this process; zero set-up, the default;
- ``AnvilBackend``: anvil from ``node_modules``, started and stopped by CONA as a
  managed subprocess (free port, readiness wait, clean shutdown, and a
  parent-death signal so no orphan survives a killed parent);
- ``RpcBackend``: any JSON-RPC URL (a real network, or a node someone else runs).

``request`` is the only place a backend does I/O (as web3.py's
``BaseProvider.make_request``). Errors come out as ``ChainError`` subclasses:
``ChainUnavailable`` when a node cannot be reached (after retries with
backoff), ``RpcError`` for an error answer, ``ChainMismatch`` for a wrong chain id.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from marketplace.chain.http_rpc import Call, HttpJsonRpc
from marketplace.errors import ChainError, ChainMismatch, ChainUnavailable, ConfigError, DecodeError, LimitExceeded
from marketplace.limits import (
    MAX_JSON_DEPTH,
    MAX_RPC_BATCH,
    MAX_RPC_BODY_BYTES,
    json_depth,
    parse_json,
    pin_recursion_limit,
)

if TYPE_CHECKING:
    from marketplace.chain.clock import ChainClock

log = logging.getLogger(__name__)

# eth-account imports py_ecc, which raises the recursion limit to 100,000 (a deep JSON document
# then overflows the C stack): every process that talks to a chain gets it back here.
pin_recursion_limit()

Account.enable_unaudited_hdwallet_features()

#: anvil's and hardhat's derivation path: m/44'/60'/0'/0/i
HD_PATH = "m/44'/60'/0'/0"


class RpcError(ChainError):
    """A JSON-RPC error answer. ``rpc_code`` and ``data`` are as the node sent them."""

    code = "rpc"

    def __init__(self, message: str, *, rpc_code: int | None = None, data: Any = None, method: str = "") -> None:
        super().__init__(message, rpc_code=rpc_code, method=method)
        self.rpc_code = rpc_code
        self.data = data
        self.method = method

    @property
    def revert_data(self) -> bytes | None:
        """The revert payload when the error is an execution revert, else None."""
        data = self.data
        if isinstance(data, dict):
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x"):
            try:
                return bytes.fromhex(data[2:])
            except ValueError:
                return None
        if isinstance(data, (bytes, bytearray)):
            return bytes(data)
        return None


def dev_accounts(mnemonic: str, count: int) -> list[LocalAccount]:
    """The funded development accounts of the local backends (same on embedded and anvil)."""
    return [Account.from_mnemonic(mnemonic, account_path=f"{HD_PATH}/{i}") for i in range(count)]


class ChainBackend(ABC):
    """What CONA needs of a chain. Subclasses implement ``_send`` and the test controls."""

    name: str = "abstract"
    #: the node answers ``cona_sendRawTransactionIfSucceeds`` (refuses, rather than mines, a transaction
    #: whose execution fails): the embedded chain does
    refuses_failed_sends: bool = False

    def __init__(self) -> None:
        self._chain_id: int | None = None
        self.accounts: list[LocalAccount] = []

    # -- I/O -----------------------------------------------------------------

    @abstractmethod
    def _send(self, calls: Sequence[Call]) -> list[dict[str, Any]]:
        """Send calls as one round trip; return their JSON-RPC response objects in order."""

    def forward(self, payload: Any) -> Any:
        """Relay a raw JSON-RPC request object (or a batch list) and return the response(s), ids kept.

        This is how the API serves the chain at ``/rpc`` to wallets and agents in other processes.
        A batch longer than ``MAX_RPC_BATCH`` or a request nested deeper than ``MAX_JSON_DEPTH`` is
        refused whole, before anything is allocated per item, with one JSON-RPC error (-32600).
        """
        refused = _over_limits(payload)
        if refused is not None:
            return refused
        items = payload if isinstance(payload, list) else [payload]
        if not items:
            return _rpc_error(None, -32600, "empty batch")
        answers = []
        calls, slots = [], []
        for n, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("method"), str):
                answers.append(_rpc_error(item.get("id") if isinstance(item, dict) else None, -32600,
                                          "invalid request"))
                continue
            params = item.get("params", [])
            calls.append(Call(item["method"], list(params) if isinstance(params, (list, tuple)) else [params]))
            slots.append((n, item.get("id")))
            answers.append(None)
        for (n, rid), resp in zip(slots, self._send(calls) if calls else []):
            body = {k: v for k, v in resp.items() if k in ("result", "error")}
            if "error" not in body:
                body.setdefault("result", None)
            answers[n] = {"jsonrpc": "2.0", "id": rid, **body}
        return answers if isinstance(payload, list) else answers[0]

    def forward_bytes(self, body: bytes) -> Any:
        """``forward`` for a request body as received: parsed within the limits (no recursion past
        ``MAX_JSON_DEPTH``), then relayed. A body that is not JSON answers -32700, one over a limit -32600."""
        try:
            payload = parse_json(body, max_bytes=MAX_RPC_BODY_BYTES, what="JSON-RPC request")
        except LimitExceeded as exc:
            return _rpc_error(None, exc.rpc_code, exc.message)
        except DecodeError as exc:
            return _rpc_error(None, -32700, f"parse error: {exc.message}")
        return self.forward(payload)

    def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        (resp,) = self._send([Call(method, list(params))])
        return _unwrap(method, resp)

    def batch(self, calls: Iterable[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Send many calls in one round trip. Each item is a result or an ``RpcError`` (not raised)."""
        items = [Call(m, list(p)) for m, p in calls]
        if not items:
            return []
        out: list[Any] = []
        for call, resp in zip(items, self._send(items)):
            try:
                out.append(_unwrap(call.method, resp))
            except RpcError as exc:
                out.append(exc)
        return out

    # -- common reads ----------------------------------------------------------

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.request("eth_chainId"), 16)
        return self._chain_id

    def block_number(self) -> int:
        return int(self.request("eth_blockNumber"), 16)

    def latest_block(self) -> dict[str, Any]:
        return self.request("eth_getBlockByNumber", ["latest", False])

    def check_chain_id(self, expected: int | None) -> None:
        if expected is not None and self.chain_id != expected:
            raise ChainMismatch(
                f"{self.describe()} has chain id {self.chain_id}, expected {expected}",
                hint="point CONA_RPC_URL at the right network or fix CONA_CHAIN_ID",
            )

    @property
    @abstractmethod
    def w3(self) -> Web3:
        """A Web3 object on this chain, for ABI encoding and convenience reads."""

    def describe(self) -> str:
        return self.name

    # -- test controls ---------------------------------------------------------

    def snapshot(self) -> Any:
        return self.request("evm_snapshot")

    def revert(self, snapshot_id: Any) -> None:
        if not self.request("evm_revert", [snapshot_id]):
            raise ChainError(f"{self.describe()} refused to revert to snapshot {snapshot_id}")

    def increase_time(self, seconds: int) -> None:
        self.request("evm_increaseTime", [int(seconds)])
        self.mine()

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self.request("evm_mine")

    def set_automine(self, enabled: bool) -> None:
        self.request("evm_setAutomine", [enabled])

    def close(self) -> None:
        """Release what the backend holds (processes, sockets). Idempotent."""

    def __enter__(self) -> "ChainBackend":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _rpc_error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


def _over_limits(payload: Any) -> dict[str, Any] | None:
    """The error answer for a request over the relay's limits, or None."""
    if isinstance(payload, list) and len(payload) > MAX_RPC_BATCH:
        return _rpc_error(None, -32600, f"batch of {len(payload)} requests is longer than the {MAX_RPC_BATCH} "
                                        "accepted; split it")
    depth = json_depth(payload, stop_above=MAX_JSON_DEPTH)
    if depth > MAX_JSON_DEPTH:
        return _rpc_error(None, -32600, f"request nested deeper than the {MAX_JSON_DEPTH} levels accepted")
    return None


def _unwrap(method: str, resp: dict[str, Any]) -> Any:
    if "error" in resp and resp["error"] is not None:
        err = resp["error"]
        if isinstance(err, dict):
            raise RpcError(
                f"{method}: {err.get('message', 'error')}",
                rpc_code=err.get("code"),
                data=err.get("data"),
                method=method,
            )
        raise RpcError(f"{method}: {err}", method=method)
    return resp.get("result")


# ----------------------------------------------------------------------------- embedded


class EmbeddedBackend(ChainBackend):
    """eth-tester + py-evm in this process, spoken to as a JSON-RPC node. Automines by default.

    ``data_dir``: keep the chain there (a block log, fsynced per block before the transaction is
    answered, replayed on the next start); without it the chain lives in memory only. ``clock``: the
    wall clock blocks are stamped by (tests pass a controllable one). See ``embedded_chain``.
    """

    name = "embedded"
    refuses_failed_sends = True

    def __init__(self, mnemonic: str, accounts: int = 20, *, data_dir: Path | None = None,
                 clock: "ChainClock | None" = None) -> None:
        super().__init__()
        from web3 import EthereumTesterProvider

        from marketplace.chain.embedded_chain import open_embedded

        self._embedded = open_embedded(mnemonic, accounts, HD_PATH, data_dir=data_dir, clock=clock)
        self.data_dir = data_dir
        self.tester = self._embedded.tester
        self.rpc = self._embedded.rpc
        self.clock = self._embedded.clock
        #: the block log's journal when the chain is kept in ``data_dir``, else None
        self.journal = self._embedded.journal
        self._w3 = Web3(EthereumTesterProvider(self.tester))
        self.accounts = dev_accounts(mnemonic, accounts)

    @property
    def w3(self) -> Web3:
        return self._w3

    def describe(self) -> str:
        return f"embedded chain in {self.data_dir}" if self.data_dir else self.name

    @property
    def failure(self) -> str | None:
        """Why the chain stopped answering (its block log could not be written), or None: for ``/healthz``."""
        return self.rpc.failure

    def _send(self, calls: Sequence[Call]) -> list[dict[str, Any]]:
        if len(calls) == 1:
            return [self.rpc.handle(calls[0].method, list(calls[0].params))]
        return self.rpc.handle_batch([(call.method, list(call.params)) for call in calls])

    def close(self) -> None:
        self._embedded.close()


class RpcBackend(ChainBackend):
    """Any JSON-RPC node. Development accounts only if keys are given."""

    name = "rpc"

    def __init__(self, url: str, *, keys: Sequence[str] = (), expected_chain_id: int | None = None,
                 retries: int = 4) -> None:
        super().__init__()
        self.url = url
        self.client = HttpJsonRpc(url, retries=retries)
        self.accounts = [Account.from_key(k) for k in keys]
        self._w3_obj: Web3 | None = None
        self.check_chain_id(expected_chain_id)

    def describe(self) -> str:
        return f"{self.name} node at {self.url}"

    @property
    def w3(self) -> Web3:
        if self._w3_obj is None:
            self._w3_obj = Web3(Web3.HTTPProvider(self.url))
        return self._w3_obj

    def _send(self, calls: Sequence[Call]) -> list[dict[str, Any]]:
        return self.client.send(calls)

    def close(self) -> None:
        self.client.close()


# ----------------------------------------------------------------------------- anvil


def find_anvil(root: Path) -> Path:
    base = root / "node_modules" / "@foundry-rs"
    for candidate in sorted(base.glob("anvil-*/bin/anvil")):
        if os.access(candidate, os.X_OK):
            return candidate
    raise ConfigError(
        f"anvil is not installed under {base}",
        hint="run `npm ci` (or `make run`): package.json pins @foundry-rs/anvil",
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM the child when the parent dies (PR_SET_PDEATHSIG), so no orphan node stays."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)
    except OSError:
        pass
    os.setpgrp()


class AnvilBackend(RpcBackend):
    """anvil started from ``node_modules`` as a managed subprocess."""

    name = "anvil"

    def __init__(self, root: Path, mnemonic: str, *, accounts: int = 20, chain_id: int = 31337,
                 balance_eth: int = 1_000_000, extra_args: Sequence[str] = (), startup_timeout: float = 20.0) -> None:
        binary = find_anvil(root)
        last_err = ""
        for _ in range(3):
            port = free_port()
            args = [
                str(binary), "--silent", "--host", "127.0.0.1", "--port", str(port),
                "--chain-id", str(chain_id), "--mnemonic", mnemonic, "--accounts", str(accounts),
                "--balance", str(balance_eth), "--hardfork", "cancun",
                # keep the last 1024 block states, not all: with full history every block makes
                # the next one slower (813 -> 410 tx/s over 3,000 blocks); logs and receipts stay
                "--prune-history", "1024", *extra_args,
            ]
            # stderr goes to a file, not a pipe: a pipe nobody reads would fill and stall the node
            self._stderr = tempfile.TemporaryFile()
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
                preexec_fn=_die_with_parent,
            )
            url = f"http://127.0.0.1:{port}"
            if self._wait_ready(url, startup_timeout):
                break
            last_err = self._stop_process()
        else:
            raise ChainUnavailable(f"anvil did not start: {last_err.strip()[:500]}", hint="run `npm ci` again")
        self.port = port
        super().__init__(url, expected_chain_id=chain_id)
        self.accounts = dev_accounts(mnemonic, accounts)
        log.info("anvil started on %s (pid %d)", url, self.process.pid)

    def _wait_ready(self, url: str, timeout: float) -> bool:
        probe = HttpJsonRpc(url, retries=0, timeout=1.0)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    probe.send([Call("eth_chainId", [])])
                    return True
                except ChainError:
                    time.sleep(0.05)
            return False
        finally:
            probe.close()

    def _stop_process(self) -> str:
        """Stop the node (TERM, then KILL after 5 s) and return what it wrote to stderr. Idempotent."""
        proc = getattr(self, "process", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        err_file = getattr(self, "_stderr", None)
        if err_file is None or err_file.closed:
            return ""
        err_file.seek(0)
        text = err_file.read().decode(errors="replace")
        err_file.close()
        return text

    def describe(self) -> str:
        return f"anvil at {self.url}"

    def close(self) -> None:
        super().close()
        self._stop_process()


# ----------------------------------------------------------------------------- factory


def open_backend(kind: str, *, root: Path, mnemonic: str, accounts: int = 20, rpc_url: str | None = None,
                 chain_id: int | None = None, keys: Sequence[str] = (), data_dir: Path | None = None) -> ChainBackend:
    """Build a backend from settings: ``embedded``, ``anvil`` or ``rpc``.

    ``data_dir`` keeps an embedded chain there (durable, see ``EmbeddedBackend``). anvil cannot keep
    every confirmed block across a crash (its ``--state`` is written on exit or every interval; see
    docs/chain.md), so it is refused for anvil rather than half-kept."""
    if data_dir is not None and kind != "embedded":
        raise ConfigError(f"a chain data directory is for the embedded chain, not {kind}",
                          hint="a node reached by URL keeps its own state; anvil keeps none across a crash",
                          field="data_dir")
    if kind == "embedded":
        backend: ChainBackend = EmbeddedBackend(mnemonic, accounts, data_dir=data_dir)
        backend.check_chain_id(chain_id)
        return backend
    if kind == "anvil":
        return AnvilBackend(root, mnemonic, accounts=accounts, chain_id=chain_id or 31337)
    if kind == "rpc":
        if not rpc_url:
            raise ConfigError("chain=rpc needs a URL", hint="set CONA_RPC_URL or pass --rpc-url", field="rpc_url")
        return RpcBackend(rpc_url, keys=keys, expected_chain_id=chain_id)
    raise ConfigError(f"unknown chain backend {kind!r}", hint="use embedded, anvil or rpc", field="chain")
