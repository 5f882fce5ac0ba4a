"""The buyer's commands: ``cona quote``, ``cona providers``, ``cona order ...``, and ``cona dev``.

A buyer talks to a market through its web API only: HTTP for the engine (``/v1/...``) and
the market's chain through ``<api>/rpc``. The buyer's key never leaves this process:

- ``order place`` builds the order document (spec: requirement, workload, attachment),
  puts its digest (``marketplace.engine.spec``) in an ``OrderIntent`` with the buyer's next
  market nonce and a deadline, signs it (EIP-712), deposits the shortfall into the market
  first (the buyer's own transaction, through the writer over ``<api>/rpc``), then posts
  intent + signature + spec to ``POST /v1/orders`` with an ``Idempotency-Key`` derived from
  the intent's digest, so a retried post never places a second order;
- ``order cancel`` / ``order dispute`` sign ``ComputeMarket.cancel(id)`` / ``dispute(id)``
  as the buyer's own transaction and post its raw bytes to the API's relay
  (``marketplace.api.relay``), which checks the signer owns the order before relaying.

Keys: ``--key-file`` (an Ethereum V3 keystore) with ``--passphrase-file`` (or a prompt), or
``--dev-account N`` (the well-known development mnemonic), which is refused unless the
chain id is a local development chain's (``DEV_CHAIN_IDS``).

``cona dev`` holds the local-chain conveniences a walkthrough needs (``advance-time``,
``fund``); both refuse any chain that is not a development chain.

Every command takes ``--api URL`` (default ``$CONA_API_URL`` or http://127.0.0.1:8000) and
``--json``. Errors are ``ConaError``s (``cona`` prints one line and exits 2); an API problem
detail becomes the error of its status, naming the field the API named.

Wired into ``cona`` as::

    app.command("quote")(buyer.quote)
    app.command("providers")(buyer.providers)
    app.add_typer(buyer.order_app, name="order")
    app.add_typer(buyer.dev_app, name="dev")
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer
from rich.live import Live
from rich.table import Table

from marketplace.errors import (ChainError, ChainMismatch, ChainUnavailable, ConaError, InputError, NotFound,
                                Rejected, TransactionReverted)
from marketplace.results import parse_result as parse_result_record
from marketplace.results import result_digest

log = logging.getLogger(__name__)

DEFAULT_API = "http://127.0.0.1:8000"
#: chain ids of local development chains, where the well-known dev keys and time travel are allowed:
#: eth-tester/py-evm (the embedded chain), anvil and hardhat, ganache and geth --dev
DEV_CHAIN_IDS = {131277322940537: "embedded (eth-tester)", 31337: "anvil/hardhat", 1337: "ganache/geth --dev"}
#: the dev account ``cona dev fund`` pays from: the last of the 20, which no role or demo provider uses
FAUCET_ACCOUNT = 19
#: states an order goes through when all is well, in order
PROGRESS = ("open", "assigned", "running", "completed", "settled")
_EVENT_STATE = {"OrderPlaced": "open", "Assigned": "assigned", "Accepted": "running", "Completed": "completed",
                "Settled": "settled", "Cancelled": "cancelled", "AcceptanceTimedOut": "assigned",
                "OrderFailed": "assigned", "Disputed": "disputed", "Resolved": "resolved"}
_FINAL = ("settled", "cancelled", "refunded", "resolved")

order_app = typer.Typer(help="Place, follow, cancel and dispute orders; fetch results and explanations.",
                        no_args_is_help=True)
dev_app = typer.Typer(help="Local development chains only: move time, fund accounts.", no_args_is_help=True)

ApiOpt = typer.Option(None, "--api", help="the market's API URL (default $CONA_API_URL or http://127.0.0.1:8000)")
JsonOpt = typer.Option(False, "--json", help="print JSON for scripts")
KeyFileOpt = typer.Option(None, "--key-file", help="the buyer's Ethereum V3 keystore", dir_okay=False)
PassOpt = typer.Option(None, "--passphrase-file", help="the keystore's passphrase, first line (default: prompt)",
                       dir_okay=False)
DevOpt = typer.Option(None, "--dev-account", min=0, max=999,
                      help="sign with development account N (local dev chains only)")


def _api_url(api: Optional[str]) -> str:
    return (api or os.environ.get("CONA_API_URL") or DEFAULT_API).rstrip("/")


# ============================================================================ HTTP


class ApiClient:
    """The market's web API. Problem details come back as ``ConaError``s naming the field."""

    def __init__(self, base: str, timeout: float = 30.0) -> None:
        import httpx

        self.base = base
        self._http = httpx.Client(base_url=base, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        last: Exception | None = None
        for attempt in range(3):  # every write here is idempotent (Idempotency-Key, signed bytes)
            try:
                resp = self._http.request(method, path, **kw)
                break
            except httpx.TransportError as exc:
                last = exc
                time.sleep(0.2 * (attempt + 1))
        else:
            raise ChainUnavailable(f"cannot reach the market API at {self.base}: {last}",
                                   hint="is `cona up` running? pass --api URL or set CONA_API_URL")
        if resp.status_code >= 400:
            raise _problem_error(method, path, resp)
        return resp

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw).json()

    def post(self, path: str, body: Any, **kw: Any) -> Any:
        return self.request("POST", path, json=body, **kw).json()


def _problem_error(method: str, path: str, resp: Any) -> ConaError:
    try:
        body = resp.json()
    except ValueError:
        body = {"detail": resp.text[:300]}
    if not isinstance(body, dict):
        body = {"detail": str(body)[:300]}
    detail = body.get("detail") or body.get("title") or f"HTTP {resp.status_code}"
    fld = body.get("field")
    msg = f"{method} {path}: {detail}"
    status = resp.status_code
    if status == 409 and body.get("error"):
        return TransactionReverted(msg, error=body.get("error"), args=body.get("args"), tx_hash=body.get("tx_hash"))
    if status == 404:
        return NotFound(msg, field=fld)
    if status in (400, 422):
        return InputError(msg, field=fld, hint=body.get("hint"))
    if status in (403, 409):
        return Rejected(msg, reason=body.get("reason") or body.get("type", "rejected"), field=fld, hint=body.get("hint"))
    if status == 503:
        return ChainUnavailable(msg, hint=body.get("hint"))
    return ChainError(msg, hint=body.get("hint"))


# ============================================================================ the market over the API


@dataclass
class Market_:
    """The API, the market's chain over ``<api>/rpc`` and the typed market client."""

    api: ApiClient
    chain: Any
    deployment: Any
    market: Any

    @property
    def chain_id(self) -> int:
        return int(self.deployment.chain_id)

    @property
    def is_dev(self) -> bool:
        return self.chain_id in DEV_CHAIN_IDS

    def close(self) -> None:
        self.chain.close()
        self.api.close()


def _connect(api: Optional[str]) -> Market_:
    from marketplace.chain.contracts import Chain
    from marketplace.chain.deploy import Deployment
    from marketplace.chain.market import Market
    from marketplace.settings import ConaSettings

    client = ApiClient(_api_url(api))
    try:
        dep = Deployment.from_dict(client.get("/v1/deployment"))
        chain = Chain.open(ConaSettings(chain="rpc", rpc_url=f"{client.base}/rpc"))
    except BaseException:
        client.close()
        raise
    try:
        if chain.backend.chain_id != dep.chain_id:
            raise ChainMismatch(f"{client.base}/rpc serves chain {chain.backend.chain_id}, the deployment is on "
                                f"{dep.chain_id}")
        market = Market.from_deployment(chain, dep)
    except BaseException:
        chain.close()
        client.close()
        raise
    return Market_(client, chain, dep, market)


def _dev_only(m: Market_, what: str) -> None:
    if not m.is_dev:
        raise Rejected(f"{what} works on local development chains only; chain {m.chain_id} is not one",
                       reason="not-a-dev-chain", field="chain_id",
                       hint=f"development chain ids: {', '.join(f'{k} ({v})' for k, v in DEV_CHAIN_IDS.items())}")


def dev_signer(m: Market_, n: int) -> Any:
    """Development account ``n`` of the project's mnemonic; refused on any non-dev chain."""
    from marketplace.chain.backends import dev_accounts
    from marketplace.chain.writer import Signer
    from marketplace.settings import ConaSettings

    _dev_only(m, "--dev-account")
    return Signer(dev_accounts(ConaSettings().project().mnemonic, n + 1)[n].key)


def keystore_signer(key_file: Path, passphrase_file: Optional[Path]) -> Any:
    """The signer in an Ethereum V3 keystore file (passphrase from a file or a prompt, never an argument)."""
    from eth_keyfile import decode_keyfile_json

    from marketplace.chain.writer import Signer
    from marketplace.passphrase import read_passphrase

    try:
        doc = json.loads(Path(key_file).read_text())
    except FileNotFoundError:
        raise InputError(f"no keystore at {key_file}", field="key_file") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{key_file} is not a V3 keystore: {exc}", field="key_file") from None
    phrase = read_passphrase(passphrase_file)
    try:
        key = decode_keyfile_json(doc, phrase.encode())
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise InputError(f"wrong passphrase for {key_file}", field="passphrase") from None
        raise InputError(f"{key_file} is not a V3 keystore: {exc}", field="key_file") from None
    except (KeyError, TypeError) as exc:
        raise InputError(f"{key_file} is not a V3 keystore: missing {exc}", field="key_file") from None
    return Signer(bytes(key))


def _signer(m: Market_, key_file: Optional[Path], passphrase_file: Optional[Path], dev_account: Optional[int]) -> Any:
    if (key_file is None) == (dev_account is None):
        raise InputError("give exactly one of --key-file FILE or --dev-account N", field="key_file",
                         hint="--dev-account is for local development chains only")
    if key_file is not None:
        return keystore_signer(key_file, passphrase_file)
    return dev_signer(m, dev_account)


def _out() -> Any:
    from marketplace.cli.main import out

    return out


def _emit(data: Any, as_json: bool, renderable: Any = None) -> None:
    from marketplace.cli.main import emit

    emit(data, as_json, renderable)


def _short(h: str) -> str:
    """An address or hash shortened for a table (``--json`` always prints them whole)."""
    h = str(h)
    return h[:6] + "…" + h[-4:] if len(h) > 14 else h


def _eth(wei: int | str) -> str:
    wei = int(wei)
    return f"{wei / 10**18:.6f} ETH" if wei >= 10**12 else f"{wei} wei"


# ============================================================================ requirement flags


def requirement_dict(device_class: str, count: int, share_milli: int, min_memory_mib: Optional[int],
                     min_system_memory_mib: Optional[int], precision: Optional[str], min_flops: Optional[float],
                     feature: list[str], max_latency_ms: Optional[float], max_price: Optional[int],
                     domain: Optional[int], duration: int, cpu_milli: int) -> dict[str, Any]:
    """The requirement the flags describe, normalised by ``Requirement`` (which names a bad field)."""
    from marketplace.resources.requirement import Requirement

    raw = {"device_class": device_class, "count": count, "share_milli": share_milli, "duration_s": duration,
           "cpu_milli": cpu_milli, "features": list(feature)}
    for k, v in (("min_memory_mib", min_memory_mib), ("min_system_memory_mib", min_system_memory_mib),
                 ("precision", precision), ("min_flops", min_flops), ("max_latency_ms", max_latency_ms),
                 ("max_price", max_price), ("domain", domain)):
        if v is not None:
            raw[k] = v
    try:
        return Requirement.from_dict(raw).to_dict()
    except ConaError as exc:
        f = exc.fields.get("field")
        raise InputError(exc.message, field=f, hint=exc.hint or (f"check --{str(f).replace('_', '-')}" if f else None)) \
            from None


# typer options shared by quote and order place
DeviceOpt = typer.Option(..., "--device-class", help="cpu, gpu, npu or tpu")
CountOpt = typer.Option(1, "--count", min=1, help="devices (for cpu: logical CPUs)")
ShareOpt = typer.Option(1000, "--share-milli", min=1, max=1000, help="thousandths of each device")
MemOpt = typer.Option(None, "--min-memory-mib", min=0, help="device memory per device (VRAM), MiB")
SysMemOpt = typer.Option(None, "--min-system-memory-mib", min=0, help="host memory, MiB")
PrecOpt = typer.Option(None, "--precision", help="fp64, fp32, fp16, bf16, int8, ... (with --min-flops)")
FlopsOpt = typer.Option(None, "--min-flops", help="per device, at --precision")
FeatOpt = typer.Option([], "--feature", help="a required feature (repeatable), e.g. avx512")
LatOpt = typer.Option(None, "--max-latency-ms", help="network latency bound from --attachment")
PriceOpt = typer.Option(None, "--max-price", min=0, help="wei per device-hour at most")
DomainOpt = typer.Option(None, "--domain", help="only providers in this network domain")
DurOpt = typer.Option(3600, "--duration", min=1, help="lease length, seconds")
CpuMilliOpt = typer.Option(0, "--cpu-milli", min=0, help="host CPU an accelerator job needs, thousandths")
AttOpt = typer.Option(None, "--attachment", help="the topology node the buyer sits at (for latency)")


# ============================================================================ quote, providers


def quote(device_class: str = DeviceOpt, count: int = CountOpt, share_milli: int = ShareOpt,
          min_memory_mib: Optional[int] = MemOpt, min_system_memory_mib: Optional[int] = SysMemOpt,
          precision: Optional[str] = PrecOpt, min_flops: Optional[float] = FlopsOpt, feature: list[str] = FeatOpt,
          max_latency_ms: Optional[float] = LatOpt, max_price: Optional[int] = PriceOpt,
          domain: Optional[int] = DomainOpt, duration: int = DurOpt, cpu_milli: int = CpuMilliOpt,
          attachment: Optional[str] = AttOpt, api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """Which providers would serve a requirement: price, latency, score, and why the others are left out."""
    req = requirement_dict(device_class, count, share_milli, min_memory_mib, min_system_memory_mib, precision,
                           min_flops, feature, max_latency_ms, max_price, domain, duration, cpu_milli)
    client = ApiClient(_api_url(api))
    try:
        doc = client.post("/v1/quotes", {"requirement": req, "attachment": attachment})
    finally:
        client.close()
    if as_json:
        _emit(doc, True)
        return
    table = Table(title=f"quote: {count} x {device_class} for {duration} s"
                  + (f" from node {attachment}" if attachment else ""))
    for col in ("provider", "fits", "score", "price / device-h", "cost", "latency ms", "why not"):
        table.add_column(col, no_wrap=col in ("provider",))
    from marketplace.chain.market import cost

    fits = 0
    for p in doc.get("providers", []):
        fits += bool(p["feasible"])
        price = p.get("price")
        why = "; ".join(r["message"] for r in p.get("rejections", []))
        table.add_row(_short(p["provider"]) + (" *" if p["provider"] == doc.get("best") else ""),
                      "[green]yes[/]" if p["feasible"] else "[red]no[/]",
                      "" if p.get("total") is None else f"{p['total']:.1f}",
                      "" if price is None else _eth(price),
                      "" if price is None else _eth(cost(count, duration, int(price))),
                      "" if p.get("latency_ms") is None else f"{p['latency_ms']:.2f}", why)
    out = _out()
    out.print(table)
    out.print(f"{fits} provider(s) fit; best (*): {doc.get('best')}")


def providers(api: Optional[str] = ApiOpt, as_json: bool = JsonOpt,
              device_class: Optional[str] = typer.Option(None, "--device-class", help="only those with this class"),
              min_vram_mib: Optional[int] = typer.Option(None, "--min-vram-mib", help="memory per device of that class"),
              domain: Optional[int] = typer.Option(None, "--domain", help="only this network domain (AS)"),
              max_price: Optional[int] = typer.Option(None, "--max-price", help="wei per unit-hour, at most"),
              ) -> None:
    """The providers the engine knows (a signed LSA installed): hardware, node, price, load."""
    params = {k: v for k, v in {"device_class": device_class, "min_vram_mib": min_vram_mib, "domain": domain,
                                "max_price": max_price}.items() if v is not None}
    client = ApiClient(_api_url(api))
    try:
        items = client.get("/v1/providers", params=params)
    finally:
        client.close()
    if as_json:
        _emit(items, True)
        return
    table = Table(title=f"{len(items)} provider(s)")
    for col in ("address", "host", "devices", "node", "domain", "price", "load", "status"):
        table.add_column(col, no_wrap=col == "address")
    for p in items:
        devs = ", ".join(f"{d['count']}x {d['model']}" + (f" {d['memory_mib'] // 1024} GiB" if d.get("memory_mib")
                                                          else "") for d in p.get("devices", []))
        table.add_row(_short(p["address"]), str(p.get("hostname", "")), devs, str(p.get("attachment")), str(p.get("domain")),
                      _eth(p.get("price") or 0), f"{float(p.get('load') or 0):.2f}", str(p.get("status")))
    _out().print(table)


def topology(api: Optional[str] = ApiOpt, as_json: bool = JsonOpt,
             geojson: bool = typer.Option(False, "--geojson", help="print the GeoJSON FeatureCollection")) -> None:
    """The network the market runs on: nodes, links with latency and capacity, where providers attach."""
    client = ApiClient(_api_url(api))
    try:
        doc = client.get("/v1/topology", params={"format": "geojson"} if geojson else {})
    finally:
        client.close()
    if as_json or geojson:
        _emit(doc, True)
        return
    attached: dict[str, list[str]] = {}
    for p in doc.get("providers", []):
        attached.setdefault(str(p.get("attachment")), []).append(str(p.get("hostname") or _short(p["address"])))
    degree: dict[str, int] = {}
    for link in doc["links"]:
        degree[link["u"]] = degree.get(link["u"], 0) + 1
        degree[link["v"]] = degree.get(link["v"], 0) + 1
    table = Table(title=f"{doc['name']}: {len(doc['nodes'])} nodes, {len(doc['links'])} links, "
                        f"{len(doc.get('providers', []))} providers")
    for col in ("node", "label", "lat", "lon", "links", "providers"):
        table.add_column(col)
    for n in doc["nodes"]:
        table.add_row(n["id"], n.get("label") or "", "" if n.get("lat") is None else f"{n['lat']:.2f}",
                      "" if n.get("lon") is None else f"{n['lon']:.2f}", str(degree.get(n["id"], 0)),
                      ", ".join(attached.get(n["id"], [])))
    _out().print(table)


# ============================================================================ order place


def _workload_input(input_text: Optional[str], input_hex: Optional[str], input_file: Optional[Path]) -> bytes:
    given = [x for x in (input_text, input_hex, input_file) if x is not None]
    if len(given) > 1:
        raise InputError("give at most one of --input, --input-hex, --input-file", field="input")
    if input_hex is not None:
        try:
            return bytes.fromhex(input_hex.removeprefix("0x"))
        except ValueError:
            raise InputError("--input-hex is not hex", field="input_hex") from None
    if input_file is not None:
        try:
            return Path(input_file).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read --input-file {input_file}: {exc.strerror}", field="input_file") from None
    return (input_text or "").encode()


@order_app.command("place")
def place(device_class: str = DeviceOpt, count: int = CountOpt, share_milli: int = ShareOpt,
          min_memory_mib: Optional[int] = MemOpt, min_system_memory_mib: Optional[int] = SysMemOpt,
          precision: Optional[str] = PrecOpt, min_flops: Optional[float] = FlopsOpt, feature: list[str] = FeatOpt,
          max_latency_ms: Optional[float] = LatOpt,
          max_price: int = typer.Option(..., "--max-price", min=1, help="wei per device-hour at most (see `cona quote`)"),
          domain: Optional[int] = DomainOpt, duration: int = DurOpt, cpu_milli: int = CpuMilliOpt,
          attachment: str = typer.Option(..., "--attachment", help="the topology node the buyer sits at"),
          module: str = typer.Option(..., "--module", help="the workload: sha256, matmul, nbody, ..."),
          input_text: Optional[str] = typer.Option(None, "--input", help="the workload's stdin, as text"),
          input_hex: Optional[str] = typer.Option(None, "--input-hex", help="the workload's stdin, as hex"),
          input_file: Optional[Path] = typer.Option(None, "--input-file", help="the workload's stdin, from a file"),
          fuel: int = typer.Option(10**10, "--fuel", min=1, help="the most wasm fuel the run may use"),
          tier_proof: Optional[str] = typer.Option(None, "--tier-proof", help="a tier proof, hex (`cona tier prove`)"),
          tier: int = typer.Option(0, "--tier", min=0, max=255, help="the VIP tier the proof is for"),
          valid_for: int = typer.Option(600, "--valid-for", min=30, help="seconds the signed intent stays valid"),
          idempotency_key: Optional[str] = typer.Option(None, "--idempotency-key",
                                                        help="default: derived from the signed intent"),
          key_file: Optional[Path] = KeyFileOpt, passphrase_file: Optional[Path] = PassOpt,
          dev_account: Optional[int] = DevOpt,
          watch_: bool = typer.Option(False, "--watch", help="then follow the order live"),
          until: Optional[str] = typer.Option(None, "--until", help="with --watch: stop at this state"),
          timeout: float = typer.Option(600.0, "--timeout", help="with --watch: give up after this many seconds"),
          api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """Sign an order (EIP-712) and place it through the API; prints the order id."""
    from marketplace.engine.spec import Spec

    req = requirement_dict(device_class, count, share_milli, min_memory_mib, min_system_memory_mib, precision,
                           min_flops, feature, max_latency_ms, max_price, domain, duration, cpu_milli)
    data = _workload_input(input_text, input_hex, input_file)
    spec = Spec.from_dict({"requirement": req, "workload": {"module": module, "input": data.hex(), "fuel": fuel},
                           "attachment": attachment})
    proof = b""
    if tier_proof:
        try:
            proof = bytes.fromhex(tier_proof.removeprefix("0x"))
        except ValueError:
            raise InputError("--tier-proof is not hex", field="tier_proof") from None
    m = _connect(api)
    try:
        signer = _signer(m, key_file, passphrase_file, dev_account)
        intent = m.market.intent(signer.address, requirement=spec.digest(), device_class=int(spec.requirement.device_class),
                                 units=spec.requirement.count, duration=spec.requirement.duration_s,
                                 max_price=max_price, tier=tier, valid_for=valid_for)
        escrow = intent.escrow()
        balance = m.market.balance(signer.address)
        deposit_tx = None
        if balance < escrow:
            deposit_tx = m.market.deposit(signer, escrow - balance)
            log.info("deposited %d for %s (tx %s)", escrow - balance, signer.address, deposit_tx.tx_hash)
        signature = m.market.sign(signer, intent)
        key = idempotency_key or "place:" + m.market.digest(intent).hex()
        body = {"intent": intent.to_dict(), "signature": "0x" + signature.hex(), "spec": spec.to_dict()}
        if proof:
            body["tier_proof"] = "0x" + proof.hex()
        placed = m.api.post("/v1/orders", body, headers={"Idempotency-Key": key})
        oid = int(placed["id"])
    finally:
        m.close()
    info = {"id": oid, "buyer": signer.address, "escrow": str(escrow), "spec_digest": "0x" + spec.digest().hex(),
            "deposit_tx": None if deposit_tx is None else deposit_tx.tx_hash, "idempotency_key": key}
    if not watch_:
        if as_json:
            _emit(info, True)
        else:
            _out().print(oid)
        return
    # with --watch the live progress goes to stderr and stdout still gets just the id, so
    # `ORDER=$(cona order place ... --watch)` both shows the order and captures its id
    from marketplace.cli.main import console

    if not as_json:
        console.print(f"order {oid} placed by {signer.address}: escrow {_eth(escrow)}"
                      + (f" (deposited in tx {deposit_tx.tx_hash})" if deposit_tx is not None else ""))
    watched = _watch(api, oid, until, timeout, as_json, screen=None if as_json else console, emit_json=False)
    if as_json:
        _emit({**info, **watched}, True)
    else:
        _out().print(oid)


# ============================================================================ order watch


def _states_from_history(history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The latest event that put the order in each state (from the engine's chain-derived history)."""
    seen: dict[str, dict[str, Any]] = {}
    for h in history:
        st = _EVENT_STATE.get(h.get("event", ""))
        if st is not None:
            seen[st] = h
    return seen


def _progress_table(view: dict[str, Any], settlement: dict[str, Any] | None) -> Table:
    state = view["state"]
    hist = _states_from_history(view.get("engine", {}).get("history", []))
    steps = list(PROGRESS)
    if state not in steps:
        steps.append(state)
    table = Table(title=f"order {view['id']}: {state}  (provider {_short(view.get('provider'))})")
    for col in ("", "state", "block", "tx"):
        table.add_column(col, no_wrap=True)
    reached = steps.index(state) if state in steps else -1
    for i, st in enumerate(steps):
        h = hist.get(st)
        mark = "[green]✔[/]" if i <= reached else ("[yellow]…[/]" if i == reached + 1 and state not in _FINAL
                                                    else " ")
        table.add_row(mark, st.capitalize(), str(h["block"]) if h else "", _short(h["tx"]) if h else "")
    eng = view.get("engine", {})
    if eng.get("reasons"):
        table.caption = "engine: " + eng.get("status", "") + " " + json.dumps(eng["reasons"])[:200]
    if settlement:
        table.caption = "  ".join(f"{k} {_eth(v)}" for k, v in settlement.items() if k in ("paid", "fee", "refund"))
    return table


def _settlement(m: Market_, view: dict[str, Any]) -> dict[str, Any] | None:
    """The amounts of the order's final event, read from its transaction on chain."""
    from marketplace.chain.writer import Receipt

    for h in reversed(view.get("engine", {}).get("history", [])):
        if h.get("event") in ("Settled", "Cancelled", "Resolved", "AcceptanceTimedOut", "OrderFailed"):
            raw = m.chain.backend.request("eth_getTransactionReceipt", [h["tx"]])
            if not raw:
                return None
            for ev in m.market.decode(Receipt.from_rpc(raw)).events:
                if ev.name == h["event"] and int(ev.args.get("order", -1)) == int(view["id"]):
                    return {"event": ev.name, "tx": h["tx"], "block": h["block"],
                            **{k: str(v) for k, v in ev.args.items() if k in ("paid", "fee", "refund", "slashed")}}
    return None


def _done(state: str, until: Optional[str]) -> bool:
    if state in _FINAL or state == "disputed":
        return True
    if until is None:
        return False
    if state in PROGRESS and until in PROGRESS:
        return PROGRESS.index(state) >= PROGRESS.index(until)
    return state == until


def _watch(api: Optional[str], order_id: int, until: Optional[str], timeout: float, as_json: bool,
           screen: Any = None, emit_json: bool = True) -> dict[str, Any]:
    """Poll the order until ``until`` (or a final state); show it live on ``screen`` (default stdout),
    or print one JSON object (``as_json`` and ``emit_json``)."""
    if until is not None:
        until = until.lower()
        allowed = PROGRESS + ("disputed", "cancelled", "refunded", "resolved")
        if until not in allowed:
            raise InputError(f"--until {until!r} is not an order state", field="until", hint=", ".join(allowed))
    m = _connect(api)
    try:
        deadline = time.monotonic() + timeout
        view = m.api.get(f"/v1/orders/{order_id}")
        settlement = None
        screen = screen if screen is not None else (None if as_json else _out())
        live = None if screen is None else Live(_progress_table(view, None), console=screen, auto_refresh=False)
        if live is not None:
            live.start()
        try:
            last = None
            catch_up_by = time.monotonic() + 3.0
            while True:
                if view["state"] != last:
                    last = view["state"]
                    log.info("order %d: %s", order_id, last)
                if view["state"] in _FINAL:
                    settlement = _settlement(m, view)
                if live is not None:
                    live.update(_progress_table(view, settlement), refresh=True)
                if _done(view["state"], until):
                    # the state is read from the chain, the history from the engine's event index:
                    # give the index a moment to show the transaction that made this state
                    caught_up = view["state"] in _states_from_history(view.get("engine", {}).get("history", []))
                    if caught_up or time.monotonic() > catch_up_by:
                        break
                    time.sleep(0.2)
                    view = m.api.get(f"/v1/orders/{order_id}")
                    continue
                catch_up_by = time.monotonic() + 3.0
                if time.monotonic() > deadline:
                    raise ChainError(f"order {order_id} is still {view['state']} after {timeout:.0f}s",
                                     hint="see `cona order explain " + str(order_id) + "`")
                time.sleep(0.3)
                view = m.api.get(f"/v1/orders/{order_id}")
        finally:
            if live is not None:
                live.stop()
                screen.print()
    finally:
        m.close()
    result = {"id": order_id, "state": view["state"], "provider": view.get("provider"), "escrow": view.get("escrow"),
              "history": view.get("engine", {}).get("history", []), "settlement": settlement}
    if as_json:
        if emit_json:
            _emit(result, True)
    else:
        out = screen
        out.print(f"order {order_id} {view['state'].capitalize()}" + (f" by {view.get('provider')}"
                                                                      if int(view.get('provider', '0x0'), 16) else ""))
        if settlement and settlement["event"] == "Settled":
            total = int(settlement["paid"]) + int(settlement["refund"])
            out.print(f"paid {settlement['paid']} wei for the metered usage (fee {settlement['fee']}); refunded "
                      f"the unused {settlement['refund']} wei of the {total} wei escrow to the buyer")
        elif settlement and "refund" in settlement:
            out.print(f"refunded {settlement['refund']} wei to the buyer ({settlement['event']})")
    return result


@order_app.command("watch")
def watch(order_id: int = typer.Argument(..., help="the order id"),
          until: Optional[str] = typer.Option(None, "--until", help="stop at this state (default: a final state)"),
          timeout: float = typer.Option(600.0, "--timeout", help="give up after this many seconds (exit 2)"),
          api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """Follow an order live: Open -> Assigned -> Running -> Completed -> Settled, with provider and tx hashes."""
    _watch(api, order_id, until, timeout, as_json)


# ============================================================================ result, explain, show


def parse_result(blob: bytes) -> dict[str, Any]:
    """The provider's result bytes (``marketplace.results``) as a dict; bytes in another format are all output."""
    rec = parse_result_record(blob)
    if rec is None:
        return {"status": None, "exit_code": None, "output": blob}
    return {"status": rec.status, "exit_code": rec.exit_code, "output": rec.output}


@order_app.command("result")
def result(order_id: int = typer.Argument(..., help="the order id"),
           out_file: Optional[Path] = typer.Option(None, "--out", help="write the workload's output here"),
           api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """The order's result, checked against the result hash on chain."""
    client = ApiClient(_api_url(api))
    try:
        view = client.get(f"/v1/orders/{order_id}")
        blob = client.request("GET", f"/v1/orders/{order_id}/result").content
    finally:
        client.close()
    got = "0x" + result_digest(blob).hex()
    if got != view.get("result"):
        raise ChainError(f"order {order_id}: the result bytes hash to {got}, the chain holds {view.get('result')}",
                         hint="the API served bytes that are not the provider's committed result")
    res = parse_result(blob)
    if out_file is not None:
        Path(out_file).write_bytes(res["output"])
    text = res["output"].decode(errors="replace")
    doc = {"id": order_id, "result_hash": got, "status": res["status"], "exit_code": res["exit_code"],
           "bytes": len(res["output"]), "verified": True, "out": str(out_file) if out_file else None}
    if as_json:
        if out_file is None:
            doc["output"] = text if res["output"].isascii() else "0x" + res["output"].hex()
        _emit(doc, True)
        return
    out = _out()
    out.print(f"order {order_id}: {res['status']} (exit {res['exit_code']}), {len(res['output'])} bytes, "
              f"keccak {got} matches the chain")
    if out_file is None:
        out.print(text.rstrip("\n") if res["output"].isascii() else "0x" + res["output"].hex(), markup=False)
    else:
        out.print(f"written to {out_file}")


@order_app.command("explain")
def explain(order_id: int = typer.Argument(..., help="the order id"), api: Optional[str] = ApiOpt,
            as_json: bool = JsonOpt) -> None:
    """Why the order was (or was not) matched: each provider's verdict, scores and rejections."""
    client = ApiClient(_api_url(api))
    try:
        doc = client.get(f"/v1/orders/{order_id}/explain")
    finally:
        client.close()
    if as_json:
        _emit(doc, True)
        return
    table = Table(title=f"order {order_id}: {doc.get('status')}  best {doc.get('best')}")
    for col in ("provider", "fits", "score", "price", "latency ms", "why not"):
        table.add_column(col, no_wrap=col == "provider")
    for p in doc.get("providers", []):
        table.add_row(_short(p["provider"]), "yes" if p["feasible"] else "no",
                      "" if p.get("total") is None else f"{p['total']:.1f}",
                      "" if p.get("price") is None else _eth(p["price"]),
                      "" if p.get("latency_ms") is None else f"{p['latency_ms']:.2f}",
                      "; ".join(r["message"] for r in p.get("rejections", [])))
    _out().print(table)
    if doc.get("reasons"):
        _out().print("engine reasons: " + json.dumps(doc["reasons"]))


@order_app.command("show")
def show(order_id: int = typer.Argument(..., help="the order id"), api: Optional[str] = ApiOpt,
         field_: Optional[str] = typer.Option(None, "--field", help="print only this field (e.g. provider, state)"),
         as_json: bool = JsonOpt) -> None:
    """The order as the API reports it: chain state, escrow, provider, spec and the engine's status."""
    client = ApiClient(_api_url(api))
    try:
        view = client.get(f"/v1/orders/{order_id}")
    finally:
        client.close()
    if field_ is not None:
        if field_ not in view:
            raise InputError(f"an order has no field {field_!r}", field="field", hint=", ".join(sorted(view)))
        value = view[field_]
        typer.echo(value if isinstance(value, str) else json.dumps(value))
        return
    if as_json:
        _emit(view, True)
        return
    _out().print(_progress_table(view, None))
    _out().print(f"buyer {view['buyer']}  escrow {view['escrow']} wei  price {view['price']} wei/device-h  "
                 f"engine: {view.get('engine', {}).get('status')}")


@order_app.command("batch")
def batch(order_id: int = typer.Argument(..., help="the order id"), api: Optional[str] = ApiOpt,
          as_json: bool = JsonOpt) -> None:
    """The matching batch that assigned the order, from chain logs (for `cona audit replay`).

    The order's first ``Assigned`` event names its batch (``batchId``): the engine records the
    batch and assigns its orders in one ``assignBatch`` transaction, whose ``BatchCommitted``
    is read back to confirm. A manual ``assign`` names batch 0: no batch decided it."""
    m = _connect(api)
    try:
        c = m.market.contract
        head = m.chain.backend.block_number()
        assigned = [e for e in c.get_logs(m.deployment.block, head, event="Assigned")
                    if int(e.args["order"]) == order_id]
        if not assigned:
            raise NotFound(f"order {order_id} was never assigned on this market", field="order_id")
        first = assigned[0]
        bid = bytes(first.args["batchId"])
        if bid == b"\x00" * 32:
            raise NotFound(f"order {order_id} was assigned by hand (tx {first.tx_hash}), not by a matching batch",
                           field="order_id")
        receipt = m.chain.backend.request("eth_getTransactionReceipt", [first.tx_hash])
        committed = [e for e in c.decode_logs(receipt["logs"])
                     if e.name == "BatchCommitted" and bytes(e.args["batchId"]) == bid]
        if not committed:  # the contract emits both in one transaction: this would be a contract bug
            raise NotFound(f"no BatchCommitted for batch 0x{bid.hex()} in tx {first.tx_hash}", field="order_id")
        found = committed[0]
    finally:
        m.close()
    doc = {"order": order_id, "batch": "0x" + bid.hex(), "tx": first.tx_hash, "block": found.block_number,
           "inputs_hash": "0x" + bytes(found.args["inputsHash"]).hex(),
           "decisions_hash": "0x" + bytes(found.args["decisionsHash"]).hex(), "orders": int(found.args["orders"])}
    if as_json:
        _emit(doc, True)
    else:
        typer.echo(doc["batch"])


# ============================================================================ cancel, dispute (relayed)


def signed_call(m: Market_, signer: Any, fn: str, order_id: int) -> tuple[bytes, str]:
    """The buyer's own signed ``ComputeMarket.<fn>(order_id)`` (EIP-1559); gas estimated first, so a
    call the contract would refuse raises its decoded custom error before anything is signed."""
    from marketplace.chain.writer import TxRequest

    data = m.market.contract.abi.encode_call(fn, [order_id])
    req = TxRequest(to=m.market.address, data=data, label=f"ComputeMarket.{fn}({order_id})")
    w = m.chain.writer
    gas = w.estimate_gas(signer.address, req)
    nonce = int(m.chain.backend.request("eth_getTransactionCount", [signer.address, "pending"]), 16)
    return signer.sign_1559(chain_id=m.chain_id, nonce=nonce, tip=w.tip, max_fee=w.max_fee(), gas=gas,
                            to=m.market.address, value=0, data=data)


def _relay(action: str, order_id: int, key_file: Optional[Path], passphrase_file: Optional[Path],
           dev_account: Optional[int], api: Optional[str], as_json: bool) -> None:
    m = _connect(api)
    try:
        signer = _signer(m, key_file, passphrase_file, dev_account)
        raw, tx_hash = signed_call(m, signer, action, order_id)
        doc = m.api.post(f"/v1/orders/{order_id}/{action}", {"raw_tx": "0x" + raw.hex()})
    finally:
        m.close()
    if as_json:
        _emit(doc, True)
        return
    out = _out()
    out.print(f"order {order_id} {doc['state']} by {doc['from']} (tx {doc['tx']}, block {doc['block']})")
    for ev in doc.get("events", []):
        amounts = " ".join(f"{k}={v}" for k, v in ev["args"].items() if k in ("refund", "paid", "fee"))
        out.print(f"  {ev['contract']}.{ev['event']} {amounts}")


@order_app.command("cancel")
def cancel(order_id: int = typer.Argument(..., help="the order id"), key_file: Optional[Path] = KeyFileOpt,
           passphrase_file: Optional[Path] = PassOpt, dev_account: Optional[int] = DevOpt,
           api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """Cancel an order before its provider accepts it: the whole escrow comes back (signed by you, relayed)."""
    _relay("cancel", order_id, key_file, passphrase_file, dev_account, api, as_json)


@order_app.command("dispute")
def dispute(order_id: int = typer.Argument(..., help="the order id"), key_file: Optional[Path] = KeyFileOpt,
            passphrase_file: Optional[Path] = PassOpt, dev_account: Optional[int] = DevOpt,
            api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """Dispute a completed order within the dispute window: the arbiter decides (signed by you, relayed)."""
    _relay("dispute", order_id, key_file, passphrase_file, dev_account, api, as_json)


@order_app.command("balance")
def balance(key_file: Optional[Path] = KeyFileOpt, passphrase_file: Optional[Path] = PassOpt,
            dev_account: Optional[int] = DevOpt,
            address: Optional[str] = typer.Option(None, "--address", help="any account (no key needed)"),
            api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """The buyer's free balance in the market (refunds land here) and its ETH."""
    m = _connect(api)
    try:
        who = address or _signer(m, key_file, passphrase_file, dev_account).address
        free = m.market.balance(who)
        eth = int(m.chain.backend.request("eth_getBalance", [who, "latest"]), 16)
    finally:
        m.close()
    doc = {"address": who, "market_balance": str(free), "eth": str(eth)}
    if as_json:
        _emit(doc, True)
    else:
        _out().print(f"{who}: {free} wei free in the market ({_eth(free)}), {_eth(eth)} in the wallet")


# ============================================================================ cona dev


@dev_app.command("advance-time")
def advance_time(seconds: int = typer.Argument(..., min=1, max=366 * 24 * 3600, help="seconds to move forward"),
                 api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """Move a local chain's clock forward and mine a block (e.g. past a dispute window)."""
    m = _connect(api)
    try:
        _dev_only(m, "`cona dev advance-time`")
        before = m.market.chain_time()
        m.chain.backend.increase_time(seconds)
        after = m.market.chain_time()
    finally:
        m.close()
    _emit({"chain_id": m.chain_id, "before": before, "after": after}, as_json,
          f"chain {m.chain_id}: block time {before} -> {after} (+{after - before} s)")


@dev_app.command("fund")
def fund(address: str = typer.Argument(..., help="the account to fund"),
         eth: float = typer.Option(10.0, "--eth", min=0.000001, max=1000.0, help="ETH to send"),
         api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """Send ETH from a development account (the faucet, dev account 19) on a local chain."""
    from eth_utils import to_checksum_address

    try:
        to = to_checksum_address(address)
    except ValueError:
        raise InputError(f"not an address: {address!r}", field="address") from None
    m = _connect(api)
    try:
        faucet = dev_signer(m, FAUCET_ACCOUNT)
        rec = m.chain.writer.transact(faucet, to=to, value=int(eth * 10**18), label=f"fund {to}")
        bal = int(m.chain.backend.request("eth_getBalance", [to, "latest"]), 16)
    finally:
        m.close()
    _emit({"address": to, "sent": str(int(eth * 10**18)), "balance": str(bal), "tx": rec.tx_hash}, as_json,
          f"sent {eth} ETH to {to} (tx {rec.tx_hash}); balance {_eth(bal)}")
