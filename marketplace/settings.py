"""Settings: the one configuration object of CONA, built at the edge and passed down.

``ConaSettings`` reads ``CONA_*`` environment variables (and an optional ``.env``)
with pydantic-settings. ``ProjectConfig`` reads ``brownie-config.yaml``: the
compiler pin and the networks. The pure core never reads either: the CLI and the
API build them once and hand the values to the parts that need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from marketplace.errors import ConfigError

#: the repository root of an editable install (marketplace/ sits right under it)
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
#: chain ids of local development chains, where the well-known development keys, time travel and a
#: zero timelock delay are allowed: eth-tester/py-evm (the embedded chain), anvil and hardhat, ganache and geth --dev
DEV_CHAIN_IDS = {131277322940537: "embedded (eth-tester)", 31337: "anvil/hardhat", 1337: "ganache/geth --dev"}
#: the development account the faucet (``POST /dev/fund``, ``cona dev fund``) pays from: the last of the
#: 20, which no role or demo provider uses
FAUCET_ACCOUNT = 19
#: the network the engine runs on unless told otherwise: GEANT 2012 (Topology Zoo), 40 nodes
DEFAULT_TOPOLOGY = Path(__file__).resolve().parent / "data" / "topologies" / "Geant2012.graphml"

ChainKind = Literal["embedded", "anvil", "rpc"]


class ConaSettings(BaseSettings):
    """Runtime settings. Every field can be set as ``CONA_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="CONA_", env_file=".env", extra="ignore")

    root: Path = Field(default=PACKAGE_ROOT, description="project root (holds brownie-config.yaml)")
    chain: ChainKind = Field(default="embedded", description="which chain backend to use")
    rpc_url: str | None = Field(default=None, description="JSON-RPC URL for chain=rpc")
    chain_id: int | None = Field(default=None, description="expected chain id; checked on connect")
    data_dir: Path | None = Field(default=None, description="state directory (default: ROOT/.cona)")
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "INFO"

    @field_validator("rpc_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"rpc_url must be an http(s):// URL, got {value!r}")
        return value

    @property
    def state_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else self.root / ".cona"

    def project(self) -> "ProjectConfig":
        return ProjectConfig.load(self.root)


@dataclass(frozen=True)
class CompilerConfig:
    version: str
    optimizer: bool
    runs: int
    evm_version: str
    via_ir: bool
    remappings: tuple[str, ...]
    sources: tuple[str, ...]
    contracts_dir: str
    build_dir: str


@dataclass(frozen=True)
class ProjectConfig:
    """``brownie-config.yaml``, validated."""

    root: Path
    compiler: CompilerConfig
    networks: dict[str, dict[str, Any]]
    default_network: str
    mnemonic: str
    dev_account_count: int
    market: dict[str, Any]

    @classmethod
    def load(cls, root: Path) -> "ProjectConfig":
        path = root / "brownie-config.yaml"
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"no brownie-config.yaml in {root}", hint="run cona from the project root or set CONA_ROOT"
            ) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        try:
            solc = raw["compiler"]["solc"]
            structure = raw.get("project_structure", {})
            compiler = CompilerConfig(
                version=str(solc["version"]),
                optimizer=bool(solc["optimizer"]["enabled"]),
                runs=int(solc["optimizer"]["runs"]),
                evm_version=str(solc["evm_version"]),
                via_ir=bool(solc.get("via_ir", False)),
                remappings=tuple(solc.get("remappings") or ()),
                sources=tuple(raw["compiler"].get("sources") or ("contracts/*.sol",)),
                contracts_dir=str(structure.get("contracts", "contracts")),
                build_dir=str(structure.get("build", "contracts/build")),
            )
            networks = dict(raw["networks"])
            default = str(networks.pop("default", "embedded"))
            dev = raw.get("dev_accounts", {})
            return cls(
                root=root,
                compiler=compiler,
                networks=networks,
                default_network=default,
                mnemonic=str(dev.get("mnemonic", "test test test test test test test test test test test junk")),
                dev_account_count=int(dev.get("count", 20)),
                market=dict(raw.get("market") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: missing or invalid setting: {exc}") from None

    def network(self, name: str) -> dict[str, Any]:
        try:
            return dict(self.networks[name])
        except KeyError:
            known = ", ".join(sorted(self.networks))
            raise ConfigError(f"unknown network {name!r}", hint=f"brownie-config.yaml defines: {known}") from None
