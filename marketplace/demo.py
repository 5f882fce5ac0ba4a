"""Demo providers for ``cona up``: real agent processes with real hardware profiles.

Each demo provider is a ``cona-agent run`` process, started under the market's
``Supervisor``, advertising a hardware profile captured from a real machine
(``provider_agent/profiles/<name>/``: nvidia-smi, rocm-smi, npu-smi, lscpu dumps), attached
to a node of the market's topology (GEANT 2012: node ids, country codes in brackets below)
and paid with a development account of the local chain. It talks to the market only the
way any contributor's agent would: JSON-RPC to ``<api>/rpc`` and HTTP to the engine.

Invariants:
- dev accounts 0 and 1 (the deployer and the orchestrator) and 3 and 5 (the README's buyers) are
  never given to a provider; providers take accounts 10 and up;
- an agent's keystore and passphrase live in ``<state>/demo/<name>/`` (0600), and the
  passphrase reaches the process through ``--passphrase-file``, never its arguments;
- ``launch`` returns only once the engine has installed each provider's signed LSA, so
  ``cona up`` prints a market that can take orders;
- every demo agent runs buyers' own wasm modules (the agent's default); the EPYC CPU server also
  runs buyers' container images (``--containers``) when this machine can (root, podman, runc).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from marketplace.chain.backends import dev_accounts
from marketplace.client import ApiClient
from marketplace.errors import ConaError
from marketplace.supervisor import ProcessFailed
from provider_agent import keystore

log = logging.getLogger(__name__)

PROFILES = Path(__file__).resolve().parent.parent / "provider_agent" / "profiles"
FIRST_PROVIDER_ACCOUNT = 10
GWEI = 10**9


@dataclass(frozen=True, slots=True)
class DemoProvider:
    name: str  # a directory under provider_agent/profiles
    attachment: str  # a node id of the topology
    domain: int
    prices: Mapping[str, int]  # device class -> wei per compute-unit-hour
    containers: bool = False  # also runs buyers' OCI images (podman + runc), where this machine can


#: the demo's container ceilings: small, as a shared development machine wants
CONTAINER_ARGS = ("--containers", "--container-limits", "mem=1024,cpus=2,pids=256,wall=600,work=256,output=16")


#: five machines of different kinds spread over Europe in two domains
DEMO_PROVIDERS: tuple[DemoProvider, ...] = (
    DemoProvider("h100-server", "4", 1, {"gpu": 3_000_000 * GWEI, "cpu": 20_000 * GWEI}),  # DE
    DemoProvider("l40s-server", "7", 1, {"gpu": 1_500_000 * GWEI, "cpu": 20_000 * GWEI}),  # FR
    DemoProvider("mi100-box", "34", 2, {"gpu": 1_200_000 * GWEI, "cpu": 20_000 * GWEI}),  # UK
    DemoProvider("ascend-node", "9", 2, {"npu": 2_000_000 * GWEI, "cpu": 20_000 * GWEI}),  # IT
    DemoProvider("epyc-cpu-server", "0", 1, {"cpu": 15_000 * GWEI}, containers=True),  # NL
)


def containers_available() -> str | None:
    """Why this machine cannot run the demo's containers (None: it can): rootful podman and runc."""
    if os.geteuid() != 0:
        return "not root (rootful podman mounts each run's tmpfs)"
    missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not installed (make bootstrap installs them)" if missing else None


def launch(running: Any, providers: tuple[DemoProvider, ...] = DEMO_PROVIDERS, *, stake: int | None = None,
           timeout: float = 60.0, extra_args: tuple[str, ...] = ()) -> list[str]:
    """Start one agent process per demo provider under ``running.supervisor``; return their addresses."""
    settings = running.settings
    project = settings.project()
    accounts = dev_accounts(project.mnemonic, FIRST_PROVIDER_ACCOUNT + len(providers))
    stake = _min_stake(running) if stake is None else stake
    addresses: list[str] = []
    children = []
    base = settings.state_dir / "demo"
    for i, p in enumerate(providers):
        acct = accounts[FIRST_PROVIDER_ACCOUNT + i]
        home = base / p.name
        # a previous run's keystore and journals belong to a chain that is gone (embedded) or reused
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True, exist_ok=True)
        phrase_file = home / "passphrase"
        fd = os.open(phrase_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(16) + "\n")
        keystore.create(home / "keystore.json", phrase_file.read_text().strip(), key=bytes(acct.key), scrypt_n=2**14)
        args = [sys.executable, "-m", "provider_agent.cli", "run",
                "--keystore", str(home / "keystore.json"), "--passphrase-file", str(phrase_file),
                "--profile", str(PROFILES / p.name), "--engine", running.api_url,
                "--rpc-url", f"{running.api_url}/rpc", "--attachment", p.attachment, "--domain", str(p.domain),
                "--state-dir", str(home / "state"), *extra_args]
        for cls, wei in sorted(p.prices.items()):
            args += ["--price", f"{cls}={wei}"]
        if p.containers:
            why_not = containers_available()
            if why_not is None:
                args += CONTAINER_ARGS
            else:
                log.warning("demo provider %s runs no containers: %s", p.name, why_not)
        args += ["--stake", str(stake)]
        children.append(running.supervisor.start(f"agent-{p.name}", args))
        addresses.append(acct.address)
        log.info("demo provider %s (%s) at node %s, domain %d", p.name, acct.address, p.attachment, p.domain)
    # all agents register and advertise at once; wait until the engine has every one
    with ApiClient(running.api_url, timeout=2.0) as api:
        _wait_listed(api, children, addresses, timeout, running.supervisor.log_dir)
    return addresses


def _wait_listed(api: ApiClient, children: list[Any], addresses: list[str], timeout: float, log_dir: Path) -> None:
    """Until the engine lists every address (or a child exits, or ``timeout`` passes)."""
    deadline = time.monotonic() + timeout
    while True:
        for child in children:
            if not child.alive():
                raise ProcessFailed(f"{child.name} exited with status {child.process.returncode} while starting",
                                    hint=f"its log ends with:\n{child.tail()}")
        missing = set(a.lower() for a in addresses) - _listed(api)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise ProcessFailed(f"{len(missing)} demo provider(s) not advertised after {timeout:.0f}s",
                                hint="see the agent logs in " + str(log_dir))
        time.sleep(0.1)


def _min_stake(running: Any) -> int:
    from marketplace.chain.market import Market

    return Market.from_deployment(running.chain, running.deployment).registry.min_stake


def _listed(api: ApiClient) -> set[str]:
    """The providers the engine lists (each one's signed LSA was installed), lower-case."""
    try:
        items = api.providers()
    except ConaError:  # not up yet
        return set()
    return {str(it.get("address", "")).lower() for it in items if isinstance(it, dict)}
