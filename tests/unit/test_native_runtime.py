"""The native runtime with real processes: outputs and hashes, each rlimit hit and reported,
the wall clock killing a whole process group, the private directory, the scrubbed environment,
output truncation; the limit and allowlist parsers; native specs and their digests."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path

import pytest

from marketplace.engine.errors import InvalidSpec
from marketplace.engine.spec import Spec
from provider_agent.runtime.native import (NativeConfigError, NativeLimits, NativeProgram, NativeRuntime, allowlist,
                                           check_program, parse_limits, parse_program, usage_for_cpu)
from provider_agent.runtime.wasm import RunResult

pytestmark = pytest.mark.unit

PY = "/usr/bin/python3"  # Debian's interpreter: a real binary (the pyenv shim needs the agent's env)
LIMITS = NativeLimits(cpu_seconds=5, memory_mib=256, open_files=32, wall_seconds=10, file_size_mib=1)


@pytest.fixture
def rt(tmp_path) -> NativeRuntime:
    return NativeRuntime(tmp_path / "state" / "native")


def _gone_or_zombie(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return True
    return fields[0] in ("Z", "X")  # dead, waiting for its (new) parent to reap it


def test_sha256sum_output_and_the_wasm_result_hash(rt):
    data = b"abc" * 1000
    r = rt.run(NativeProgram("sha256sum", ("/usr/bin/sha256sum",)), data, LIMITS)
    assert r.status == "ok" and r.exit_code == 0 and not r.output_truncated
    assert r.output == hashlib.sha256(data).hexdigest().encode() + b"  -\n"
    # the same canonical bytes and hash as the wasm runtime's result
    assert r.result_hash == RunResult("ok", 0, r.output, 0, 0.0).result_hash
    assert 0 < r.cpu_seconds < 0.5 and usage_for_cpu(r.cpu_seconds, 1, 600) == 1


def test_exit_code_and_signal_are_reported(rt):
    r = rt.run([PY, "-c", "import sys; print('partial'); sys.exit(3)"], b"", LIMITS)
    assert (r.status, r.exit_code, r.output) == ("exit", 3, b"partial\n")
    r = rt.run([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"], b"", LIMITS)
    assert (r.status, r.exit_code, r.detail) == ("signal", -15, "killed by SIGTERM")
    assert r.result_hash != rt.run([PY, "-c", "pass"], b"", LIMITS).result_hash


def test_cpu_limit_stops_a_busy_loop_at_about_one_second(rt):
    r = rt.run([PY, "-c", "while True: pass"], b"", NativeLimits(cpu_seconds=1, wall_seconds=10))
    assert r.status == "cpu-limit", r
    assert 0.8 <= r.cpu_seconds <= 2.1 and usage_for_cpu(r.cpu_seconds, 1, 600) in (1, 2)
    assert r.wall_ms < 9000  # the rlimit stopped it, not the wall clock


def test_memory_limit(rt):
    r = rt.run([PY, "-c", "x = bytearray(2 << 30)"], b"", NativeLimits(memory_mib=256))
    assert r.status == "memory-limit" and r.exit_code == 1 and "256 MiB" in r.detail and "MemoryError" in r.detail
    ok = rt.run([PY, "-c", "x = bytearray(64 << 20); print(len(x))"], b"", NativeLimits(memory_mib=256))
    assert ok.status == "ok" and ok.output == b"67108864\n"


def test_open_files_limit(rt):
    prog = "fs = [open('/dev/null') for _ in range(40)]; print(len(fs))"
    r = rt.run([PY, "-c", prog], b"", NativeLimits(open_files=16))
    assert r.status == "files-limit" and "Too many open files" in r.detail
    assert rt.run([PY, "-c", prog], b"", NativeLimits(open_files=64)).output == b"40\n"


def test_file_size_limit_kills_the_writer(rt):
    r = rt.run(["/usr/bin/dd", "if=/dev/zero", "of=big", "bs=1M", "count=2"], b"", NativeLimits(file_size_mib=1))
    assert (r.status, r.exit_code) == ("fsize-limit", -25)  # SIGXFSZ


def test_wall_timeout_kills_the_whole_process_group(rt):
    started = time.monotonic()
    r = rt.run(["/bin/sh", "-c", "sleep 30 & echo $!; sleep 30"], b"", NativeLimits(wall_seconds=0.4))
    assert time.monotonic() - started < 3
    assert r.status == "wall-timeout" and r.exit_code == -9
    grandchild = int(r.output)
    deadline = time.monotonic() + 2
    while not _gone_or_zombie(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone_or_zombie(grandchild), f"the backgrounded sleep {grandchild} survived the timeout"


def test_leftovers_are_killed_after_a_normal_exit(rt):
    r = rt.run(["/bin/sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"], b"", LIMITS)
    assert r.status == "ok" and r.wall_ms < 2000
    pid = int(r.output)
    deadline = time.monotonic() + 2
    while not _gone_or_zombie(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone_or_zombie(pid)


def test_private_working_directory_removed_afterwards(rt, tmp_path):
    r = rt.run(["/bin/sh", "-c", "pwd; stat -c %a .; echo hi > made; ls; echo $HOME; echo $TMPDIR"], b"", LIMITS)
    cwd, mode, listing, home, tmpdir = r.output.decode().splitlines()
    assert r.status == "ok" and mode == "700" and listing == "made" and home == tmpdir == cwd
    assert Path(cwd).parent == tmp_path / "state" / "native" and not Path(cwd).exists()
    assert stat.S_IMODE(os.stat(tmp_path / "state" / "native").st_mode) == 0o700
    assert os.listdir(tmp_path / "state" / "native") == []  # the stdin file was anonymous, the run dir gone
    # a directory the program made unwritable is removed all the same
    rt.run(["/bin/sh", "-c", "mkdir -p d/e && touch d/e/f && chmod 500 d/e d"], b"", LIMITS)
    assert os.listdir(tmp_path / "state" / "native") == []


def test_the_environment_is_not_inherited(rt, monkeypatch):
    monkeypatch.setenv("CONA_FAKE_SECRET", "hunter2-passphrase")
    r = rt.run(["/usr/bin/env"], b"", LIMITS)
    env = dict(line.split("=", 1) for line in r.output.decode().splitlines())
    assert "CONA_FAKE_SECRET" not in env and b"hunter2" not in r.output
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin" and set(env) == {"PATH", "HOME", "TMPDIR", "LANG"}


def test_stdin_is_the_input_and_no_other_fd_is_open(rt):
    prog = "import os, sys; d = sys.stdin.buffer.read(); print(len(d), sorted(os.listdir('/proc/self/fd')))"
    r = rt.run([PY, "-c", prog], bytes(range(256)) * 4096, LIMITS)
    assert r.status == "ok"
    size, fds = r.output.decode().split(" ", 1)
    assert size == str(256 * 4096) and fds.strip() == "['0', '1', '2', '3']"  # 3: listdir's own handle


def test_output_truncation(rt):
    limits = NativeLimits(max_output_bytes=1000)
    r = rt.run([PY, "-c", "import sys; sys.stdout.write('x' * 5000)"], b"", limits)
    assert r.status == "output" and r.output_truncated and r.output == b"x" * 1000
    started = time.monotonic()
    endless = rt.run(["/usr/bin/yes"], b"", limits)  # never ends by itself: killed at the bound
    assert endless.status == "output" and len(endless.output) == 1000 and time.monotonic() - started < 2
    exact = rt.run([PY, "-c", "import sys; sys.stdout.write('x' * 1000)"], b"", limits)
    assert exact.status == "ok" and not exact.output_truncated


def test_a_missing_program_is_an_exec_error_result(rt):
    r = rt.run(["/nonexistent/prog"], b"", LIMITS)
    assert (r.status, r.exit_code) == ("exec-error", 127) and "/nonexistent/prog" in r.detail


# -- pure parts --------------------------------------------------------------------------------

def test_parse_limits():
    lim = parse_limits("cpu=3,mem=512,files=20,wall=7.5")
    assert (lim.cpu_seconds, lim.memory_mib, lim.open_files, lim.wall_seconds) == (3, 512, 20, 7.5)
    assert parse_limits("procs=8,fsize=2,output=1").max_output_bytes == 1 << 20
    assert parse_limits("") == NativeLimits()
    for bad, field in (("cpu", "native_limits"), ("gpu=1", "native_limits"), ("mem=lots", "native_limits.mem"),
                       ("cpu=0", "native_limits.cpu"), ("wall=-1", "native_limits.wall")):
        with pytest.raises(NativeConfigError) as exc:
            parse_limits(bad)
        assert exc.value.fields["field"] == field, bad


def test_parse_and_check_programs(tmp_path):
    p = parse_program("sha256sum=/usr/bin/sha256sum")
    assert p == NativeProgram("sha256sum", ("/usr/bin/sha256sum",)) and check_program(p) is p
    assert parse_program("wc-l=/usr/bin/wc -l").argv == ("/usr/bin/wc", "-l")
    for bad in ("sha256sum", "Bad=/usr/bin/env", "x=relative/prog", "x=", "=/usr/bin/env"):
        with pytest.raises(NativeConfigError):
            parse_program(bad)
    (tmp_path / "plain").write_text("not executable")
    for missing in (f"m={tmp_path / 'nope'}", f"m={tmp_path / 'plain'}", f"m={tmp_path}"):
        with pytest.raises(NativeConfigError):
            check_program(parse_program(missing))
    with pytest.raises(NativeConfigError, match="named twice"):
        allowlist([p, p])


def test_usage_for_cpu_is_bounded():
    assert usage_for_cpu(0.0, 1, 600) == 1
    assert usage_for_cpu(2.01, 1, 600) == 3
    assert usage_for_cpu(50.0, 2, 10) == 20


# -- native specs --------------------------------------------------------------------------------

WASM = {"requirement": {"device_class": "gpu", "count": 1}, "attachment": "n1",
        "workload": {"module": "sha256", "input": "616263", "fuel": 10**8}}
NATIVE = {"requirement": {"device_class": "cpu", "count": 1}, "attachment": "n1",
          "workload": {"runtime": "native", "program": "sha256sum", "input": "0x616263", "cpu_s": 5}}


def test_existing_spec_digests_do_not_change():
    # pinned from marketplace/engine/spec.py as it was before native workloads existed
    assert Spec.from_dict(WASM).digest().hex() == "7b01787aafd9cd16eb1d6c573589fb4a38854e7d28c5d29608ef9cf12c3f0ad8"
    other = {"requirement": {"device_class": "cpu", "count": 2}, "attachment": "1",
             "workload": {"module": "matmul", "input": "0x34302037", "fuel": 10**9}}
    assert Spec.from_dict(other).digest().hex() == "b55cff8379c60c73b78eaa126cb7b2d0870018d2cc50ec7b5684ff4fa2f07c1b"
    explicit = {**WASM, "workload": {**WASM["workload"], "runtime": "wasm"}}
    assert Spec.from_dict(explicit).digest() == Spec.from_dict(WASM).digest()
    assert Spec.from_dict(explicit).to_dict() == Spec.from_dict(WASM).to_dict()
    assert Spec.from_dict(WASM).runtime == "wasm"


def test_native_spec_round_trip_and_refusals():
    s = Spec.from_dict(NATIVE)
    assert (s.runtime, s.program, s.input, s.cpu_s, s.module, s.fuel) == ("native", "sha256sum", b"abc", 5, "", 0)
    assert Spec.from_dict(s.to_dict()) == s and s.digest() != Spec.from_dict(WASM).digest()
    assert Spec.from_dict(NATIVE, modules=("sha256",), programs=("sha256sum",)) == s
    cases = [({"programs": ()}, {}, "spec.workload.program"),
             ({"programs": ("other",)}, {}, "spec.workload.program"),
             ({}, {"cpu_s": 0}, "spec.workload.cpu_s"),
             ({}, {"cpu_s": True}, "spec.workload.cpu_s"),
             ({}, {"fuel": 10}, "spec.workload.fuel"),
             ({}, {"module": "sha256"}, "spec.workload.module"),
             ({}, {"runtime": "docker"}, "spec.workload.runtime"),
             ({}, {"program": ""}, "spec.workload.program")]
    for kw, change, field in cases:
        with pytest.raises(InvalidSpec) as exc:
            Spec.from_dict({**NATIVE, "workload": {**NATIVE["workload"], **change}}, **kw)
        assert exc.value.fields["field"] == field, (kw, change)
    with pytest.raises(InvalidSpec) as exc:  # a wasm spec may not carry native fields
        Spec.from_dict({**WASM, "workload": {**WASM["workload"], "program": "sha256sum"}})
    assert exc.value.fields["field"] == "spec.workload.program"


def test_agent_refuses_native_specs_it_does_not_offer():
    from marketplace.chain.market import Order, OrderState
    from provider_agent.daemon import SpecError, check_spec

    zero = "0x" + "00" * 20
    order = Order(5, zero, 1, 0, OrderState.ASSIGNED, 1, 0, zero, 60, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0,
                  Spec.from_dict(NATIVE).digest(), b"\x00" * 32, b"\x00" * 32, ())
    with pytest.raises(SpecError, match="not offered here"):  # an agent that did not opt in
        check_spec(NATIVE, order)
    with pytest.raises(SpecError, match="not offered here"):
        check_spec(NATIVE, order, ("wc",), 60)
    with pytest.raises(SpecError, match="over this provider's 4"):
        check_spec(NATIVE, order, ("sha256sum",), 4)
    assert check_spec(NATIVE, order, ("sha256sum",), 5).program == "sha256sum"
