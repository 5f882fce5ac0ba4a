"""The API's models of workloads, runtimes and artifacts (``marketplace.api.schemas`` uses them).

What an order document's ``workload`` may be (``marketplace.engine.workload``: a wasm module shipped
or uploaded, a native program, a container image), what a provider advertises it runs
(``marketplace.resources.runtimes.RuntimeOffer``), and what the artifact routes answer. The size
limits of uploads, per kind, are in ``ARTIFACT_LIMITS`` (``POST /v1/artifacts`` states them).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from marketplace.artifacts.kinds import MAX_BYTES, Kind

ARTIFACT_LIMITS = {k.value: v for k, v in MAX_BYTES.items()}
Digest = Field(description="an artifact's sha256: sha256:<64 lower-case hex>", pattern=r"^sha256:[0-9a-f]{64}$")


class WasmWorkloadIn(BaseModel):
    runtime: Literal["wasm"] = "wasm"
    module: str = Field(description="a shipped module's name (provider_agent/workloads/build/manifest.json) or the "
                                    "digest of your own uploaded module, sha256:<hex>")
    input: str = Field("", description="stdin, hex")
    fuel: int = Field(description="wasmtime fuel units to buy, 1..10^13")
    args: list[str] = Field([], description="arguments after argv[0]")
    inputs: dict[str, str] = Field({}, description="file name -> artifact digest, mapped read-only at /input/NAME")
    deterministic: bool = Field(True, description="refuse clock and random imports, so the run can be verified")


class WasmWorkload(BaseModel):
    module: str
    input: str = Field(description="stdin, lower-case hex without 0x")
    fuel: int
    args: list[str] | None = Field(None, description="present when not empty")
    inputs: dict[str, str] | None = Field(None, description="present when not empty")
    deterministic: bool | None = Field(None, description="present (false) for a non-deterministic run")


class NativeWorkload(BaseModel):
    runtime: Literal["native"]
    program: str = Field(description="a name from the provider's native allowlist")
    input: str = Field(description="the input bytes, hex")
    cpu_s: int = Field(description="CPU seconds to buy, 1..86400")


class ContainerWorkloadIn(BaseModel):
    runtime: Literal["container"]
    image: str = Field(description="an uploaded OCI archive's digest sha256:<hex>, or a registry reference "
                                   "HOST[:PORT]/PATH[:TAG][@sha256:HEX] a provider allows")
    cmd: list[str] = Field([], description="the command (empty: the image's own)")
    input: str = Field("", description="stdin, hex")
    inputs: dict[str, str] = Field({}, description="file name -> artifact digest, mapped read-only at /input/NAME")
    env: dict[str, str] = Field({}, description="environment variables")
    network: bool = Field(False, description="the container reaches the network (only where the provider allows)")
    memory_mib: int = Field(512, description="memory limit, MiB (within the provider's ceiling)")
    work_mib: int = Field(256, description="the /work scratch's size, MiB (within the provider's ceiling)")


class ContainerWorkload(BaseModel):
    runtime: Literal["container"]
    image: str
    cmd: list[str]
    input: str
    inputs: dict[str, str]
    env: dict[str, str]
    network: bool
    memory_mib: int
    work_mib: int


WorkloadIn = WasmWorkloadIn | NativeWorkload | ContainerWorkloadIn
WorkloadOut = WasmWorkload | NativeWorkload | ContainerWorkload


class ContainerOfferOut(BaseModel):
    arch: str = Field(description="the architecture containers run on (Go's names: amd64, arm64...)")
    network: bool
    devices: bool = Field(description="accelerators are passed in through CDI")


class RuntimesOut(BaseModel):
    """What a provider's LSA says it runs (``RUNTIMES`` TLV, docs/tlv.md)."""

    runtimes: list[str] = Field(description="wasm (always: the shipped modules), native, container")
    buyer_wasm: bool = Field(description="buyers' own modules, by digest")
    nondeterministic: bool
    container: ContainerOfferOut | None
    images: list[str] = Field(description="registry references it allows")
    programs: list[str] = Field(description="native programs it offers")


class ArtifactOut(BaseModel):
    """A stored artifact."""

    digest: str = Digest
    kinds: list[Literal["wasm", "oci", "data"]]
    size: int
    owners: list[str] = Field(description="the accounts that uploaded it")
    created: float
    last_used: float
    facts: dict[str, dict] = Field(description="what the kind checks found: a module's imports, an archive's "
                                               "architectures")


KINDS = [k.value for k in Kind]
