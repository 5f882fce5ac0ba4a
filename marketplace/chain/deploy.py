"""Deploying the market: Timelock, DemoToken (when settling in a token), ProviderRegistry, TierGate
(when compiled), ComputeMarket, and the wiring between them, from ``brownie-config.yaml``'s ``market``.

The Timelock is the admin of every role and setting (the market's settings and orchestrators, the
registry's ``minStake``, the tier gate's verifiers): a change is scheduled in public and runs only
after ``timelock_delay`` seconds. The delay may be 0 only on a local development chain; elsewhere it
is at least a day (``MIN_PRODUCTION_DELAY``). Unset (``brownie-config.yaml`` names none), it is 0
on a development chain and a day elsewhere. The deployer (the operator) binds the market to the
registry and the gate once, at deployment, which no role can redo.

A ``Deployment`` records the chain (id and genesis hash), the addresses and the roles. It
is written to ``<state dir>/deployments/<chain id>.json`` so other processes (the engine,
agents, the auditor's CLI) find the contracts; ``load_deployment`` refuses a record that
belongs to another chain or whose addresses hold no code.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from marketplace.chain.contracts import BoundContract, Chain
from marketplace.chain.timelock import MIN_PRODUCTION_DELAY
from marketplace.errors import ChainMismatch, ConfigError, NotFound
from marketplace.settings import DEV_CHAIN_IDS

log = logging.getLogger(__name__)

ZERO = "0x0000000000000000000000000000000000000000"
#: the fields of ``ComputeMarket.Settings`` in struct order, as MarketParams names them (the arbiter last)
SETTINGS = ("fee_bps", "miss_slash_bps", "fail_slash_bps", "dispute_slash_bps", "accept_window", "dispute_window",
            "arbitration_window", "run_grace")


@dataclass(frozen=True)
class MarketParams:
    asset: str = "eth"  # "eth" or "token"
    min_stake: int = 10**18
    unbonding_period: int = 7 * 24 * 3600
    fee_bps: int = 200
    accept_window: int = 60
    dispute_window: int = 300
    miss_slash_bps: int = 500
    fail_slash_bps: int = 1000
    dispute_slash_bps: int = 2000
    arbitration_window: int = 7 * 24 * 3600
    run_grace: int = 600
    #: seconds between scheduling a role or setting change and applying it (0 only on a dev chain);
    #: None: 0 on a development chain, ``MIN_PRODUCTION_DELAY`` elsewhere (``delay_for``)
    timelock_delay: int | None = None

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> "MarketParams":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown market settings in brownie-config.yaml: {', '.join(unknown)}",
                              hint=f"known: {', '.join(sorted(known))}")
        try:
            values = {k: (str(v) if k == "asset" else int(v)) for k, v in raw.items()}
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"market settings must be integers: {exc}") from None
        params = cls(**values)
        if params.asset not in ("eth", "token"):
            raise ConfigError(f"market.asset must be eth or token, not {params.asset!r}", field="asset")
        return params


@dataclass(frozen=True)
class Deployment:
    backend: str
    chain_id: int
    genesis: str
    block: int
    asset: str  # ZERO for ETH, else the token address
    contracts: dict[str, str]
    roles: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Deployment":
        """From a record or the API's ``/v1/deployment`` (which adds fields such as ``rpc``:
        those are not part of the record and are ignored)."""
        known = {f.name for f in fields(cls)}
        missing = sorted(f.name for f in fields(cls) if f.name not in raw and f.name != "params")
        if missing:
            raise ChainMismatch(f"the deployment record lacks {', '.join(missing)}",
                                hint="redeploy with `cona deploy`, or point at the market's API")
        return cls(**{k: v for k, v in raw.items() if k in known})

    def address(self, name: str) -> str:
        try:
            return self.contracts[name]
        except KeyError:
            raise NotFound(f"{name} is not part of this deployment", hint=f"deployed: {', '.join(self.contracts)}",
                           field="contract") from None

    def bind(self, chain: Chain, name: str) -> BoundContract:
        return chain.at(name, self.address(name))


def _genesis(chain: Chain) -> str:
    return chain.backend.request("eth_getBlockByNumber", ["0x0", False])["hash"]


def check_delay(chain_id: int, delay: int) -> None:
    """The timelock delay a deployment may choose on chain ``chain_id``."""
    if delay < 0:
        raise ConfigError(f"market.timelock_delay must not be negative, got {delay}", field="timelock_delay")
    if chain_id not in DEV_CHAIN_IDS and delay < MIN_PRODUCTION_DELAY:
        raise ConfigError(f"market.timelock_delay is {delay} s on chain {chain_id}; outside a local development "
                          f"chain it must be at least {MIN_PRODUCTION_DELAY} s", field="timelock_delay",
                          hint="users must see a role or setting change coming and be able to leave first")


def delay_for(chain_id: int, configured: int | None) -> int:
    """The timelock delay of a deployment on ``chain_id``: the configured one (checked), else the default."""
    delay = configured if configured is not None else (0 if chain_id in DEV_CHAIN_IDS else MIN_PRODUCTION_DELAY)
    check_delay(chain_id, delay)
    return delay


def settings_tuple(params: MarketParams, arbiter: str) -> tuple[Any, ...]:
    """``ComputeMarket.Settings`` for the ABI encoder."""
    return (*(getattr(params, s) for s in SETTINGS), arbiter)


def deploy_market(chain: Chain, *, state_dir: Path | None = None, params: MarketParams | None = None) -> Deployment:
    """Deploy and wire the market. Roles: operator, orchestrator and arbiter are the first three
    signers (all the first one when fewer are configured); the Timelock (proposer and executor: the
    operator) is the admin of roles and settings."""
    params = params or MarketParams.from_config(chain.project.market)
    signers = chain.signers
    if not signers:
        raise ConfigError("no account to deploy from", hint="chain=rpc needs a private key for the operator")
    params = replace(params, timelock_delay=delay_for(chain.backend.chain_id, params.timelock_delay))
    operator = signers[0]
    orchestrator = signers[1] if len(signers) > 1 else operator
    arbiter = signers[2] if len(signers) > 2 else operator

    contracts: dict[str, str] = {}
    timelock = chain.deploy("Timelock", params.timelock_delay, [operator.address], [operator.address],
                            sender=operator)
    contracts["Timelock"] = timelock.address
    asset = ZERO
    if params.asset == "token":
        token = chain.deploy("DemoToken", operator.address, sender=operator)
        asset = contracts["DemoToken"] = token.address
    registry = chain.deploy("ProviderRegistry", asset, timelock.address, params.min_stake, params.unbonding_period,
                            sender=operator)
    contracts["ProviderRegistry"] = registry.address
    tier_gate = ZERO
    if "TierGate" in chain.artifacts:
        from marketplace.chain.tiergate import deploy_tier_gate  # lands with the tier gate issue

        tier_gate = contracts["TierGate"] = deploy_tier_gate(chain, operator, timelock.address)
    market = chain.deploy(
        "ComputeMarket", asset, registry.address, tier_gate, timelock.address, operator.address,
        orchestrator.address, settings_tuple(params, arbiter.address), sender=operator,
    )
    contracts["ComputeMarket"] = market.address
    registry.transact(operator, "setMarket", market.address)
    if tier_gate != ZERO:
        from marketplace.chain.tiergate import bind_market

        bind_market(chain, tier_gate, market.address, operator)

    dep = Deployment(
        backend=chain.backend.name,
        chain_id=chain.backend.chain_id,
        genesis=_genesis(chain),
        block=chain.backend.block_number(),
        asset=asset,
        contracts=contracts,
        roles={"operator": operator.address, "orchestrator": orchestrator.address, "arbiter": arbiter.address,
               "admin": timelock.address},
        params=asdict(params),
    )
    if state_dir is not None:
        save_deployment(dep, state_dir)
    log.info("market deployed on chain %d: %s", dep.chain_id, contracts)
    return dep


def deployment_path(state_dir: Path, chain_id: int) -> Path:
    return state_dir / "deployments" / f"{chain_id}.json"


def save_deployment(dep: Deployment, state_dir: Path) -> Path:
    """Write the record whole (temporary file, fsync, rename, fsync of the directory): a market a
    restart must find again is not left to the page cache."""
    path = deployment_path(state_dir, dep.chain_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        fh.write(json.dumps(dep.to_dict(), indent=1) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def load_deployment(chain: Chain, state_dir: Path) -> Deployment:
    path = deployment_path(state_dir, chain.backend.chain_id)
    try:
        dep = Deployment.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise NotFound(f"no deployment recorded for chain {chain.backend.chain_id} in {path.parent}",
                       hint="on a local chain `cona up` deploys one; on a real network start once with "
                            "`cona up --deploy --admin-key-file KEYSTORE` (or pass --data-dir of the market "
                            "that recorded it)") from None
    if dep.genesis != _genesis(chain):
        raise ChainMismatch(f"the deployment in {path} was made on another chain with the same id",
                            hint="redeploy with `cona deploy`")
    for name, addr in dep.contracts.items():
        if chain.backend.request("eth_getCode", [addr, "latest"]) in ("0x", None):
            raise ChainMismatch(f"{name} has no code at {addr}", hint="redeploy with `cona deploy`")
    return dep
