"""``cona bench runtime``: what starting a workload costs in each runtime of the provider agent.

- ``wasm_compile_ms_p50``: compiling a buyer's module (the Rust ``wordcount`` example, 100 KB)
  with a fresh engine each time (what the first run of a new module pays);
- ``wasm_start_ms_p50``: ``WasmRuntime.run`` of an already compiled module whose ``_start``
  returns at once: store, WASI context, instantiation, the call, the result (target <= 20 ms);
- ``container_start_ms_p50``: ``ContainerRuntime.run`` of a trivial static program
  (busybox ``true``) from start to exit with every limit on (no network, read-only root, tmpfs
  work directory, memory/CPU/pids limits, dropped capabilities, no-new-privileges, a non-root
  user, ulimits, its own cgroup read for usage and removed) - what a lease's container costs
  before it computes anything (target <= 300 ms);
- ``native_start_ms_p50``: the same program through the native runtime (rlimits, its own
  session, a private directory);
- ``container_overhead_ms_p50``: ``container_start_ms_p50 - native_start_ms_p50``;
- ``artifact_put_mib_per_s`` (target >= 100) and ``artifact_get_mib_per_s``: a buyer's artifacts
  through the market's API (``bench/artifacts.py``).

The busybox image is built from Debian's busybox-static (no registry) and loaded once, before
timing. ``quick`` runs a few iterations of each: a smoke test, not a measurement.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import wasmtime

from bench import artifacts
from bench.stats import p50, rnd
from provider_agent.runtime.container import ContainerConfig, ContainerJob, ContainerLimits, ContainerRuntime
from provider_agent.runtime.images import sha256_file
from provider_agent.runtime.native import NativeLimits, NativeRuntime
from provider_agent.runtime.rootfs import BUSYBOX, build_archive, busybox_rootfs
from provider_agent.runtime.wasm import Limits, WasmRuntime
from provider_agent.workloads.examples import load_example

TRIVIAL = wasmtime.wat2wasm('(module (memory (export "memory") 1) (func (export "_start")))')


def _timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def wasm_figures(runs: int, root: Path) -> dict[str, float]:
    module = load_example("rust")
    compile_ms = _timed(lambda: wasmtime.Module(wasmtime.Engine(), module), max(3, runs // 3))
    rt = WasmRuntime(root)
    rt.compile(TRIVIAL)

    def start() -> None:
        if not rt.run(TRIVIAL, b"", Limits()).ok:
            raise RuntimeError("the trivial module failed")

    start()  # warm
    return {"wasm_compile_ms_p50": rnd(p50(compile_ms)), "wasm_start_ms_p50": rnd(p50(_timed(start, runs)))}


def container_figures(runs: int, root: Path) -> dict[str, float]:
    runtime = ContainerRuntime(ContainerConfig(root / "store"))
    try:
        runtime.check()
        archive = build_archive(runtime.podman_argv, busybox_rootfs(root / "rootfs"), root / "busybox.oci.tar",
                                "localhost/cona-bench/busybox:1")
        image = "sha256:" + sha256_file(archive)
        runtime.load_archive(archive, image)
        job = ContainerJob(image, ("/bin/true",))
        limits = ContainerLimits(memory_mib=64, cpus=1, pids=16, wall_seconds=30, work_mib=8)

        def container() -> None:
            result = runtime.run(job, limits)
            if not result.ok:
                raise RuntimeError(f"the trivial container failed: {result.status} {result.detail}")

        native = NativeRuntime(root / "native")
        native_limits = NativeLimits(cpu_seconds=5, memory_mib=64, wall_seconds=30)

        def native_run() -> None:
            if not native.run([str(BUSYBOX), "true"], b"", native_limits).ok:
                raise RuntimeError("the trivial native program failed")

        container()  # warm: the image's layers in the page cache
        native_run()
        c_ms, n_ms = [], []
        for _ in range(runs):  # interleaved, so load on the machine hits both alike
            c_ms += _timed(container, 1)
            n_ms += _timed(native_run, 1)
    finally:
        runtime.close()
    return {"container_start_ms_p50": rnd(p50(c_ms)), "native_start_ms_p50": rnd(p50(n_ms)),
            "container_overhead_ms_p50": rnd(p50(c_ms) - p50(n_ms))}


def run(quick: bool = False) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="cona-bench-runtime-"))
    try:
        figures = wasm_figures(5 if quick else 200, root / "wasm")
        figures.update(container_figures(3 if quick else 30, root))
        figures.update(artifacts.run(quick=quick))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    figures["runs"] = "quick" if quick else "full"
    return figures
