"""The WebAssembly runtime: correct results, exact metering, determinism, and every limit."""

from __future__ import annotations

import hashlib
import math

import pytest
import wasmtime

from provider_agent.runtime.wasm import Limits, WasmRuntime, WorkloadRejected
from provider_agent.workloads import check_workloads, load_workload

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def rt() -> WasmRuntime:
    return WasmRuntime()


def test_committed_workloads_match_their_sources():
    assert check_workloads() == []


@pytest.mark.parametrize("size", [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 1 << 20])
def test_sha256_matches_hashlib_across_padding_boundaries(rt, size):
    data = bytes((i * 131 + 7) & 0xFF for i in range(size))
    result = rt.run(load_workload("sha256"), data)
    assert result.ok, result
    assert result.output == (hashlib.sha256(data).hexdigest() + "\n").encode()


def _lcg(seed: int):
    state = seed
    while True:
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        yield float(state >> 11) * (1.0 / 9007199254740992.0)


def _matmul_reference(n: int, seed: int) -> tuple[float, float, float]:
    gen = _lcg(seed)
    a = [next(gen) for _ in range(n * n)]
    b = [next(gen) for _ in range(n * n)]
    c = [0.0] * (n * n)
    for i in range(n):
        for k in range(n):
            aik = a[i * n + k]
            for j in range(n):
                c[i * n + j] += aik * b[k * n + j]
    total = 0.0
    for v in c:
        total += v
    return total, c[0], c[-1]


def test_matmul_is_bit_exact_with_an_independent_reference(rt):
    result = rt.run(load_workload("matmul"), b"24 12345\n")
    assert result.ok
    got = tuple(float(t) for t in result.output.split())
    assert got == _matmul_reference(24, 12345)  # exact equality: IEEE-754 on both sides


def _nbody_reference(steps: int) -> tuple[float, float]:
    pi = 3.141592653589793
    sm, days = 4.0 * pi * pi, 365.24
    bodies = [
        (0, 0, 0, 0, 0, 0, 1),
        (4.84143144246472090e+00, -1.16032004402742839e+00, -1.03622044471123109e-01,
         1.66007664274403694e-03, 7.69901118419740425e-03, -6.90460016972063023e-05, 9.54791938424326609e-04),
        (8.34336671824457987e+00, 4.12479856412430479e+00, -4.03523417114321381e-01,
         -2.76742510726862411e-03, 4.99852801234917238e-03, 2.30417297573763929e-05, 2.85885980666130812e-04),
        (1.28943695621391310e+01, -1.51111514016986312e+01, -2.23307578892655734e-01,
         2.96460137564761618e-03, 2.37847173959480950e-03, -2.96589568540237556e-05, 4.36624404335156298e-05),
        (1.53796971148509165e+01, -2.59193146099879641e+01, 1.79258772950371181e-01,
         2.68067772490389322e-03, 1.62824170038242295e-03, -9.51592254519715870e-05, 5.15138902046611451e-05),
    ]
    x = [float(b[0]) for b in bodies]; y = [float(b[1]) for b in bodies]; z = [float(b[2]) for b in bodies]
    vx = [b[3] * days for b in bodies]; vy = [b[4] * days for b in bodies]; vz = [b[5] * days for b in bodies]
    m = [b[6] * sm for b in bodies]
    px = py = pz = 0.0
    for i in range(5):
        px += vx[i] * m[i]; py += vy[i] * m[i]; pz += vz[i] * m[i]
    vx[0], vy[0], vz[0] = -px / sm, -py / sm, -pz / sm

    def energy() -> float:
        e = 0.0
        for i in range(5):
            e += 0.5 * m[i] * (vx[i] * vx[i] + vy[i] * vy[i] + vz[i] * vz[i])
            for j in range(i + 1, 5):
                dx, dy, dz = x[i] - x[j], y[i] - y[j], z[i] - z[j]
                e -= (m[i] * m[j]) / math.sqrt(dx * dx + dy * dy + dz * dz)
        return e

    before = energy()
    for _ in range(steps):
        for i in range(5):
            for j in range(i + 1, 5):
                dx, dy, dz = x[i] - x[j], y[i] - y[j], z[i] - z[j]
                d2 = dx * dx + dy * dy + dz * dz
                mag = 0.01 / (d2 * math.sqrt(d2))
                vx[i] -= dx * m[j] * mag; vy[i] -= dy * m[j] * mag; vz[i] -= dz * m[j] * mag
                vx[j] += dx * m[i] * mag; vy[j] += dy * m[i] * mag; vz[j] += dz * m[i] * mag
        for i in range(5):
            x[i] += 0.01 * vx[i]; y[i] += 0.01 * vy[i]; z[i] += 0.01 * vz[i]
    return before, energy()


def test_nbody_is_bit_exact_with_an_independent_reference(rt):
    result = rt.run(load_workload("nbody"), b"200")
    assert result.ok
    assert tuple(float(t) for t in result.output.split()) == _nbody_reference(200)


def test_same_module_and_input_give_same_output_and_same_fuel_in_a_fresh_runtime(rt):
    module = load_workload("matmul")
    first = rt.run(module, b"20 7")
    again = rt.run(module, b"20 7")
    fresh = WasmRuntime().run(module, b"20 7")
    assert first.output == again.output == fresh.output
    assert first.fuel_used == again.fuel_used == fresh.fuel_used > 0
    assert first.result_hash == fresh.result_hash
    assert rt.run(module, b"20 8").result_hash != first.result_hash


def test_fuel_grows_with_work(rt):
    small = rt.run(load_workload("matmul"), b"20 1").fuel_used
    large = rt.run(load_workload("matmul"), b"40 1").fuel_used
    assert 5 * small < large < 9 * small  # ~n^3: 8x the multiply-adds, plus fixed start-up


def test_out_of_fuel_stops_cleanly_and_bills_the_limit(rt):
    result = rt.run(load_workload("matmul"), b"200 1", Limits(fuel=1_000_000))
    assert result.status == "out_of_fuel" and not result.ok
    assert result.fuel_used == 1_000_000
    assert result.output == b""


def test_wall_clock_limit_interrupts_a_long_run(rt):
    result = rt.run(load_workload("nbody"), b"100000000", Limits(wall_seconds=0.2))
    assert result.status == "timeout"
    assert result.wall_ms < 5_000


def test_memory_limit_stops_an_oversized_job(rt):
    # 3 matrices of 400^2 doubles need 3.7 MiB: refused under 2 MiB, fine under 16 MiB
    refused = rt.run(load_workload("matmul"), b"400 1", Limits(memory_bytes=2 * 1024 * 1024))
    assert refused.status == "trap" and refused.output == b"" and "unreachable" in refused.detail
    fits = rt.run(load_workload("matmul"), b"150 1", Limits(memory_bytes=16 * 1024 * 1024))
    assert fits.ok


def test_bad_input_is_a_nonzero_exit_not_a_crash(rt):
    result = rt.run(load_workload("matmul"), b"")
    assert result.status == "exit" and result.exit_code == 2


def test_output_limit(rt):
    result = rt.run(load_workload("sha256"), b"x", Limits(max_output_bytes=10))
    assert result.status == "output" and result.output == b""


def test_a_module_with_a_clock_or_randomness_is_refused(rt):
    wat = """(module
      (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
      (import "wasi_snapshot_preview1" "random_get" (func $rand (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")))"""
    with pytest.raises(WorkloadRejected) as info:
        rt.run(wasmtime.wat2wasm(wat), b"")
    assert "clock_time_get" in str(info.value) and "random_get" in str(info.value)


def test_garbage_and_non_commands_are_refused(rt):
    with pytest.raises(WorkloadRejected, match="not a valid WebAssembly module"):
        rt.run(b"\x00asm\x01\x00\x00\x00garbage", b"")
    with pytest.raises(WorkloadRejected, match="no _start"):
        rt.run(wasmtime.wat2wasm("(module (func (export \"main\")))"), b"")
