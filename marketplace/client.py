"""``ApiClient``: CONA's web API from the outside, one typed method per route its clients use.

The one HTTP client of the market's API, for the buyer's command line (``marketplace.cli``),
the provider agent (``provider_agent.daemon``, ``provider_agent.account``), the demo launcher
and the API benchmark (``bench/api.py``). Thin: a method sends one request and returns the
route's JSON document (or bytes, or a small typed value); it holds no state but the
connection pool.

Errors: an answer of 400 and above is an RFC 9457 problem detail (``marketplace.api``), and
becomes the ``ConaError`` of its status, named by ``problem_error``: 400/422 ``InputError``
(naming the ``field`` the API named), 404 ``NotFound``, 403/409 ``Rejected`` (its ``reason``)
or ``TransactionReverted`` (a reverted relay: the contract's decoded ``error`` and ``args``),
503 ``ChainUnavailable``, anything else ``ChainError``. The error's ``http_status`` is the
status the API answered. An API that does not answer at all is ``ApiUnreachable`` (a
``ChainUnavailable``) with ``unreachable_hint``, so a caller can tell "not delivered" from
"refused"; transport errors are retried ``attempts`` times in all (every write a client sends
is idempotent: an ``Idempotency-Key``, signed bytes, a sequence number).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Mapping

import httpx

from marketplace.errors import (ChainError, ChainUnavailable, ConaError, InputError, NotFound, Rejected,
                                TransactionReverted)

if TYPE_CHECKING:
    from marketplace.chain.deploy import Deployment

log = logging.getLogger(__name__)

OCTETS = {"content-type": "application/octet-stream"}
#: what ``ChainUnavailable`` suggests when the API does not answer, unless the client says better
UNREACHABLE_HINT = "is the market running (`cona up` or `cona serve`)?"


class ApiUnreachable(ChainUnavailable):
    """The API did not answer (refused connection, timeout, broken transfer): nothing was delivered."""

    code = "api-unreachable"


@dataclass(frozen=True, slots=True)
class LsaAnswer:
    """The engine's answer to an LSA it took: ``installed``, ``duplicate``, ``too-soon``, ..."""

    outcome: str
    reason: str | None = None


def problem_error(method: str, path: str, status: int, body: Any) -> ConaError:
    """The ``ConaError`` for a problem detail ``body`` (a dict, or whatever the answer held)
    that ``METHOD path`` got with ``status``."""
    if not isinstance(body, dict):
        body = {"detail": str(body)[:300]}
    detail = body.get("detail") or body.get("title") or f"HTTP {status}"
    fld = body.get("field")
    msg = f"{method} {path}: {detail}"
    exc: ConaError
    if status == 409 and body.get("error"):
        exc = TransactionReverted(msg, error=body.get("error"), args=body.get("args"), tx_hash=body.get("tx_hash"))
    elif status == 404:
        exc = NotFound(msg, field=fld)
    elif status in (400, 422):
        exc = InputError(msg, field=fld, hint=body.get("hint"))
    elif status in (403, 409):
        exc = Rejected(msg, reason=body.get("reason") or body.get("type", "rejected"), field=fld,
                       hint=body.get("hint"))
    elif status == 503:
        exc = ChainUnavailable(msg, hint=body.get("hint"))
    else:
        exc = ChainError(msg, hint=body.get("hint"))
    exc.http_status = status
    return exc


class ApiClient:
    """The market's web API at ``base`` (e.g. ``http://127.0.0.1:8000``); see the module docstring."""

    def __init__(self, base: str, *, timeout: float = 30.0, attempts: int = 1,
                 unreachable_hint: str = UNREACHABLE_HINT) -> None:
        self.base = base.rstrip("/")
        self.attempts = max(1, attempts)
        self.unreachable_hint = unreachable_hint
        self._http = httpx.Client(base_url=self.base, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ApiClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the wire ----------------------------------------------------------------------

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """Send one request (retrying transport errors); a problem detail raises its ``ConaError``."""
        resp: httpx.Response | None = None
        last: Exception | None = None
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(0.2 * attempt)
            try:
                resp = self._http.request(method, path, **kw)
                break
            except httpx.TransportError as exc:
                last = exc
            except httpx.HTTPError as exc:  # not a transport fault: sending again would not help
                last = exc
                break
        if resp is None:
            raise ApiUnreachable(f"cannot reach the market API at {self.base}: {last}", hint=self.unreachable_hint)
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {"detail": resp.text[:300]}
            raise problem_error(method, path, resp.status_code, body)
        return resp

    def get(self, path: str, **kw: Any) -> Any:
        """``GET path``'s JSON document (any read route; the typed methods below name the routes)."""
        return self._json(self.request("GET", path, **kw), "GET", path)

    def post(self, path: str, body: Any, **kw: Any) -> Any:
        return self._json(self.request("POST", path, json=body, **kw), "POST", path)

    @staticmethod
    def _json(resp: httpx.Response, method: str, path: str) -> Any:
        try:
            return resp.json()
        except ValueError:
            raise ChainError(f"{method} {path}: the API answered {resp.status_code} with no JSON: "
                             f"{resp.text[:200]!r}") from None

    # -- the market -----------------------------------------------------------------------

    def deployment(self) -> "Deployment":
        """``GET /v1/deployment``: the market's contracts and the chain they are on."""
        from marketplace.chain.deploy import Deployment  # the chain stack, only for the clients that need it

        return Deployment.from_dict(self.get("/v1/deployment"))

    def providers(self, **filters: Any) -> list[dict[str, Any]]:
        """``GET /v1/providers``: the providers the engine knows; ``filters`` left at None are not sent."""
        return self.get("/v1/providers", params={k: v for k, v in filters.items() if v is not None})

    def topology(self, *, geojson: bool = False) -> dict[str, Any]:
        """``GET /v1/topology``: nodes, links and where providers attach (or a GeoJSON collection)."""
        return self.get("/v1/topology", params={"format": "geojson"} if geojson else {})

    def quote(self, requirement: Mapping[str, Any], attachment: str | None) -> dict[str, Any]:
        """``POST /v1/quotes``: every provider's verdict, price and latency for a requirement."""
        return self.post("/v1/quotes", {"requirement": dict(requirement), "attachment": attachment})

    # -- orders --------------------------------------------------------------------------

    def place_order(self, body: Mapping[str, Any], idempotency_key: str) -> int:
        """``POST /v1/orders`` with a signed intent, its signature and spec; the order's id."""
        placed = self.post("/v1/orders", dict(body), headers={"Idempotency-Key": idempotency_key})
        return int(placed["id"])

    def order(self, order_id: int) -> dict[str, Any]:
        """``GET /v1/orders/{id}``: chain state, escrow, provider, spec and the engine's status."""
        return self.get(f"/v1/orders/{int(order_id)}")

    def order_spec(self, order_id: int) -> Any:
        """``GET /v1/orders/{id}/spec``: the order document the buyer signed the digest of."""
        return self.get(f"/v1/orders/{int(order_id)}/spec")

    def order_result(self, order_id: int) -> bytes:
        """``GET /v1/orders/{id}/result``: the result bytes (their keccak is the on-chain result hash)."""
        return self.request("GET", f"/v1/orders/{int(order_id)}/result").content

    def explain(self, order_id: int) -> dict[str, Any]:
        """``GET /v1/orders/{id}/explain``: why the order was (not) matched, per provider."""
        return self.get(f"/v1/orders/{int(order_id)}/explain")

    def relay(self, order_id: int, action: str, raw_tx: bytes) -> dict[str, Any]:
        """``POST /v1/orders/{id}/{cancel|dispute}``: the buyer's own signed transaction, relayed."""
        return self.post(f"/v1/orders/{int(order_id)}/{action}", {"raw_tx": "0x" + raw_tx.hex()})

    # -- providers (the agent) ---------------------------------------------------------------

    def post_lsa(self, raw: bytes) -> LsaAnswer:
        """``POST /v1/lsas``: a signed Compute LSA; what the engine did with it (a refusal raises)."""
        body = self._json(self.request("POST", "/v1/lsas", content=raw, headers=OCTETS), "POST", "/v1/lsas")
        if not isinstance(body, dict):
            body = {}
        return LsaAnswer(str(body.get("outcome", "")), body.get("reason"))

    def post_heartbeat(self, heartbeat: Mapping[str, Any]) -> None:
        """``POST /v1/heartbeats``: a signed heartbeat (``Heartbeat.to_dict()``)."""
        self.request("POST", "/v1/heartbeats", json=dict(heartbeat))

    # -- artifacts ---------------------------------------------------------------------------

    def put_artifact(self, body: bytes | IO[bytes], kind: str, claim_headers: Mapping[str, str]) -> dict[str, Any]:
        """``POST /v1/artifacts?kind=``: the bytes (or a file, streamed) with their signed upload
        authorization (``marketplace.artifacts.transfer.upload`` builds it); the stored artifact."""
        resp = self.request("POST", "/v1/artifacts", params={"kind": kind}, content=body,
                            headers={**OCTETS, **claim_headers})
        return self._json(resp, "POST", "/v1/artifacts")

    def artifact_info(self, digest: str) -> dict[str, Any]:
        """``GET /v1/artifacts/{digest}/info``: kinds, size, owners, what the kind checks found."""
        return self.get(f"/v1/artifacts/{digest}/info")

    def download(self, path: str, out: IO[bytes], chunk: int = 1 << 20) -> int:
        """``GET path`` streamed into ``out`` (a large artifact never sits in memory); the bytes written.
        The caller checks them (``transfer.fetch`` against their digest)."""
        try:
            with self._http.stream("GET", path) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    try:
                        body = resp.json()
                    except ValueError:
                        body = {"detail": resp.text[:300]}
                    raise problem_error("GET", path, resp.status_code, body)
                n = 0
                for part in resp.iter_bytes(chunk):
                    out.write(part)
                    n += len(part)
                return n
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"cannot reach the market API at {self.base}: {exc}",
                                 hint=self.unreachable_hint) from None

    def upload_result(self, order_id: int, blob: bytes) -> dict[str, Any]:
        """``POST /v1/orders/{id}/result``: the result bytes of a completed lease; the engine's
        receipt (``{"id", "result"}``: the digest it stored them under)."""
        path = f"/v1/orders/{int(order_id)}/result"
        return self._json(self.request("POST", path, content=blob, headers=OCTETS), "POST", path)
