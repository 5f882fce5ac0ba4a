"""Hostile workloads against one long-lived workbench (the agent's runtimes), WebAssembly and containers.

Each attack of issue 15 - fork bomb, memory bomb, disk fill, endless loop, network access,
reading the agent's key, escaping the work directory, huge outputs, a zip-bomb input - is stopped
by a limit and reported with the status that names it and the usage the runtime measured; after
each one the same workbench still serves a healthy wasm and container run, and at the end nothing
is left behind: no container, run directory, mount, cgroup or process of the container user.
"""

from __future__ import annotations

import gzip
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import wasmtime

from marketplace.errors import InputError
from provider_agent.runtime.cgroup import ROOT as CGROUP_ROOT
from provider_agent.runtime.container import ContainerJob, ContainerLimits
from provider_agent.runtime.scratch import OutputCaps
from provider_agent.runtime.wasm import Limits, WasmRuntime, WorkloadRejected
from provider_agent.runtime.workbench import ContainerWork, Workbench, WasmWork
from provider_agent.workloads.examples import load_example
from tests.e2e.container_env import busybox_archive, make_runtime, require_podman

pytestmark = pytest.mark.e2e

HOSTILE = Path(__file__).resolve().parents[1] / "fixtures" / "hostile"
SECRET = b"0xsecret-agent-key-7f3a9c"
MIB = 1024 * 1024


def wat(name: str) -> bytes:
    return wasmtime.wat2wasm((HOSTILE / f"{name}.wat").read_text())


class World:
    def __init__(self, base: Path) -> None:
        self.home = base / "agent-home"  # the agent's home: its key and its state directory
        (self.home / ".cona-agent").mkdir(parents=True)
        self.key = self.home / ".cona-agent" / "keystore.json"
        self.key.write_bytes(SECRET)
        self.wasm_root = self.home / ".cona-agent" / "state" / "wasm"
        self.wasm_root.mkdir(parents=True)
        (self.wasm_root / "key").write_bytes(SECRET)  # where escape.wat's "../../key" would land
        self.containers = make_runtime(self.home / ".cona-agent" / "state" / "containers")
        archive, digest = busybox_archive(self.containers, base)
        self.containers.load_archive(archive, digest)
        self.image = "sha256:" + digest
        self.bench = Workbench(WasmRuntime(self.wasm_root), containers=self.containers)

    def sh(self, script: str, limits: ContainerLimits = ContainerLimits(wall_seconds=20), **job) -> ContainerWork:
        return ContainerWork(ContainerJob(self.image, ("/bin/sh", "-c", script), **job), limits)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    require_podman()
    w = World(tmp_path_factory.mktemp("hostile"))
    yield w
    w.bench.close()  # closes its container runtime too


@pytest.fixture(autouse=True)
def still_serving(world):
    """After every attack the same workbench serves a healthy run of each runtime."""
    yield
    wasm = world.bench.run(WasmWork(load_example("c"), b"", args=("t.txt",), inputs={"t.txt": b"a b\n"}))
    assert wasm.ok and wasm.output == b"total 1 2 4\n", wasm.detail
    box = world.bench.run(world.sh("echo alive"))
    assert box.ok and box.output == b"alive\n", box.detail
    assert world.bench.health()["active"] == 0


def test_fork_bomb(world):
    wasm = world.bench.run(WasmWork(wat("stack_bomb")))  # no processes in wasm: the nearest is a recursion bomb
    assert wasm.status == "trap" and "call stack exhausted" in wasm.detail
    box = world.bench.run(world.sh("f(){ f | f & }; f; sleep 60", ContainerLimits(pids=64, wall_seconds=3)))
    assert b"can't fork" in box.stderr  # the pids limit held it
    # the bomb runs until the wall limit, unless the container's first shell itself cannot fork its
    # `sleep` and exits first (it then takes the whole container, and every fork of the bomb, with it)
    assert box.status in ("wall-timeout", "exit") and not box.ok, box.status
    assert box.usage.wall_ms < 20000
    assert _processes_of_nobody() == []


def test_memory_bomb(world):
    wasm = world.bench.run(WasmWork(wat("memory_bomb"), limits=Limits(memory_bytes=16 * MIB)))
    assert wasm.status == "memory-limit" and wasm.usage.fuel > 0
    box = world.bench.run(world.sh("x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo ${#x}",
                                   ContainerLimits(memory_mib=64, wall_seconds=30)))
    assert box.status == "memory-limit" and box.exit_code == -9
    assert box.usage.peak_memory_bytes >= 64 * MIB and box.usage.cpu_seconds > 0


def test_disk_fill(world):
    wasm = world.bench.run(WasmWork(wat("fill"), b"100000", Limits(scratch_bytes=2 * MIB)))
    assert wasm.status == "disk-limit" and sum(len(f.data) for f in wasm.files) <= 2 * MIB
    box = world.bench.run(world.sh("dd if=/dev/zero of=/work/out/fill bs=1M count=10000; "
                                   "dd if=/dev/zero of=/work/more bs=1M count=10; exit 1",
                                   ContainerLimits(work_mib=8, wall_seconds=30)))
    assert box.status == "disk-limit" and b"No space left on device" in box.stderr
    assert sum(len(f.data) for f in box.files) <= 8 * MIB


def test_endless_loop(world):
    timed = world.bench.run(WasmWork(wat("spin"), limits=Limits(wall_seconds=0.5, fuel=10**15)))
    assert timed.status == "timeout" and 500 <= timed.usage.wall_ms < 5000
    metered = world.bench.run(WasmWork(wat("spin"), limits=Limits(fuel=50_000_000)))
    assert metered.status == "out_of_fuel" and metered.usage.fuel == 50_000_000
    box = world.bench.run(world.sh("while :; do :; done", ContainerLimits(wall_seconds=2, cpus=1)))
    assert box.status == "wall-timeout"
    assert 0.5 <= box.usage.cpu_seconds <= box.usage.wall_ms / 1000 * 1.1  # from the cgroup, at most one CPU


def test_network_access(world):
    with pytest.raises(WorkloadRejected, match="sock_accept"):
        world.bench.run(WasmWork(wat("socket")))
    seen: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    threading.Thread(target=lambda: _accept_one(server, seen), daemon=True).start()
    box = world.bench.run(world.sh(f"ls /sys/class/net; echo hi | nc -w 2 127.0.0.1 {port} && echo reached; "
                                   "wget -q -T 2 -O- http://example.org/ && echo fetched; exit 0"))
    server.close()
    assert box.output == b"lo\n" and seen == []
    with pytest.raises(InputError, match="network"):
        world.bench.run(world.sh("true", network=True))


def _accept_one(server: socket.socket, seen: list[bytes]) -> None:
    try:
        conn, _ = server.accept()
        seen.append(conn.recv(100))
        conn.close()
    except OSError:
        pass


def test_reading_the_agents_key(world):
    wasm = world.bench.run(WasmWork(wat("escape"), inputs={"a.txt": b"x"}))
    assert SECRET not in wasm.output and all(SECRET not in f.data for f in wasm.files)
    box = world.bench.run(world.sh(f"cat {world.key} {world.wasm_root / 'key'}; "
                                   "find / -name 'keystore*' -o -name key 2>/dev/null; "
                                   "cat /proc/1/environ /proc/*/environ 2>/dev/null; exit 0"))
    assert box.ok and SECRET not in box.output and SECRET not in box.stderr
    assert box.output.count(b"\n") <= 1  # found nothing (the environ of its own pid 1 at most)


def test_escaping_the_work_directory(world):
    wasm = world.bench.run(WasmWork(wat("escape"), inputs={"a.txt": b"precious"}))
    assert all(e != 0 for e in wasm.output[:6]) and wasm.files == ()
    script = ("cd /work/..; for d in / /etc /input /usr /proc/sys/kernel; do "
              "touch $d/x 2>/dev/null && echo wrote $d; done; "
              "ln -s /input/data /work/out/link; ln -s ../../../../etc/passwd /work/out/up; "
              "mount -t tmpfs none /mnt 2>/dev/null && echo mounted; chroot / true 2>/dev/null && echo chrooted; "
              "echo done")
    box = world.bench.run(world.sh(script, inputs={"data": b"precious"}))
    assert box.output == b"done\n" and box.files == ()
    assert "link: a symbolic link" in box.detail and "up: a symbolic link" in box.detail


def test_huge_outputs(world):
    # its writes fail once over the bound; the module keeps trying until the wall clock stops it
    loud = world.bench.run(WasmWork(wat("yes"), limits=Limits(max_output_bytes=MIB, wall_seconds=1, fuel=10**12)))
    assert loud.status == "output" and loud.output == b""
    many = world.bench.run(WasmWork(wat("spray"), b"500", Limits(outputs=OutputCaps(max_files=64))))
    assert many.status == "output" and many.files == ()
    box = world.bench.run(world.sh("yes", ContainerLimits(max_output_bytes=MIB, wall_seconds=30)))
    assert box.status == "output" and len(box.output) == MIB and box.usage.wall_ms < 15000
    big = world.bench.run(world.sh("dd if=/dev/zero of=/work/out/big bs=1M count=3",
                                   ContainerLimits(outputs=OutputCaps(max_file_bytes=2 * MIB))))
    assert big.status == "output" and big.files == () and "over 2097152 bytes" in big.detail


def test_zip_bomb_input(world):
    bomb = gzip.compress(bytes(256 * MIB), compresslevel=9)  # 256 MiB of zeros in ~250 KiB
    assert len(bomb) < MIB
    box = world.bench.run(world.sh("gunzip -c /input/bomb.gz > /work/out/unpacked",
                                   ContainerLimits(work_mib=16, wall_seconds=30), inputs={"bomb.gz": bomb}))
    assert box.status == "disk-limit" and sum(len(f.data) for f in box.files) <= 16 * MIB
    wasm = world.bench.run(WasmWork(wat("expand"), b"4000000000 65", Limits(scratch_bytes=4 * MIB)))
    assert wasm.status == "disk-limit"


def test_nothing_is_left_behind(world):
    rt = world.containers
    rt.settle()
    assert subprocess.run(rt.podman_argv("ps", "--all", "--quiet"), capture_output=True, text=True).stdout == ""
    assert list((rt.storage / "runs").iterdir()) == [] and list(world.wasm_root.glob("run-*")) == []
    mounts = Path("/proc/self/mounts").read_text()
    assert str(rt.storage) not in mounts and str(world.wasm_root) not in mounts
    assert not list(CGROUP_ROOT.glob(f"*/cona/{rt.prefix}*")) and not list(CGROUP_ROOT.glob(f"cona/{rt.prefix}*"))
    assert _processes_of_nobody() == []


def _processes_of_nobody() -> list[str]:
    out = subprocess.run(["ps", "-u", "65534", "-o", "pid=,comm="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip()]
