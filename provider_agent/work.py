"""What the agent runs for a lease: the order document checked, its artifacts fetched and checked before
the lease is accepted, the ``Work`` for the workbench, and the record and bill of what it produced.

- ``check_spec``: the order document is the one the buyer signed (its digest is the order's on-chain
  requirement), names a shipped module or a buyer's module by digest, an image, or a native
  program this agent offers;
- ``offer_of``: what the agent advertises in its LSA's RUNTIMES TLV (``RuntimeOffer``): buyers'
  wasm modules unless ``--wasm-modules shipped`` (non-deterministic ones unless ``deterministic``),
  containers with ``--containers`` (this machine's architecture, ``--container-network``, CDI
  devices when specs are found), its ``--container-image`` allowlist, its native programs;
- ``Planner.admit`` (before ``accept``): the need is one this agent offers, every artifact is
  fetched from the market by digest into ``STATE/artifacts/`` and kept only when its bytes hash to
  it (``marketplace.artifacts.transfer.fetch``), a module compiles with the order's determinism, an
  image archive loads (its platform is this machine's) or a registry image is pulled. Anything
  wrong: the agent does not accept (the engine should never have assigned it; nothing is slashed
  for an order it cannot run when the engine's ``RuntimeSupport`` filter works, see docs/trust.md);
- ``Planner.work``: the ``WasmWork``, ``ContainerWork`` or ``NativeWork`` of the lease, with its
  limits (the order's fuel; the container's memory and scratch within the provider's ceilings, its
  CPUs from the requirement; the lease's remaining time as the wall clock);
- ``Planner.ran``: the outcome's result record (``marketplace.results``), its output files kept
  content-addressed in ``STATE/artifacts/`` (durable before the ``ran`` line names them), and the
  usage billed: fuel for wasm (``usage_for``), CPU seconds for native programs, wall time for
  containers (``usage_for_container``: the devices were held).

Usage calibration: the contract bills ``usage`` unit-seconds at the order's price. For wasm the
agent derives it from metered fuel only, so anyone re-running the workload gets the same bill:
``usage = max(1, ceil(fuel / FUEL_PER_UNIT_SECOND))``, capped at ``units x remaining``.
``FUEL_PER_UNIT_SECOND`` is 2e9: the low end of what this runtime executes per second per core.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from marketplace.artifacts.transfer import fetch
from marketplace.chain.market import Order
from marketplace.client import ApiClient
from marketplace.engine.spec import Spec
from marketplace.engine.workload import ContainerWorkload, NativeWorkload, WasmWorkload
from marketplace.errors import AgentError, ConaError
from marketplace.resources.model import DeviceClass
from marketplace.resources.runtimes import ContainerOffer, Runtime, RuntimeOffer, unmet
from marketplace.results import ResultRecord
from provider_agent.runtime.cdi import DevicePool
from provider_agent.runtime.container import ContainerConfig, ContainerJob, ContainerLimits, usage_for_container, \
    within
from provider_agent.runtime.images import host_arch
from provider_agent.runtime.native import NativeLimits, NativeProgram, usage_for_cpu
from provider_agent.runtime.wasm import Limits
from provider_agent.runtime.workbench import ContainerWork, NativeWork, Outcome, WasmWork, Work, Workbench
from provider_agent.workloads import NAMES, load_workload

log = logging.getLogger(__name__)

FUEL_PER_UNIT_SECOND = 2_000_000_000
#: ``--wasm-modules``: which wasm modules an agent runs besides the shipped ones
WASM_MODULES = ("all", "deterministic", "shipped")
#: CDI kinds by the device class a lease is on
CDI_CLASS = {"nvidia.com/gpu": DeviceClass.GPU, "amd.com/gpu": DeviceClass.GPU, "huawei.com/npu": DeviceClass.NPU}


def usage_for(fuel: int, units: int, remaining_seconds: int) -> int:
    """Unit-seconds billed for ``fuel``: ceil(fuel / FUEL_PER_UNIT_SECOND), at least 1, at most
    ``units x remaining_seconds`` (the contract's ``UsageTooHigh`` bound)."""
    used = max(1, -(-fuel // FUEL_PER_UNIT_SECOND))
    return min(used, units * remaining_seconds)


def result_bytes(run: Any) -> bytes:
    """The bytes a provider uploads (``marketplace.results``); their keccak is ``run.result_hash``."""
    return run.record.encode() if hasattr(run, "record") else \
        ResultRecord(run.status, run.exit_code, run.output).encode()


class SpecError(AgentError):
    code = "agent-spec"


def check_spec(raw: Any, order: Order, programs: tuple[str, ...] = (), max_cpu_s: int | None = None) -> Spec:
    """Parse an order document (``marketplace.engine.spec``) and check it is the one the buyer
    signed: its digest must equal the order's on-chain ``requirement``. ``programs``: the native
    programs this agent offers (none: native specs are refused); ``max_cpu_s``: the most CPU
    seconds it lets one native run use."""
    try:
        spec = Spec.from_dict(raw, modules=NAMES, programs=programs)
    except ConaError as exc:
        raise SpecError(f"order {order.id}: {exc.message}", hint=exc.hint) from None
    if spec.runtime == "native" and max_cpu_s is not None and spec.cpu_s > max_cpu_s:
        raise SpecError(f"order {order.id}: the spec asks for {spec.cpu_s} CPU seconds, over this provider's "
                        f"{max_cpu_s}", hint="--native-limits cpu=")
    if spec.digest() != order.requirement:
        raise SpecError(f"order {order.id}: the spec's digest 0x{spec.digest().hex()} is not the order's "
                        f"requirement 0x{order.requirement.hex()}", hint="the engine served another document")
    return spec


def offer_of(wasm_modules: str, programs: tuple[str, ...], containers: ContainerConfig | None,
             devices: DevicePool | None) -> RuntimeOffer:
    """What this agent advertises it runs (the LSA's RUNTIMES TLV)."""
    container = None
    if containers is not None:
        container = ContainerOffer(host_arch(), containers.allow_network, bool(devices and devices.kinds()))
    return RuntimeOffer(buyer_wasm=wasm_modules != "shipped", nondeterministic=wasm_modules == "all",
                        container=container,
                        images=tuple(str(r) for r in containers.registries.allowed) if containers else (),
                        programs=programs)


def describe(spec: Spec) -> str:
    """What a lease runs, for the log: a shipped module's name, a buyer's module, an image, a program."""
    wl = spec.workload
    if isinstance(wl, WasmWorkload):
        what = f"module {wl.module[:19]}" if wl.buyer_module else wl.module
        return f"{what} ({len(wl.input)} stdin bytes, {len(wl.inputs)} input files, fuel {wl.fuel})"
    if isinstance(wl, ContainerWorkload):
        return f"container {wl.image[:40]} ({len(wl.inputs)} input files)"
    return f"native {wl.program} ({len(wl.input)} input bytes, cpu {wl.cpu_s} s)"


class ArtifactCache:
    """``STATE/artifacts/<sha256 hex>``: what leases fetched (checked) and produced (durable)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest.removeprefix("sha256:")

    def fetch(self, api: ApiClient, digest: str) -> Path:
        """The artifact, from the cache or the market (kept only when its bytes hash to ``digest``)."""
        path = self.path(digest)
        return path if path.exists() else fetch(api, digest, path)

    def put(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.path(digest)
        if not path.exists():
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return digest

    def drop(self, digests: set[str]) -> None:
        for d in digests:
            self.path(d).unlink(missing_ok=True)


@dataclass(frozen=True)
class Ceilings:
    """The provider's per-run ceilings (``--native-limits``, ``--container-limits``, the wall clock)."""

    native: NativeLimits
    container: ContainerLimits
    max_wall_seconds: float


class Planner:
    """From a checked spec to the workbench's ``Work`` and back (see the module docstring)."""

    def __init__(self, workbench: Workbench, cache: ArtifactCache, api: ApiClient, offer: RuntimeOffer,
                 programs: Mapping[str, NativeProgram], ceilings: Ceilings) -> None:
        self.workbench, self.cache, self.api, self.offer = workbench, cache, api, offer
        self.programs, self.ceilings = programs, ceilings

    def admit(self, spec: Spec, order: Order) -> None:
        """Everything this lease needs is offered, fetched and checked (raises otherwise)."""
        reasons = unmet(self.offer, spec.need())
        if reasons:
            raise SpecError(f"order {order.id}: " + "; ".join(m for _, m in reasons),
                            hint="the engine should not have assigned it (RuntimeSupport)")
        for ref in spec.artifacts():
            self.cache.fetch(self.api, ref.digest)
        wl = spec.workload
        if isinstance(wl, WasmWorkload) and wl.buyer_module:
            self.workbench.wasm.load(self.cache.path(wl.module).read_bytes(), wl.deterministic)
        elif isinstance(wl, ContainerWorkload):
            self._image(wl)

    def _image(self, wl: ContainerWorkload) -> str:
        if wl.archive:
            return self.workbench.containers.load_archive(self.cache.path(wl.image), wl.image)
        return self.workbench.containers.pull(wl.image)

    def work(self, spec: Spec, order: Order, remaining: int) -> Work:
        wl, cap = spec.workload, self.ceilings
        wall = min(float(remaining), cap.max_wall_seconds)
        if isinstance(wl, NativeWorkload):
            limits = NativeLimits(cpu_seconds=wl.cpu_s, memory_mib=cap.native.memory_mib,
                                  open_files=cap.native.open_files, wall_seconds=min(cap.native.wall_seconds, wall),
                                  file_size_mib=cap.native.file_size_mib, processes=cap.native.processes,
                                  max_output_bytes=cap.native.max_output_bytes)
            return NativeWork(self.programs[wl.program], wl.input, limits)
        inputs = {name: self.cache.fetch(self.api, digest) for name, digest in wl.inputs}
        if isinstance(wl, WasmWorkload):
            module = self.cache.path(wl.module).read_bytes() if wl.buyer_module else load_workload(wl.module)
            return WasmWork(module, wl.input, Limits(fuel=wl.fuel, wall_seconds=wall), wl.args, inputs,
                            wl.deterministic)
        self._image(wl)  # loaded again after a restart (the runtime keeps its image ids in memory)
        req = spec.requirement
        cpus = float(req.count) if req.device_class == DeviceClass.CPU else max(1.0, req.cpu_milli / 1000)
        limits = within(ContainerLimits(memory_mib=wl.memory_mib, cpus=cpus, work_mib=wl.work_mib,
                                        wall_seconds=wall), cap.container)
        job = ContainerJob(wl.image, wl.cmd, wl.input, inputs, wl.env, wl.network)
        kind = self.device_kind(req.device_class)
        return ContainerWork(job, limits, kind, order.units if kind else 0)

    def device_kind(self, device_class: DeviceClass) -> str | None:
        if device_class == DeviceClass.CPU:
            return None
        kinds = [k for k in self.workbench.devices.kinds() if CDI_CLASS.get(k) == device_class]
        if not kinds:
            raise SpecError(f"no CDI device of class {device_class.name} to give the container",
                            hint="install the vendor's CDI spec (nvidia-ctk cdi generate)")
        return kinds[0]

    def ran(self, outcome: Outcome, order: Order) -> tuple[bytes, dict[str, Any]]:
        """The result bytes, and the ``ran`` record of ``outcome`` (its output files made durable first)."""
        files = [self.cache.put(f.data) for f in outcome.files]
        remaining = order.duration - order.served
        u = outcome.usage
        if outcome.runtime == Runtime.WASM:
            usage, metered = usage_for(u.fuel or 0, order.units, remaining), {"fuel": u.fuel}
        elif outcome.runtime == Runtime.NATIVE:
            usage = usage_for_cpu(u.cpu_seconds or 0.0, order.units, remaining)
            metered = {"cpu_ms": round((u.cpu_seconds or 0.0) * 1000, 1)}
        else:
            usage = usage_for_container(u.cpu_seconds or 0.0, u.wall_ms, order.units, remaining)
            metered = {"cpu_ms": round((u.cpu_seconds or 0.0) * 1000, 1), "peak_memory_bytes": u.peak_memory_bytes}
        record = {"runtime": outcome.runtime.value, "usage": usage, "status": outcome.status,
                  "exit_code": outcome.exit_code, "detail": outcome.detail, "wall_ms": round(u.wall_ms, 1),
                  "files": files, "devices": list(outcome.devices), **metered}
        return outcome.record.encode(), record

    def artifacts_of(self, spec: Spec | None, ran: Mapping[str, Any]) -> set[str]:
        """The cached files a lease used: its spec's artifacts and its outputs."""
        out = {ref.digest for ref in spec.artifacts()} if spec is not None else set()
        return out | set(ran.get("files") or ())
