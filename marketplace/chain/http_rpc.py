"""JSON-RPC over HTTP: the client every non-embedded backend speaks through.

``Call`` is one JSON-RPC call (method and params). ``HttpJsonRpc`` posts calls (one or a batch)
over a keep-alive connection per thread, retries connection failures with exponential backoff,
and raises ``ChainUnavailable`` naming the URL when the node stays unreachable. The calls CONA
retries are idempotent (reads, and raw signed transactions whose hash is fixed).
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Sequence

from marketplace.errors import ChainError, ChainUnavailable, ConfigError, DecodeError, LimitExceeded
from marketplace.limits import parse_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Call:
    method: str
    params: Sequence[Any]


class _KeepAliveHttp:
    """A minimal HTTP/1.1 keep-alive POST client for plain http.

    ``http.client`` spends ~140 µs per request parsing headers through the email package;
    a JSON-RPC node answers in tens of microseconds, so that overhead halved the writer's
    one-at-a-time throughput. This reads only what JSON-RPC needs: the status line,
    Content-Length or chunked encoding, and Connection: close.
    """

    def __init__(self, host: str, port: int, path: str, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self.head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                     "Content-Type: application/json\r\nContent-Length: ").encode()
        self.closed = False

    def post(self, body: bytes) -> tuple[int, bytes]:
        self.sock.sendall(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status_line = self.reader.readline(65537)
        if not status_line:
            raise ConnectionError("connection closed by the node")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ConnectionError(f"not an HTTP answer: {status_line[:80]!r}")
        status = int(parts[1])
        length, chunked = -1, False
        while True:
            line = self.reader.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and value.strip().lower() == b"close":
                self.closed = True
        if chunked:
            data = bytearray()
            while True:
                size = int(self.reader.readline(65537).split(b";")[0].strip(), 16)
                if size == 0:
                    self.reader.readline(65537)
                    break
                data += self.reader.read(size)
                self.reader.readline(65537)
            body_out = bytes(data)
        elif length >= 0:
            body_out = self.reader.read(length)
            if len(body_out) != length:
                raise ConnectionError("connection closed in the middle of an answer")
        else:
            body_out = self.reader.read()
            self.closed = True
        return status, body_out

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            self.sock.close()


class HttpJsonRpc:
    """A keep-alive JSON-RPC client (one connection per thread), with retry and backoff.

    Retries cover connection failures only; the calls CONA sends on retry are
    idempotent (reads, and raw signed transactions whose hash is fixed).
    """

    def __init__(self, url: str, *, timeout: float = 30.0, retries: int = 4, backoff: float = 0.2) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"not an http(s) JSON-RPC URL: {url!r}", field="rpc_url")
        self.url = url
        self._host = parsed.hostname
        self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._https = parsed.scheme == "https"
        self._path = parsed.path or "/"
        if parsed.query:
            self._path += "?" + parsed.query
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._local = threading.local()
        self._ids = itertools.count(1)

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout)
            else:
                conn = _KeepAliveHttp(self._host, self._port, self._path, self.timeout)
            self._local.conn = conn
        return conn

    def _roundtrip(self, body: bytes) -> tuple[int, bytes]:
        conn = self._conn()
        if isinstance(conn, _KeepAliveHttp):
            status, data = conn.post(body)
            if conn.closed:
                self._drop()
            return status, data
        conn.request("POST", self._path, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def post(self, payload: Any) -> Any:
        body = json.dumps(payload).encode()
        delay = self.backoff
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                status, data = self._roundtrip(body)
                if status >= 500 or status == 429:
                    raise ConnectionError(f"HTTP {status}")
                if status != 200:
                    raise ChainError(f"{self.url} answered HTTP {status}: {data[:200]!r}")
                # within the depth limit: a node's answer nested 100,000 deep must not take the process down
                return parse_json(data, max_bytes=None, what=f"the answer of {self.url}")
            except (LimitExceeded, DecodeError) as exc:
                raise ChainError(f"{self.url} answered with something that is not JSON: {exc}") from None
            except (OSError, http.client.HTTPException, ConnectionError, ValueError) as exc:
                last = exc
                self._drop()
                if attempt < self.retries:
                    log.warning("rpc %s unreachable (%s), retry %d in %.1fs", self.url, exc, attempt + 1, delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)
        raise ChainUnavailable(
            f"cannot reach the JSON-RPC node at {self.url}: {last}",
            hint="check that the node is running and the URL (CONA_RPC_URL) is right",
        )

    def send(self, calls: Sequence[Call]) -> list[dict[str, Any]]:
        reqs = [{"jsonrpc": "2.0", "id": next(self._ids), "method": c.method, "params": list(c.params)} for c in calls]
        if len(reqs) == 1:
            return [self.post(reqs[0])]
        answer = self.post(reqs)
        if not isinstance(answer, list):  # some nodes answer a batch with one error object
            return [answer] * len(reqs)
        by_id = {item.get("id"): item for item in answer}
        return [by_id.get(r["id"], {"error": {"code": -32603, "message": "no answer in batch"}}) for r in reqs]

    def close(self) -> None:
        self._drop()
