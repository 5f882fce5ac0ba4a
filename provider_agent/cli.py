"""``cona-agent``: the provider agent's command line (thin: parse, call the library, format).

Commands: ``discover`` (this machine, a captured dump with ``--from DIR``, or every fixture folder
under ``--check DIR`` against its ``expected.json``); the account
commands ``init``, ``register``, ``stake``, ``status``, ``pause``, ``resume``, ``unbond``,
``withdraw``; and ``run``, the daemon (``provider_agent.daemon``).

Every command takes ``--json`` (one JSON object on stdout). Any ``ConaError`` - a decoded
custom error from the chain included - is one line on stderr (``error: ...``, then the
hint) and exit status 2. Passphrases come from ``--passphrase-file`` or a prompt, never
from an argument.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from marketplace.cli.output import emit_document, emit_line, fail, wide
from marketplace.errors import ConaError, InputError
from marketplace.resources.model import NodeDescriptor
from provider_agent import account as account_mod
from provider_agent import keystore, probe
from provider_agent.discovery import Discovery
from provider_agent.discovery import check as check_mod
from provider_agent.discovery.errors import DumpError, ExpectationError

log = logging.getLogger(__name__)

app = typer.Typer(help="CONA provider agent.", no_args_is_help=True, add_completion=False)


@app.callback()
def _root() -> None:
    """CONA provider agent."""


def _flops(value: float) -> str:
    return f"{value / 1e12:g} T"


def _table(node: NodeDescriptor) -> Table:
    table = Table(title=f"{node.hostname}  arch={node.arch}  numa={node.numa_nodes}  "
                        f"memory_mib={node.memory_mib}  disk_gib={node.disk_gib}")
    for col in ("class", "model", "count", "units", "MHz", "mem MiB", "BW GB/s", "peak FLOPS", "interconnect",
                "features", "share"):
        table.add_column(col, overflow="fold")
    for d in node.devices:
        table.add_row(d.device_class.name, d.model, str(d.count), str(d.compute_units), str(d.clock_mhz),
                      str(d.memory_mib), str(d.memory_bandwidth_gbps),
                      " ".join(f"{p.name.lower()}={_flops(v)}" for p, v in d.flops) or "-",
                      d.interconnect or "-", " ".join(sorted(d.features)) or "-", str(d.share_milli))
    return table


def _print(result: Discovery, as_json: bool) -> None:
    if as_json:
        emit_document(result.to_dict())
        return
    console = wide(160)  # a descriptor row does not fit 80 columns; let the terminal wrap instead
    console.print(_table(result.descriptor))
    console.print(f"digest 0x{result.descriptor.digest().hex()}", soft_wrap=True)
    for note in result.notes:
        console.print(f"[dim]note: {note}[/dim]")
    for w in result.warnings:
        console.print(f"[yellow]warning: {w}[/yellow]")


@app.command()
def discover(
    from_dir: Optional[Path] = typer.Option(None, "--from", help="discover from a captured dump directory"),
    check_dir: Optional[Path] = typer.Option(None, "--check", help="check every fixture folder with an expected.json"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    disk_path: str = typer.Option("/", "--disk-path", help="live probe: the filesystem whose free space is offered"),
) -> None:
    """Describe this machine's hardware (or a dump's) as a NodeDescriptor with its digest and warnings."""
    try:
        if check_dir is not None:
            outcome = _check_fixtures(check_dir)
        else:
            result = probe.discover_dump(from_dir) if from_dir is not None else probe.discover_live(disk_path)
    except ConaError as exc:
        raise _fail(exc, as_json) from None
    if check_dir is None:
        _print(result, as_json)
        return
    if as_json:
        emit_document(outcome)
    else:
        for r in outcome["results"]:
            typer.echo(f"{'right' if r['right'] else 'WRONG'}  {r['fixture']}" + "".join(f"\n    {m}" for m in r["mismatches"]))
        typer.echo(f"{outcome['right']} of {outcome['fixtures']} fixtures right")
    if outcome["right"] != outcome["fixtures"]:
        raise typer.Exit(1)


def _check_fixtures(root: Path) -> dict:
    """``discover --check``: every sub-folder of ``root`` holding an ``expected.json``, discovered and compared."""
    if not root.is_dir():
        raise DumpError(f"{str(root)!r} is not a directory of fixture folders", field="check")
    checks = []
    for folder in sorted(p for p in root.iterdir() if (p / "expected.json").is_file()):
        try:
            expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ExpectationError(f"{folder.name}/expected.json is not JSON: {exc}", field="expected.json") from None
        found = probe.discover_dump(folder)
        checks.append(check_mod.check(folder.name, found.descriptor, len(found.warnings), expected))
    if not checks:
        raise DumpError(f"no folder under {str(root)!r} holds an expected.json", field="check")
    return check_mod.report(checks)


# ---------------------------------------------------------------------------- account commands

DEFAULT_HOME = Path(os.environ.get("CONA_AGENT_HOME", str(Path.home() / ".cona-agent")))

KeystoreOpt = typer.Option(DEFAULT_HOME / "keystore.json", "--keystore", help="the agent's V3 keystore file")
PassFileOpt = typer.Option(None, "--passphrase-file", help="read the passphrase from this file (else a prompt)")
RpcOpt = typer.Option("http://127.0.0.1:8545", "--rpc-url", envvar="CONA_RPC_URL",
                      help="JSON-RPC URL of the market's chain (the engine's /rpc or a node)")
EngineOpt = typer.Option(None, "--engine", envvar="CONA_ENGINE_URL", help="engine URL (serves /v1/deployment)")
DeploymentOpt = typer.Option(None, "--deployment", help="a deployment record file instead of asking the engine")
StateOpt = typer.Option(DEFAULT_HOME / "state", "--state-dir", help="the agent's state directory (journals)")
JsonOpt = typer.Option(False, "--json", help="print one JSON object")


def _fail(exc: ConaError, as_json: bool) -> typer.Exit:
    """One line on stderr (with the hint for a contract error the agent knows), exit status 2."""
    err = getattr(exc, "error", None)
    hint = account_mod.HINTS.get(err.split(".")[-1].split("(")[0]) if err else None
    return fail(exc, as_json=as_json, one_line=True, hint=hint)


def _emit(as_json: bool, payload: dict, text: str) -> None:
    emit_line(payload, as_json, text)


def _deployment(engine: Optional[str], deployment: Optional[Path]):
    if deployment is not None:
        return account_mod.load_deployment_file(deployment)
    if engine is not None:
        return account_mod.fetch_deployment(engine)
    raise InputError("where is the market? pass --engine URL or --deployment FILE", field="engine")


def _open(keystore_path: Path, passphrase_file: Optional[Path], rpc_url: str, engine: Optional[str],
          deployment: Optional[Path], state_dir: Optional[Path]) -> account_mod.Account:
    ident = keystore.unlock(keystore_path, keystore.read_passphrase(passphrase_file))
    dep = _deployment(engine, deployment)
    journal = state_dir / "writer.jsonl" if state_dir is not None else None
    return account_mod.Account.open(rpc_url=rpc_url, key=ident.key, deployment=dep, journal_path=journal)


def _tx_payload(tx, **extra) -> dict:
    return {"ok": True, "tx": tx.tx_hash, "gas_used": tx.gas_used, **extra}


@app.command()
def init(
    keystore_path: Path = KeystoreOpt,
    passphrase_file: Optional[Path] = PassFileOpt,
    import_key_file: Optional[Path] = typer.Option(None, "--import-key-file",
                                                   help="wrap an existing key (a file holding its 64 hex digits)"),
    light: bool = typer.Option(False, "--light", help="scrypt N=2^14 (geth's light setting; for test keys)"),
    as_json: bool = JsonOpt,
) -> None:
    """Create the agent's encrypted keystore (a new key, or an imported one)."""
    try:
        key = None
        if import_key_file is not None:
            text = import_key_file.read_text().strip().removeprefix("0x")
            try:
                key = bytes.fromhex(text)
            except ValueError:
                raise InputError(f"{import_key_file} does not hold a hex private key", field="import_key_file") \
                    from None
        phrase = keystore.read_passphrase(passphrase_file, confirm=passphrase_file is None)
        kw = {"scrypt_n": 2**14} if light else {}
        ident = keystore.create(keystore_path, phrase, key=key, **kw)
    except ConaError as exc:
        raise _fail(exc, as_json) from None
    _emit(as_json, {"address": ident.address, "keystore": str(keystore_path)},
          f"created {keystore_path} for {ident.address}")


@app.command()
def register(
    profile: Optional[Path] = typer.Option(None, "--profile", help="discover from a captured dump directory"),
    live: bool = typer.Option(False, "--live", help="discover this machine"),
    domain: int = typer.Option(..., "--domain", help="the network domain (AS) the node sits in"),
    attachment: str = typer.Option(..., "--attachment", help="the network node the machine attaches to"),
    price: list[str] = typer.Option(..., "--price", help="CLASS=WEI per unit-hour, repeatable"),
    stake: int = typer.Option(..., "--stake", help="stake in wei (at least the registry's minimum)"),
    keystore_path: Path = KeystoreOpt, passphrase_file: Optional[Path] = PassFileOpt, rpc_url: str = RpcOpt,
    engine: Optional[str] = EngineOpt, deployment: Optional[Path] = DeploymentOpt,
    state_dir: Path = StateOpt, as_json: bool = JsonOpt,
) -> None:
    """Register this provider: the discovered hardware's digest, domain, prices and stake."""
    try:
        if (profile is None) == (not live):
            raise InputError("give exactly one of --profile DIR or --live", field="profile")
        prices = account_mod.parse_prices(price)
        found = probe.discover_dump(profile) if profile is not None else probe.discover_live()
        acct = _open(keystore_path, passphrase_file, rpc_url, engine, deployment, state_dir)
        try:
            hw = found.descriptor.digest()
            tx = acct.registry.register(acct.signer, hardware=hw, domain=domain, prices=prices, stake=stake,
                                        metadata=account_mod.attachment_digest(attachment))
        finally:
            acct.close()
    except ConaError as exc:
        raise _fail(exc, as_json) from None
    _emit(as_json, _tx_payload(tx, address=acct.address, hardware="0x" + hw.hex(), stake=str(stake)),
          f"registered {acct.address} hardware 0x{hw.hex()} stake {stake} wei (tx {tx.tx_hash})")


def _simple(fn_name: str, done: str):
    def command(keystore_path: Path = KeystoreOpt, passphrase_file: Optional[Path] = PassFileOpt,
                rpc_url: str = RpcOpt, engine: Optional[str] = EngineOpt,
                deployment: Optional[Path] = DeploymentOpt, state_dir: Path = StateOpt,
                as_json: bool = JsonOpt) -> None:
        try:
            acct = _open(keystore_path, passphrase_file, rpc_url, engine, deployment, state_dir)
            try:
                tx = getattr(acct.registry, fn_name)(acct.signer)
            finally:
                acct.close()
        except ConaError as exc:
            raise _fail(exc, as_json) from None
        _emit(as_json, _tx_payload(tx, address=acct.address), f"{done} {acct.address} (tx {tx.tx_hash})")
    return command


app.command("pause", help="Stop taking new leases (running ones continue).")(_simple("pause", "paused"))
app.command("resume", help="Take new leases again after a pause.")(_simple("resume", "resumed"))


@app.command()
def stake(
    amount: int = typer.Option(..., "--amount", help="wei to add to the stake"),
    keystore_path: Path = KeystoreOpt, passphrase_file: Optional[Path] = PassFileOpt, rpc_url: str = RpcOpt,
    engine: Optional[str] = EngineOpt, deployment: Optional[Path] = DeploymentOpt,
    state_dir: Path = StateOpt, as_json: bool = JsonOpt,
) -> None:
    """Add stake."""
    try:
        if amount <= 0:
            raise InputError("--amount must be positive", field="amount")
        acct = _open(keystore_path, passphrase_file, rpc_url, engine, deployment, state_dir)
        try:
            tx = acct.registry.top_up(acct.signer, amount)
            total = acct.registry.provider(acct.address).stake
        finally:
            acct.close()
    except ConaError as exc:
        raise _fail(exc, as_json) from None
    _emit(as_json, _tx_payload(tx, address=acct.address, stake=str(total)),
          f"staked {amount} wei; stake now {total} wei (tx {tx.tx_hash})")


@app.command()
def unbond(
    finish: bool = typer.Option(False, "--finish", help="finish unbonding after the period (releases the stake)"),
    keystore_path: Path = KeystoreOpt, passphrase_file: Optional[Path] = PassFileOpt, rpc_url: str = RpcOpt,
    engine: Optional[str] = EngineOpt, deployment: Optional[Path] = DeploymentOpt,
    state_dir: Path = StateOpt, as_json: bool = JsonOpt,
) -> None:
    """Begin unbonding (no new leases; the stake is released after the period), or --finish it."""
    try:
        acct = _open(keystore_path, passphrase_file, rpc_url, engine, deployment, state_dir)
        try:
            if finish:
                tx = acct.registry.finish_unbond(acct.signer)
                info = {"released": str(acct.registry.released(acct.address))}
                text = f"unbonded {acct.address}: {info['released']} wei to withdraw (tx {tx.tx_hash})"
            else:
                tx = acct.registry.begin_unbond(acct.signer)
                info = {"unbond_at": acct.registry.provider(acct.address).unbond_at}
                text = f"unbonding {acct.address} until {info['unbond_at']} (tx {tx.tx_hash})"
        finally:
            acct.close()
    except ConaError as exc:
        raise _fail(exc, as_json) from None
    _emit(as_json, _tx_payload(tx, address=acct.address, **info), text)


@app.command()
def withdraw(
    keystore_path: Path = KeystoreOpt, passphrase_file: Optional[Path] = PassFileOpt, rpc_url: str = RpcOpt,
    engine: Optional[str] = EngineOpt, deployment: Optional[Path] = DeploymentOpt,
    state_dir: Path = StateOpt, as_json: bool = JsonOpt,
) -> None:
    """Withdraw everything withdrawable: earnings from the market, released stake from the registry."""
    try:
        acct = _open(keystore_path, passphrase_file, rpc_url, engine, deployment, state_dir)
        try:
            out = account_mod.withdraw_all(acct)
        finally:
            acct.close()
    except ConaError as exc:
        raise _fail(exc, as_json) from None
    _emit(as_json, {"ok": True, "address": acct.address, **out},
          f"withdrew {out['market']} wei from the market and {out['registry']} wei from the registry")


@app.command()
def status(
    keystore_path: Path = KeystoreOpt, rpc_url: str = RpcOpt,
    engine: Optional[str] = EngineOpt, deployment: Optional[Path] = DeploymentOpt,
    address: Optional[str] = typer.Option(None, "--address", help="another provider (default: the keystore's)"),
    as_json: bool = JsonOpt,
) -> None:
    """On-chain provider info: status, stake, leases, withdrawable balances (no passphrase needed)."""
    try:
        who = address or keystore.address(keystore_path)
        dep = _deployment(engine, deployment)
        # reads only: a throwaway key signs nothing
        acct = account_mod.Account.open(rpc_url=rpc_url, key=b"\x01" * 32, deployment=dep)
        try:
            info = acct.status(who)
        finally:
            acct.close()
    except ConaError as exc:
        raise _fail(exc, as_json) from None
    _emit(as_json, info, "\n".join(f"{k:22} {v}" for k, v in info.items()))


ContainersOpt = typer.Option(False, "--containers", help="opt in to the container runtime (rootful podman + runc); "
                             "see docs/agent.md")
ContainerLimitsOpt = typer.Option("", "--container-limits", help="container per-run ceilings: mem=MiB,cpus=N,pids=N,"
                                  "wall=S,work=MiB,output=MiB")
ImageOpt = typer.Option([], "--container-image", help="a registry image buyers may name: HOST/REPO (any tag) or "
                        "HOST/REPO:TAG / @sha256:...; repeatable")
InsecureOpt = typer.Option([], "--container-insecure-registry", help="HOST:PORT of a registry reached without TLS")
NetworkOpt = typer.Option(False, "--container-network", help="let containers whose order asks for it reach the network")
WasmModulesOpt = typer.Option("all", "--wasm-modules", help="buyers' own wasm modules this agent runs besides the "
                              "shipped ones: all, deterministic (no clock or random imports) or shipped (none)")


@app.command()
def run(
    keystore_path: Path = KeystoreOpt, passphrase_file: Optional[Path] = PassFileOpt,
    profile: Optional[Path] = typer.Option(None, "--profile", help="advertise a captured dump's hardware"),
    live: bool = typer.Option(False, "--live", help="advertise this machine"),
    engine: str = typer.Option(..., "--engine", envvar="CONA_ENGINE_URL", help="engine URL"),
    rpc_url: str = RpcOpt,
    attachment: str = typer.Option(..., "--attachment", help="the network node the machine attaches to"),
    domain: int = typer.Option(..., "--domain", help="the network domain (AS)"),
    price: list[str] = typer.Option(..., "--price", help="CLASS=WEI per unit-hour, repeatable"),
    stake_wei: Optional[int] = typer.Option(None, "--stake", help="stake to register with when not registered"),
    state_dir: Path = StateOpt,
    heartbeat_interval: float = typer.Option(1.0, "--heartbeat-interval", help="seconds between heartbeats"),
    poll_interval: float = typer.Option(0.25, "--poll-interval", help="seconds between chain polls"),
    lsa_lifetime: int = typer.Option(3600, "--lsa-lifetime", help="seconds an LSA lives (refreshed at 3/4)"),
    withdraw_every: float = typer.Option(60.0, "--withdraw-every", help="seconds between withdrawals (0: never)"),
    deployment: Optional[Path] = DeploymentOpt,
    native_program: list[str] = typer.Option(
        [], "--native-program", help="opt in to the native runtime: NAME=/abs/path (then any fixed arguments) of a "
        "program on this machine that buyers may name; repeatable; see docs/agent.md"),
    native_limits: str = typer.Option(
        "", "--native-limits", help="native per-run ceilings: cpu=S,mem=MiB,files=N,wall=S and optionally "
        "fsize=MiB, procs=N, output=MiB"),
    containers: bool = ContainersOpt, container_limits: str = ContainerLimitsOpt,
    container_image: list[str] = ImageOpt, container_insecure_registry: list[str] = InsecureOpt,
    container_network: bool = NetworkOpt, wasm_modules: str = WasmModulesOpt,
) -> None:
    """The provider daemon: advertise, heartbeat, accept, run, complete, settle, withdraw."""
    from provider_agent import daemon
    from provider_agent.runtime import native

    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per heartbeat would drown the log
    try:
        if (profile is None) == (not live):
            raise InputError("give exactly one of --profile DIR or --live", field="profile")
        programs = tuple(native.check_program(native.parse_program(p)) for p in native_program)
        native.allowlist(programs)  # refuses a name given twice
        limits = native.parse_limits(native_limits)
        if native_limits and not programs:
            raise InputError("--native-limits without --native-program: no native program would run",
                             field="native_limits")
        box = _container_options(state_dir, containers, container_limits, container_image,
                                 container_insecure_registry, container_network)
        ident = keystore.unlock(keystore_path, keystore.read_passphrase(passphrase_file))
        found = probe.discover_dump(profile) if profile is not None else probe.discover_live()
        cfg = daemon.AgentConfig(
            engine=engine, rpc_url=rpc_url, attachment=attachment, domain=domain,
            prices=tuple(account_mod.parse_prices(price)), stake=stake_wei, state_dir=state_dir,
            heartbeat_interval=heartbeat_interval, poll_interval=poll_interval, lsa_lifetime=lsa_lifetime,
            withdraw_every=withdraw_every, deployment_file=deployment, native_programs=programs,
            native_limits=limits, containers=box[0], container_limits=box[1], wasm_modules=wasm_modules)
        agent = daemon.Agent(cfg, ident.key, found.descriptor)
    except ConaError as exc:
        raise _fail(exc, False) from None
    try:
        agent.run_forever()
    except ConaError as exc:
        raise _fail(exc, False) from None
    finally:
        agent.close()


def _container_options(state_dir: Path, on: bool, limits: str, images: list[str], insecure: list[str],
                       network: bool):
    """The container runtime's config and ceilings from ``run``'s flags (None when not opted in)."""
    from provider_agent.runtime import container, images as image_mod

    if not on:
        if limits or images or insecure or network:
            raise InputError("--container-* options without --containers: no container would run",
                             field="containers")
        return None, container.ContainerLimits()
    cfg = container.ContainerConfig(Path(state_dir) / "containers", registries=image_mod.RegistryPolicy.of(images),
                                    insecure_registries=tuple(insecure), allow_network=network)
    return cfg, container.parse_limits(limits)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app(args=argv)


if __name__ == "__main__":
    main()
