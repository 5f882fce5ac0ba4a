"""``cona order result`` and ``cona order verify``: what a lease produced, checked against the chain.

``result ORDER [--out-dir DIR]`` downloads the result bytes, checks their keccak against the result
hash the provider committed on chain (``marketplace.results``), and with ``--out-dir`` writes stdout
to ``DIR/stdout`` and downloads every output file the committed manifest names, each kept only when
its sha256 is the manifest's (``marketplace.artifacts.transfer.fetch``): nothing the market serves
is trusted beyond what the chain commits to.

``verify ORDER`` re-runs a deterministic WebAssembly order here: the order document (whose digest
must be the order's on-chain requirement), the module and input files fetched by digest, the run
under the same runtime and limits the provider's agent uses (``provider_agent.runtime.wasm``, the
order's fuel), and the result's digest compared with the one on chain, with the fuel's bill
beside the billed usage. A mismatch exits with status 2 (``VerifyMismatch``); ``--dispute`` then
disputes the order (the buyer's own transaction, relayed), for the arbiter to decide with the
same evidence anyone can reproduce. A non-deterministic order, a container or a native program
cannot be verified by re-execution: refused with that reason.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Optional

import typer

from marketplace.cli.keys import DevOpt, KeyFileOpt, PassOpt, buyer_signer, signed_call
from marketplace.cli.options import JsonOpt
from marketplace.cli.output import emit, out
from marketplace.cli.remote import ApiOpt, api_client, connect
from marketplace.client import ApiClient
from marketplace.errors import ChainError, ConaError, InputError
from marketplace.results import ResultRecord, parse_result, result_digest


class VerifyMismatch(ConaError):
    """Re-running the order gave another result than the one committed on chain."""

    code = "verify-mismatch"
    http_status = 409


def checked_result(client: ApiClient, order_id: int) -> tuple[bytes, ResultRecord | None, str]:
    """The result bytes, their record, and their keccak, which must be the on-chain result hash."""
    view = client.order(order_id)
    blob = client.order_result(order_id)
    got = "0x" + result_digest(blob).hex()
    if got != view.get("result"):
        raise ChainError(f"order {order_id}: the result bytes hash to {got}, the chain holds {view.get('result')}",
                         hint="the API served bytes that are not the provider's committed result")
    return blob, parse_result(blob), got


def save_outputs(client: ApiClient, rec: ResultRecord, out_dir: Path) -> list[dict[str, Any]]:
    """stdout and every output file of ``rec`` under ``out_dir``, each file checked against the manifest."""
    from marketplace.artifacts.transfer import fetch

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "stdout").write_bytes(rec.output)
    files = []
    for f in rec.files:
        dest = fetch(client, "sha256:" + f.sha256.hex(), out_dir / f.name)  # names are plain relative paths
        files.append({"name": f.name, "size": f.size, "sha256": f.sha256.hex(), "path": str(dest)})
    return files


def result(order_id: int = typer.Argument(..., help="the order id"),
           out_file: Optional[Path] = typer.Option(None, "--out", help="write the workload's stdout here"),
           out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="write stdout and every output file here"),
           api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """The order's result, checked against the result hash on chain; its output files with --out-dir."""
    with api_client(api) as client:
        blob, rec, got = checked_result(client, order_id)
        files = save_outputs(client, rec, out_dir) if rec is not None and out_dir is not None else []
    output = rec.output if rec is not None else blob
    if out_file is not None:
        Path(out_file).write_bytes(output)
    text = output.decode(errors="replace")
    doc = {"id": order_id, "result_hash": got, "status": rec and rec.status, "exit_code": rec and rec.exit_code,
           "bytes": len(output), "verified": True, "out": str(out_file) if out_file else None,
           "files": files if out_dir is not None else [{"name": f.name, "size": f.size, "sha256": f.sha256.hex()}
                                                       for f in (rec.files if rec else ())]}
    if as_json:
        if out_file is None:
            doc["output"] = text if output.isascii() else "0x" + output.hex()
        emit(doc, True)
        return
    out.print(f"order {order_id}: {doc['status']} (exit {doc['exit_code']}), {len(output)} bytes, "
              f"keccak {got} matches the chain")
    for f in doc["files"]:
        out.print(f"  {f['name']}: {f['size']} bytes, sha256 {f['sha256']}"
                  + (f" checked, written to {f['path']}" if "path" in f else ""), markup=False)
    if out_file is None and out_dir is None:
        out.print(text.rstrip("\n") if output.isascii() else "0x" + output.hex(), markup=False)
    elif out_file is not None:
        out.print(f"written to {out_file}")


def rerun(client: ApiClient, spec: Any, work: Path) -> Any:
    """Run a deterministic wasm order's workload here, as the provider's agent runs it."""
    from marketplace.artifacts.transfer import fetch
    from marketplace.engine.workload import WasmWorkload
    from provider_agent.runtime.wasm import Limits, WasmRuntime
    from provider_agent.workloads import load_workload

    wl = spec.workload
    if not isinstance(wl, WasmWorkload) or not wl.deterministic:
        raise InputError(f"the order runs {'a non-deterministic module' if isinstance(wl, WasmWorkload) else wl.runtime}"
                         ": it cannot be verified by re-execution", field="order_id",
                         hint="only deterministic WebAssembly orders can be re-run to check them")
    module = fetch(client, wl.module, work / "module.wasm").read_bytes() if wl.buyer_module else \
        load_workload(wl.module)
    inputs = {name: fetch(client, digest, work / "inputs" / name) for name, digest in wl.inputs}
    # the agent's limits: the order's fuel and the runtime's defaults (memory, scratch, output caps);
    # the wall clock is not part of a deterministic result (a run that timed out is not verifiable)
    return WasmRuntime(work / "runs").run(module, wl.input, Limits(fuel=wl.fuel, wall_seconds=3600.0),
                                          args=wl.args, inputs=inputs, deterministic=True)


def verify(order_id: int = typer.Argument(..., help="the order id"),
           dispute: bool = typer.Option(False, "--dispute", help="on a mismatch, dispute the order (your key)"),
           key_file: Optional[Path] = KeyFileOpt, passphrase_file: Optional[Path] = PassOpt,
           dev_account: Optional[int] = DevOpt, api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """Re-run a deterministic WebAssembly order here and compare its result with the one on chain."""
    from marketplace.engine.spec import Spec
    from provider_agent.work import usage_for

    m = connect(api)
    try:
        o = m.market.order(order_id)
        spec = Spec.from_dict(m.api.order_spec(order_id))
        if spec.digest() != o.requirement:
            raise ChainError(f"order {order_id}: the API's order document hashes to 0x{spec.digest().hex()}, the "
                             f"order's requirement on chain is 0x{o.requirement.hex()}")
        with tempfile.TemporaryDirectory(prefix="cona-verify-") as tmp:
            run = rerun(m.api, spec, Path(tmp))
        mine = run.result_hash
        doc = {"id": order_id, "state": o.state.name.lower(), "status": run.status, "fuel": run.fuel_used,
               "result_hash": "0x" + mine.hex(), "on_chain": "0x" + o.result.hex(), "match": mine == o.result,
               "usage": o.usage, "usage_for_fuel": usage_for(run.fuel_used, o.units, o.duration), "disputed": None}
        if not doc["match"] and dispute:
            raw, _ = signed_call(m, buyer_signer(m, key_file, passphrase_file, dev_account), "dispute", order_id)
            doc["disputed"] = m.api.relay(order_id, "dispute", raw)["tx"]
    finally:
        m.close()
    if as_json:
        emit(doc, True)
    else:
        verdict = "matches" if doc["match"] else "DOES NOT MATCH"
        out.print(f"order {order_id}: re-run here {doc['status']} with {doc['fuel']} fuel; result "
                  f"{doc['result_hash']} {verdict} the chain's {doc['on_chain']}; billed {doc['usage']} unit-s, the "
                  f"fuel bills {doc['usage_for_fuel']}" + (f"; disputed in tx {doc['disputed']}" if doc["disputed"]
                                                           else ""))
    if not doc["match"]:
        raise VerifyMismatch(f"order {order_id}: the re-run's result {doc['result_hash']} is not the committed "
                             f"{doc['on_chain']}", hint="dispute it (`cona order dispute`, or verify --dispute) "
                             "within the dispute window" if not dispute else None)
