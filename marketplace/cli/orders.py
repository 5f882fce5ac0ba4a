"""The buyer's orders: ``cona order place|watch|result|verify|explain|show|batch|cancel|dispute|balance``.

A buyer talks to a market through its web API only (``marketplace.cli.remote``): HTTP for the
engine (``/v1/...``) and the market's chain through ``<api>/rpc``. The buyer's key never leaves
this process (``marketplace.cli.keys``):

- ``place`` builds the order document (spec: requirement, workload, attachment), puts its
  digest (``marketplace.engine.spec``) in an ``OrderIntent`` with the buyer's next market nonce
  and a deadline, signs it (EIP-712), deposits the shortfall into the market first (the
  buyer's own transaction, through the writer over ``<api>/rpc``), then posts intent +
  signature + spec to ``POST /v1/orders`` with an ``Idempotency-Key`` derived from the intent's
  digest, so a retried post never places a second order;
- ``cancel`` / ``dispute`` sign ``ComputeMarket.cancel(id)`` / ``dispute(id)`` as the buyer's
  own transaction and post its raw bytes to the API's relay (``marketplace.api.relay``), which
  checks the signer owns the order before relaying;
- ``watch`` (and ``place --watch``) follow the order live (``marketplace.cli.watch``);
- ``result`` checks the result bytes against the result hash on chain (``marketplace.results``) and
  downloads the output files the committed manifest names; ``verify`` re-runs a deterministic wasm
  order here and compares (``marketplace.cli.results``);
- ``place --wasm FILE | --image ARCHIVE | --input-artifact NAME=FILE`` uploads those files as
  artifacts first (``marketplace.cli.workload``, ``marketplace.cli.artifacts``).

Every command takes ``--api URL`` and ``--json``. Errors are ``ConaError``s (``cona`` prints one
line and exits 2); an API problem detail becomes the error of its status, naming the field the
API named (``marketplace.client``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from marketplace.cli import results
from marketplace.cli import workload as W
from marketplace.cli.artifacts import put_file
from marketplace.cli.keys import DevOpt, KeyFileOpt, PassOpt, buyer_signer, signed_call
from marketplace.cli.options import JsonOpt
from marketplace.cli.output import console, emit, eth, out, run, short
from marketplace.cli.quote import (CountOpt, CpuMilliOpt, DeviceOpt, DomainOpt, DurOpt, FeatOpt, FlopsOpt, GpuModelOpt,
                                   LatOpt, MemOpt, PrecOpt, ShareOpt, SysMemOpt, requirement_dict)
from marketplace.cli.remote import ApiOpt, RemoteMarket, api_client, connect
from marketplace.cli.watch import progress_table, watch_order
from marketplace.errors import ChainError, InputError, NotFound

log = logging.getLogger(__name__)

order_app = typer.Typer(help="Place, follow, cancel and dispute orders; fetch results and explanations.",
                        no_args_is_help=True)


# ============================================================================ place


@dataclass(frozen=True)
class Placed:
    """An order this command placed (``--json`` prints it)."""

    id: int
    buyer: str
    escrow: str
    spec_digest: str
    deposit_tx: str | None
    idempotency_key: str


@order_app.command("place")
def place(device_class: str = DeviceOpt, count: int = CountOpt, share_milli: int = ShareOpt,
          min_memory_mib: Optional[int] = MemOpt, min_system_memory_mib: Optional[int] = SysMemOpt,
          precision: Optional[str] = PrecOpt, min_flops: Optional[float] = FlopsOpt, feature: list[str] = FeatOpt,
          max_latency_ms: Optional[float] = LatOpt,
          max_price: int = typer.Option(..., "--max-price", min=1, help="wei per device-hour at most (see `cona quote`)"),
          domain: Optional[int] = DomainOpt, duration: int = DurOpt, cpu_milli: int = CpuMilliOpt,
          gpu_model: list[str] = GpuModelOpt,
          attachment: str = typer.Option(..., "--attachment", help="the topology node the buyer sits at"),
          module: Optional[str] = W.ModuleOpt, wasm: Optional[Path] = W.WasmOpt, wasm_digest: Optional[str] = W.WasmDigestOpt,
          image: Optional[Path] = W.ImageOpt, image_digest: Optional[str] = W.ImageDigestOpt,
          image_ref: Optional[str] = W.ImageRefOpt, program: Optional[str] = W.ProgramOpt, cpu_s: int = W.CpuOpt,
          arg: list[str] = W.ArgOpt, cmd: Optional[str] = W.CmdOpt, env: list[str] = W.EnvOpt,
          input_artifact: list[str] = W.InputArtifactOpt, network: bool = W.NetworkOpt,
          memory_mib: int = W.MemoryOpt, work_mib: int = W.WorkOpt, nondeterministic: bool = W.NondetOpt,
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
    """Sign an order (EIP-712) and place it through the API; prints the order id. Files it names (--wasm,
    --image, --input-artifact NAME=FILE) are uploaded as artifacts first."""
    req = requirement_dict(device_class, count, share_milli, min_memory_mib, min_system_memory_mib, precision,
                           min_flops, feature, max_latency_ms, max_price, domain, duration, cpu_milli, gpu_model)
    opts = W.WorkloadOptions(module, wasm, wasm_digest, image, image_digest, image_ref, program, cpu_s, tuple(arg),
                             cmd, tuple(env), tuple(input_artifact), network, memory_mib, work_mib, nondeterministic)
    data = _workload_input(input_text, input_hex, input_file)
    proof = _hex_option(tier_proof, "tier_proof")
    m = connect(api)
    try:
        signer = buyer_signer(m, key_file, passphrase_file, dev_account)
        spec = _spec(req, W.build_workload(opts, data, fuel, lambda src, kind: put_file(m, signer, src, kind)["digest"]),
                     attachment)
        placed = _sign_and_place(m, signer, spec, max_price=max_price, tier=tier, valid_for=valid_for, proof=proof,
                                 idempotency_key=idempotency_key)
    finally:
        m.close()
    if not watch_:
        _print_placed(placed, as_json)
        return
    # with --watch the live progress goes to stderr and stdout still gets just the id, so
    # `ORDER=$(cona order place ... --watch)` both shows the order and captures its id
    if not as_json:
        console.print(f"order {placed.id} placed by {placed.buyer}: escrow {eth(placed.escrow)}"
                      + (f" (deposited in tx {placed.deposit_tx})" if placed.deposit_tx is not None else ""))
    watched = watch_order(api, placed.id, until, timeout, as_json, screen=None if as_json else console,
                          emit_json=False)
    _print_placed(placed, as_json, watched)


def _spec(req: dict, workload: dict, attachment: str) -> Any:
    from marketplace.engine.spec import Spec

    return Spec.from_dict({"requirement": req, "workload": workload, "attachment": attachment})


def _print_placed(placed: Placed, as_json: bool, watched: dict[str, Any] | None = None) -> None:
    """The id alone on stdout (for ``ORDER=$(cona order place ...)``), or the whole record as JSON."""
    if as_json:
        emit({**asdict(placed), **(watched or {})}, True)
    else:
        out.print(placed.id)


def _sign_and_place(m: RemoteMarket, signer: Any, spec: Any, *, max_price: int, tier: int, valid_for: int,
                    proof: bytes, idempotency_key: Optional[str]) -> Placed:
    """Sign the order's intent, deposit any escrow shortfall, and post it to ``POST /v1/orders``."""
    req = spec.requirement
    intent = m.market.intent(signer.address, requirement=spec.digest(), device_class=int(req.device_class),
                             units=req.count, duration=req.duration_s, max_price=max_price, tier=tier,
                             valid_for=valid_for)
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
    oid = m.api.place_order(body, key)
    return Placed(oid, signer.address, str(escrow), "0x" + spec.digest().hex(),
                  None if deposit_tx is None else deposit_tx.tx_hash, key)


def _workload_input(input_text: Optional[str], input_hex: Optional[str], input_file: Optional[Path]) -> bytes:
    given = [x for x in (input_text, input_hex, input_file) if x is not None]
    if len(given) > 1:
        raise InputError("give at most one of --input, --input-hex, --input-file", field="input")
    if input_hex is not None:
        return _hex_option(input_hex, "input_hex")
    if input_file is not None:
        try:
            return Path(input_file).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read --input-file {input_file}: {exc.strerror}", field="input_file") from None
    return (input_text or "").encode()


def _hex_option(text: Optional[str], field: str) -> bytes:
    if not text:
        return b""
    try:
        return bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise InputError(f"--{field.replace('_', '-')} is not hex", field=field) from None


@order_app.command("watch")
def watch(order_id: int = typer.Argument(..., help="the order id"),
          until: Optional[str] = typer.Option(None, "--until", help="stop at this state (default: a final state)"),
          timeout: float = typer.Option(600.0, "--timeout", help="give up after this many seconds (exit 2)"),
          api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """Follow an order live: Open -> Assigned -> Running -> Completed -> Settled, with provider and tx hashes."""
    watch_order(api, order_id, until, timeout, as_json)


# ============================================================================ result, explain, show, batch


order_app.command("result")(results.result)
order_app.command("verify")(results.verify)


@order_app.command("explain")
def explain(order_id: int = typer.Argument(..., help="the order id"), api: Optional[str] = ApiOpt,
            as_json: bool = JsonOpt) -> None:
    """Why the order was (or was not) matched: each provider's verdict, scores and rejections."""
    with api_client(api) as client:
        doc = client.explain(order_id)
    if as_json:
        emit(doc, True)
        return
    table = Table(title=f"order {order_id}: {doc.get('status')}  best {doc.get('best')}")
    for col in ("provider", "fits", "score", "price", "latency ms", "why not"):
        table.add_column(col, no_wrap=col == "provider")
    for p in doc.get("providers", []):
        table.add_row(short(p["provider"]), "yes" if p["feasible"] else "no",
                      "" if p.get("total") is None else f"{p['total']:.1f}",
                      "" if p.get("price") is None else eth(p["price"]),
                      "" if p.get("latency_ms") is None else f"{p['latency_ms']:.2f}",
                      "; ".join(r["message"] for r in p.get("rejections", [])))
    out.print(table)
    if doc.get("reasons"):
        out.print("engine reasons: " + json.dumps(doc["reasons"]))


@order_app.command("show")
def show(order_id: int = typer.Argument(..., help="the order id"), api: Optional[str] = ApiOpt,
         field_: Optional[str] = typer.Option(None, "--field", help="print only this field (e.g. provider, state)"),
         as_json: bool = JsonOpt) -> None:
    """The order as the API reports it: chain state, escrow, provider, spec and the engine's status."""
    with api_client(api) as client:
        view = client.order(order_id)
    if field_ is not None:
        if field_ not in view:
            raise InputError(f"an order has no field {field_!r}", field="field", hint=", ".join(sorted(view)))
        value = view[field_]
        typer.echo(value if isinstance(value, str) else json.dumps(value))
        return
    if as_json:
        emit(view, True)
        return
    out.print(progress_table(view, None))
    out.print(f"buyer {view['buyer']}  escrow {view['escrow']} wei  price {view['price']} wei/device-h  "
              f"engine: {view.get('engine', {}).get('status')}")


@order_app.command("batch")
def batch(order_id: int = typer.Argument(..., help="the order id"), api: Optional[str] = ApiOpt,
          as_json: bool = JsonOpt) -> None:
    """The matching batch that assigned the order, from chain logs (for `cona audit replay`).

    The order's first ``Assigned`` event names its batch (``batchId``): the engine records the
    batch and assigns its orders in one ``assignBatch`` transaction, whose ``BatchCommitted``
    is read back to confirm. A manual ``assign`` names batch 0: no batch decided it."""
    m = connect(api)
    try:
        first, found = _assigning_batch(m, order_id)
    finally:
        m.close()
    doc = {"order": order_id, "batch": "0x" + bytes(first.args["batchId"]).hex(), "tx": first.tx_hash,
           "block": found.block_number, "inputs_hash": "0x" + bytes(found.args["inputsHash"]).hex(),
           "decisions_hash": "0x" + bytes(found.args["decisionsHash"]).hex(), "orders": int(found.args["orders"])}
    if as_json:
        emit(doc, True)
    else:
        typer.echo(doc["batch"])


def _assigning_batch(m: RemoteMarket, order_id: int) -> tuple[Any, Any]:
    """The order's first ``Assigned`` event and the ``BatchCommitted`` of its transaction."""
    c = m.market.contract
    head = m.chain.backend.block_number()
    assigned = [e for e in c.get_logs(m.deployment.block, head, event="Assigned") if int(e.args["order"]) == order_id]
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
    return first, committed[0]


# ============================================================================ cancel, dispute (relayed), balance


def _relay(action: str, order_id: int, key_file: Optional[Path], passphrase_file: Optional[Path],
           dev_account: Optional[int], api: Optional[str], as_json: bool) -> None:
    m = connect(api)
    try:
        signer = buyer_signer(m, key_file, passphrase_file, dev_account)
        raw, _ = signed_call(m, signer, action, order_id)
        doc = m.api.relay(order_id, action, raw)
    finally:
        m.close()
    if as_json:
        emit(doc, True)
        return
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
    m = connect(api)
    try:
        who = address or buyer_signer(m, key_file, passphrase_file, dev_account).address
        free = m.market.balance(who)
        wallet = int(m.chain.backend.request("eth_getBalance", [who, "latest"]), 16)
    finally:
        m.close()
    doc = {"address": who, "market_balance": str(free), "eth": str(wallet)}
    if as_json:
        emit(doc, True)
    else:
        out.print(f"{who}: {free} wei free in the market ({eth(free)}), {eth(wallet)} in the wallet")


if __name__ == "__main__":  # pragma: no cover
    run(order_app, prog_name="cona order")
