"""Buyers' own WebAssembly: WASI args, input files read-only, output files, determinism, caps, bad modules."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import wasmtime

from marketplace.results import OutputFile, parse_result
from provider_agent.runtime.scratch import OutputCaps
from provider_agent.runtime.wasm import Limits, WasmRuntime, WorkloadRejected
from provider_agent.workloads.examples import LANGS, load_example

pytestmark = pytest.mark.unit

HOSTILE = Path(__file__).resolve().parents[1] / "fixtures" / "hostile"
TEXT = {"a.txt": b"hello world\nsecond line here\n", "dir/b.txt": b"one\ttwo  three\n\nfour"}
CLOCK = """(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $rand (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 64)))
    (drop (call $rand (i32.const 72) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


def hostile(name: str) -> bytes:
    return wasmtime.wat2wasm((HOSTILE / f"{name}.wat").read_text())


@pytest.fixture(scope="module")
def rt(tmp_path_factory) -> WasmRuntime:
    return WasmRuntime(tmp_path_factory.mktemp("wasm-runs"))


@pytest.mark.parametrize("lang", sorted(LANGS))
def test_each_example_counts_its_input_files_into_an_output_file(rt, lang):
    result = rt.run(load_example(lang), b"", args=["a.txt", "dir/b.txt"], inputs=TEXT)
    assert result.ok, (result.status, result.detail, result.stderr)
    assert result.output == b"total 4 9 49\n"
    assert [(f.name, f.data) for f in result.files] == [("counts.tsv", b"a.txt\t2\t5\t29\ndir/b.txt\t2\t4\t20\n")]
    record = parse_result(result.record.encode())
    assert record.files == (OutputFile.of("counts.tsv", result.files[0].data),)
    assert record.digest == result.result_hash


def test_the_three_languages_agree_and_stdin_works_without_arguments(rt):
    got = {lang: rt.run(load_example(lang), b"x y\nz\n") for lang in LANGS}
    assert {(r.status, r.output, r.files[0].data) for r in got.values()} == {("ok", b"total 2 3 6\n", b"-\t2\t3\t6\n")}


def test_a_deterministic_rerun_reproduces_bytes_files_and_fuel(tmp_path):
    module = load_example("rust")
    first = WasmRuntime(tmp_path / "one").run(module, b"", args=["a.txt"], inputs=TEXT)
    again = WasmRuntime(tmp_path / "two").run(module, b"", args=["a.txt"], inputs=TEXT)
    assert (first.result_hash, first.fuel_used) == (again.result_hash, again.fuel_used)
    changed = WasmRuntime(tmp_path / "three").run(module, b"", args=["a.txt"], inputs={"a.txt": b"other"})
    assert changed.result_hash != first.result_hash


def test_a_missing_input_is_the_programs_own_failure(rt):
    result = rt.run(load_example("c"), b"", args=["nope.txt"], inputs=TEXT)
    assert result.status == "exit" and result.exit_code == 1
    assert b"/input/nope.txt" in result.stderr
    assert [(f.name, f.data) for f in result.files] == [("counts.tsv", b"")]  # opened before the inputs


def test_clock_and_random_are_refused_when_deterministic_and_allowed_otherwise(rt):
    module = wasmtime.wat2wasm(CLOCK)
    with pytest.raises(WorkloadRejected, match="deterministic") as info:
        rt.run(module, b"")
    assert "clock_time_get" in str(info.value) and "random_get" in str(info.value)
    first = rt.run(module, b"", deterministic=False)
    second = rt.run(module, b"", deterministic=False)
    assert first.ok and len(first.output) == 16
    assert first.output != second.output  # a clock and eight random bytes: no re-run reproduces them


@pytest.mark.parametrize("wat, match", [
    ('(module (import "env" "f" (func)) (memory (export "memory") 1) (func (export "_start")))',
     "env.f, which this runtime does not provide"),
    ('(module (import "wasi_snapshot_preview1" "proc_raise" (func (param i32) (result i32))) '
     '(memory (export "memory") 1) (func (export "_start")))', "no workload may use"),
])
def test_foreign_and_forbidden_imports_are_refused_in_every_mode(rt, wat, match):
    for deterministic in (True, False):
        with pytest.raises(WorkloadRejected, match=match):
            rt.run(wasmtime.wat2wasm(wat), b"", deterministic=deterministic)


@pytest.mark.parametrize("module, why", [
    (b"", "not a valid WebAssembly module"),
    (b"\x00asm\x02\x00\x00\x00", "not a valid WebAssembly module"),
    # well-formed bytes that do not validate: i32.add with nothing on the stack
    (bytes.fromhex("0061736d01000000010401600000030201000a070105006a1a0b"), "not a valid WebAssembly module"),
])
def test_modules_that_do_not_validate_are_refused_before_running(rt, module, why):
    with pytest.raises(WorkloadRejected, match=why) as info:
        rt.run(module, b"")
    assert info.value.fields["field"] == "module"


def test_output_caps_keep_no_file_and_say_which_cap(rt):
    too_many = rt.run(hostile("spray"), b"11", Limits(outputs=OutputCaps(max_files=10)))
    assert (too_many.status, too_many.files) == ("output", ())
    assert "more than 10 output files" in too_many.detail
    assert len(rt.run(hostile("spray"), b"10", Limits(outputs=OutputCaps(max_files=10))).files) == 10
    too_big = rt.run(hostile("fill"), b"2", Limits(outputs=OutputCaps(max_file_bytes=65536)))
    assert too_big.status == "output" and "over 65536 bytes" in too_big.detail
    in_all = rt.run(hostile("fill"), b"2", Limits(outputs=OutputCaps(max_total_bytes=100_000)))
    assert in_all.status == "output" and "in all" in in_all.detail


def test_input_files_are_read_only_and_nothing_escapes_the_preopens(rt, tmp_path):
    result = rt.run(hostile("escape"), b"", inputs={"a.txt": b"precious"})
    errnos = list(result.output)
    # ../../key, /etc/passwd, out/../../key, ../../etc/passwd from /input, write into /input, mkdir in /input
    assert all(e != 0 for e in errnos[:6]), errnos
    assert errnos[6] == 0 and errnos[7] != 0  # the symlink may be made, never followed
    assert result.files == () and "leak: a symbolic link" in result.detail


def test_a_full_scratch_is_a_disk_limit(rt):
    result = rt.run(hostile("fill"), b"100", Limits(scratch_bytes=1024 * 1024))
    assert result.status == "disk-limit" and result.exit_code == 1


def test_stdout_over_its_bound_keeps_nothing(rt):
    result = rt.run(hostile("yes"), b"", Limits(max_output_bytes=100_000, fuel=50_000_000))
    assert result.status == "output" and result.output == b""


def test_a_memory_bomb_is_a_memory_limit(rt):
    result = rt.run(hostile("memory_bomb"), b"", Limits(memory_bytes=4 * 1024 * 1024))
    assert result.status == "memory-limit" and result.memory_bytes == 4 * 1024 * 1024


def test_a_run_timing_out_does_not_interrupt_another_one(rt):
    results: dict[str, object] = {}

    def spin() -> None:
        results["spin"] = rt.run(hostile("spin"), b"", Limits(wall_seconds=0.3, fuel=10**13))

    worker = threading.Thread(target=spin)
    worker.start()
    # a run of ~1 s that shares the engine (and its epoch) with the spinning one
    long = rt.run(hostile("spray"), b"2000", Limits(wall_seconds=30, outputs=OutputCaps(max_files=5000)))
    worker.join()
    assert results["spin"].status == "timeout"
    assert long.ok and len(long.files) == 2000
