"""The agent's workbench: every runtime it offers behind one call, its worker pool, its devices.

The daemon holds one ``Workbench`` for its whole life and hands it work as it fetched it
(artifacts already fetched by digest and checked: module bytes, an archive path, input files):

- ``WasmWork``: a module (shipped or the buyer's) with stdin, arguments, input files, the lease's
  ``Limits`` and whether the run must be deterministic;
- ``ContainerWork``: a ``ContainerJob`` (an image archive already ``load_archive``-ed, or an
  allowlisted reference) with the lease's ``ContainerLimits`` and how many devices of which CDI
  kind it was assigned: the workbench takes exactly that many from its ``DevicePool`` for the
  run and gives them back after, whatever happened;
- ``NativeWork``: an allowlisted program (``runtime.native``).

Every run ends in an ``Outcome`` of one shape - status, exit code, stdout, output files, the
result record whose digest goes on chain, and the usage the runtime measured - and a workload
that misbehaves (see tests/e2e/test_hostile_workloads.py) ends its own run only: the
workbench keeps serving. ``runtimes`` names what this agent offers (what its LSA advertises).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Mapping, Union

from marketplace.errors import InputError
from provider_agent.runtime.cdi import DevicePool
from provider_agent.runtime.container import ContainerJob, ContainerLimits, ContainerRuntime
from provider_agent.runtime.native import NativeLimits, NativeProgram, NativeRuntime
from provider_agent.runtime.scratch import InputData, OutputBlob, RunOutcome
from provider_agent.runtime.wasm import Limits, WasmRuntime

log = logging.getLogger(__name__)


class Runtime(StrEnum):
    WASM = "wasm"
    NATIVE = "native"
    CONTAINER = "container"


@dataclass(frozen=True)
class WasmWork:
    module: bytes
    stdin: bytes = b""
    limits: Limits = field(default_factory=Limits)
    args: tuple[str, ...] = ()
    inputs: Mapping[str, InputData] = field(default_factory=dict)
    deterministic: bool = True


@dataclass(frozen=True)
class ContainerWork:
    job: ContainerJob
    limits: ContainerLimits = field(default_factory=ContainerLimits)
    device_kind: str | None = None  # a CDI kind, e.g. nvidia.com/gpu
    device_count: int = 0


@dataclass(frozen=True)
class NativeWork:
    program: NativeProgram
    stdin: bytes
    limits: NativeLimits


Work = Union[WasmWork, ContainerWork, NativeWork]


@dataclass(frozen=True)
class Usage:
    """What the runtime measured: fuel (wasm), CPU seconds and peak memory (native, containers), wall time."""

    wall_ms: float
    fuel: int | None = None
    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None


@dataclass(frozen=True)
class Outcome(RunOutcome):
    runtime: Runtime
    status: str
    exit_code: int
    output: bytes
    usage: Usage
    detail: str = ""
    files: tuple[OutputBlob, ...] = ()
    devices: tuple[str, ...] = ()
    stderr: bytes = b""  # a tail, for the provider's logs and the detail: not part of the result


class Workbench:
    """Serves ``Work`` on ``workers`` threads with the runtimes the provider opted into."""

    def __init__(self, wasm: WasmRuntime, native: NativeRuntime | None = None,
                 containers: ContainerRuntime | None = None, devices: DevicePool | None = None,
                 workers: int = 1) -> None:
        self.wasm, self.native, self.containers = wasm, native, containers
        if containers is not None:
            log.info("container runtime: podman %s", containers.check())  # refuses a machine without podman/runc
        self.devices = devices or DevicePool({})
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="workload")
        self._active = 0
        self._served = 0
        self._lock = threading.Lock()

    @property
    def runtimes(self) -> tuple[Runtime, ...]:
        return tuple(r for r, on in ((Runtime.WASM, True), (Runtime.NATIVE, self.native is not None),
                                     (Runtime.CONTAINER, self.containers is not None)) if on)

    def submit(self, work: Work) -> Future:
        """Run ``work`` on the pool; the future's result is an ``Outcome`` (or the error that refused it)."""
        self._runtime_for(work)  # refuse a runtime not offered now, not in the worker
        return self.pool.submit(self.run, work)

    def run(self, work: Work) -> Outcome:
        runtime = self._runtime_for(work)
        with self._lock:
            self._active += 1
        try:
            if isinstance(work, WasmWork):
                return self._wasm(work)
            if isinstance(work, ContainerWork):
                return self._container(work)
            return self._native(work)
        finally:
            with self._lock:
                self._active -= 1
                self._served += 1
            log.debug("workbench: a %s run ended (%d served)", runtime, self._served)

    def _runtime_for(self, work: Work) -> Runtime:
        runtime = Runtime.WASM if isinstance(work, WasmWork) else \
            Runtime.CONTAINER if isinstance(work, ContainerWork) else Runtime.NATIVE
        if runtime not in self.runtimes:
            raise InputError(f"this provider does not offer the {runtime} runtime", field="runtime",
                             hint=f"it offers: {', '.join(self.runtimes)}")
        return runtime

    def _wasm(self, work: WasmWork) -> Outcome:
        r = self.wasm.run(work.module, work.stdin, work.limits, args=work.args, inputs=work.inputs,
                          deterministic=work.deterministic)
        return Outcome(Runtime.WASM, r.status, r.exit_code, r.output, Usage(r.wall_ms, fuel=r.fuel_used), r.detail,
                       r.files, (), r.stderr)

    def _container(self, work: ContainerWork) -> Outcome:
        devices: tuple[str, ...] = ()
        if work.device_count:
            if work.device_kind is None:
                raise InputError("a container lease on devices must name their CDI kind", field="device_kind")
            devices = self.devices.take(work.device_kind, work.device_count)
        try:
            r = self.containers.run(replace(work.job, devices=work.job.devices + devices), work.limits)
        finally:
            self.devices.give(devices)
        usage = Usage(r.wall_ms, cpu_seconds=r.cpu_seconds, peak_memory_bytes=r.peak_memory_bytes)
        return Outcome(Runtime.CONTAINER, r.status, r.exit_code, r.output, usage, r.detail, r.files, devices, r.stderr)

    def _native(self, work: NativeWork) -> Outcome:
        r = self.native.run(work.program, work.stdin, work.limits)
        usage = Usage(r.wall_ms, cpu_seconds=r.cpu_seconds, peak_memory_bytes=r.max_rss_kib * 1024)
        return Outcome(Runtime.NATIVE, r.status, r.exit_code, r.output, usage, r.detail)

    def health(self) -> dict[str, int]:
        with self._lock:
            return {"active": self._active, "served": self._served}

    def close(self, wait: bool = False) -> None:
        """Stop taking work (a run under way ends on its own) and close the container runtime."""
        self.pool.shutdown(wait=wait, cancel_futures=True)
        if self.containers is not None:
            self.containers.close()
