"""The container runtime against real podman + runc: what a container sees, what it cannot do,
usage measured from its cgroup, images refused before anything runs, a local registry, and GPUs
through CDI (with harmless device nodes: copies of /dev/null)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from marketplace.errors import InputError
from marketplace.resources.model import DeviceCapability, DeviceClass
from provider_agent.runtime.cdi import DevicePool, generate_spec, write_specs
from provider_agent.runtime.container import ContainerJob, ContainerLimits, ContainerRuntime
from provider_agent.runtime.images import ImageRejected, host_arch
from provider_agent.runtime.scratch import OutputCaps
from provider_agent.runtime.wasm import WasmRuntime
from provider_agent.runtime.workbench import ContainerWork, Workbench
from tests.e2e.container_env import LocalRegistry, allow, busybox_archive, make_runtime, require_podman
from tests.unit.test_container_images import make_archive

pytestmark = pytest.mark.e2e

SH = "/bin/sh"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    require_podman()
    base = tmp_path_factory.mktemp("containers")
    runtime = make_runtime(base / "store")
    archive, digest = busybox_archive(runtime, base)
    runtime.load_archive(archive, digest)
    yield runtime, "sha256:" + digest, base
    runtime.close()


def sh(image: str, script: str, **kw) -> ContainerJob:
    return ContainerJob(image, (SH, "-c", script), **kw)


def _containers(runtime: ContainerRuntime) -> str:
    runtime.settle()
    return subprocess.run(runtime.podman_argv("ps", "--all", "--quiet"), capture_output=True, text=True).stdout


def test_a_job_gets_stdin_arguments_inputs_read_only_and_its_output_files(env):
    runtime, image, _ = env
    job = ContainerJob(image, (SH, "-c", 'cat /input/data.txt; wc -c; echo "$1" > /work/out/arg.txt; '
                                         'mkdir /work/out/sub && echo deep > /work/out/sub/x; '
                                         'echo no > /input/data.txt || echo input is read-only', "sh", "ARG"),
                       stdin=b"12345", inputs={"data.txt": b"hello\n"})
    result = runtime.run(job)
    assert result.ok, (result.status, result.detail, result.stderr)
    assert result.output == b"hello\n5\ninput is read-only\n"
    assert [(f.name, f.data) for f in result.files] == [("arg.txt", b"ARG\n"), ("sub/x", b"deep\n")]
    assert result.record.files[0].sha256 and result.result_hash == result.record.digest
    assert _containers(runtime) == ""  # nothing left behind


def test_every_container_is_confined(env):
    runtime, image, _ = env
    limits = ContainerLimits(memory_mib=96, pids=50, work_mib=8)
    script = ("id -u; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; ulimit -n; "
              "touch /x 2>/dev/null || echo rootfs read-only; touch /tmp/x 2>/dev/null || echo tmp read-only; "
              "ls /sys/class/net; grep ' /work ' /proc/mounts | cut -d' ' -f3,4; "
              "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max 2>/dev/null "
              "|| cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max")
    result = runtime.run(sh(image, script), limits)
    assert result.ok, result.stderr
    lines = result.output.decode().split("\n")
    assert lines[0] == "65534"
    assert lines[1].split() == ["CapEff:", "0000000000000000"] and lines[2].split() == ["NoNewPrivs:", "1"]
    assert lines[3] == "1024"
    assert lines[4:6] == ["rootfs read-only", "tmp read-only"]
    assert lines[6] == "lo"  # no network but the loopback
    assert lines[7].startswith("tmpfs ") and "size=8192k" in lines[7]
    assert lines[8:10] == [str(96 * 1024 * 1024), "50"]


def test_usage_is_measured_from_the_cgroup_not_reported_by_the_workload(env):
    runtime, image, _ = env
    busy = runtime.run(sh(image, "echo cpu=0 mem=0; end=$(( $(date +%s) + 2 )); "
                                 "while [ $(date +%s) -lt $end ]; do :; done"))
    assert busy.ok
    assert busy.cpu_seconds >= 0.5 and busy.cpu_seconds * 1000 <= busy.wall_ms * 1.2
    hungry = runtime.run(sh(image, "head -c 60000000 /dev/zero | tail -c 60000000 | wc -c"),
                         ContainerLimits(memory_mib=256))
    assert hungry.output == b"60000000\n"
    assert hungry.peak_memory_bytes >= 60_000_000 > busy.peak_memory_bytes


def test_bad_images_and_jobs_are_refused_before_anything_runs(env, tmp_path):
    runtime, image, _ = env
    corrupt = tmp_path / "corrupt.tar"
    corrupt.write_bytes(b"\x00" * 4096)
    with pytest.raises(ImageRejected, match="not a usable OCI archive"):
        runtime.load_archive(corrupt, _sha(corrupt))
    other = "arm64" if host_arch() != "arm64" else "amd64"
    foreign = make_archive(tmp_path / "foreign.tar", arch=other)
    with pytest.raises(ImageRejected, match=f"image for linux/{other}"):
        runtime.load_archive(foreign, _sha(foreign))
    with pytest.raises(ImageRejected, match="does not hash to the digest"):
        runtime.load_archive(foreign, "0" * 64)
    with pytest.raises(ImageRejected, match="not on this provider's image allowlist"):
        runtime.run(ContainerJob("localhost:5000/tools/busybox:1", ("true",)))
    with pytest.raises(ImageRejected, match="is loaded"):
        runtime.run(ContainerJob("sha256:" + "1" * 64, ("true",)))
    with pytest.raises(InputError, match="network"):
        runtime.run(sh(image, "true", network=True))
    with pytest.raises(InputError, match="CDI device name"):
        runtime.run(sh(image, "true", devices=("all",)))
    assert _containers(runtime) == "" and list((runtime.storage / "runs").iterdir()) == []
    assert runtime.run(sh(image, "echo still fine")).output == b"still fine\n"


def _sha(path: Path) -> str:
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_allowlisted_registry_image_is_pulled_from_a_local_registry(env, tmp_path):
    runtime, _, base = env
    registry = LocalRegistry(tmp_path)
    try:
        archive, _ = busybox_archive(runtime, tmp_path, name="localhost/cona-test/pushed:1",
                                     extra={"etc/motd": b"from the registry\n"})
        ref = f"{registry.host}/tools/busybox:1"
        registry.push(runtime, archive, ref)
        puller = make_runtime(tmp_path / "store", registries=allow(f"{registry.host}/tools/busybox"),
                              insecure_registries=(registry.host,))
        result = puller.run(ContainerJob(ref, ("cat", "/etc/motd")))
        assert result.ok and result.output == b"from the registry\n"
        with pytest.raises(ImageRejected, match="allowlist"):
            puller.run(ContainerJob(f"{registry.host}/tools/other:1", ("true",)))
        with pytest.raises(ImageRejected, match="cannot be pulled"):
            puller.run(ContainerJob(f"{registry.host}/tools/busybox:missing", ("true",)))
        puller.close()
    finally:
        registry.close()


def _cdi_taken() -> bool:
    for d in (Path("/etc/cdi"), Path("/var/run/cdi")):
        for spec in d.glob("*") if d.is_dir() else ():
            if "nvidia.com/gpu" in spec.read_text(errors="replace"):
                return True
    return False


def test_a_gpu_lease_sees_exactly_its_assigned_devices_through_cdi(env, tmp_path):
    runtime, image, _ = env
    if _cdi_taken():
        pytest.skip("this machine has a real nvidia.com/gpu CDI spec: the test spec would clash with it")
    dev = tmp_path / "dev"
    dev.mkdir()
    for node in ("nvidia0", "nvidia1", "nvidia2", "nvidiactl"):
        os.mknod(dev / node, 0o666 | 0o020000, os.makedev(1, 3))  # character devices equal to /dev/null
    specs = generate_spec([DeviceCapability(DeviceClass.GPU, "NVIDIA H100 80GB HBM3", "NVIDIA", count=3)], dev)
    written = write_specs(specs, Path("/var/run/cdi"), prefix=f"cona-test-{os.getpid()}")
    try:
        pool = DevicePool({"nvidia.com/gpu": tuple(d["name"] for d in specs[0]["devices"])})
        held = pool.take("nvidia.com/gpu", 1)  # another lease holds GPU 0
        bench = Workbench(WasmRuntime(tmp_path / "wasm"), containers=runtime, devices=pool)
        outcome = bench.run(ContainerWork(sh(image, "ls /dev | grep nvidia; echo x > /dev/nvidia1 && echo usable"),
                                          device_kind="nvidia.com/gpu", device_count=2))
        assert outcome.ok, outcome.detail
        assert outcome.devices == ("nvidia.com/gpu=1", "nvidia.com/gpu=2")
        assert outcome.output.decode().split() == ["nvidia1", "nvidia2", "nvidiactl", "usable"]
        assert held == ("nvidia.com/gpu=0",)
        assert pool.take("nvidia.com/gpu", 2) == outcome.devices  # given back when the run ended
        none = bench.run(ContainerWork(sh(image, "ls /dev | grep -c nvidia || true")))
        assert none.output == b"0\n"
    finally:
        for path in written:
            path.unlink()
    assert json.loads(json.dumps(specs))  # the spec is plain JSON, as written


def test_outputs_over_a_cap_keep_nothing_and_symlinks_are_never_followed(env):
    runtime, image, _ = env
    many = runtime.run(sh(image, "for i in $(seq 1 20); do : > /work/out/f$i; done"),
                       ContainerLimits(outputs=OutputCaps(max_files=10)))
    assert (many.status, many.files) == ("output", ()) and "more than 10" in many.detail
    link = runtime.run(sh(image, "ln -s /etc/passwd /work/out/leak; mkfifo /work/out/pipe; echo ok > /work/out/ok"))
    assert link.ok and [f.name for f in link.files] == ["ok"]
    assert "leak: a symbolic link" in link.detail and "pipe: not a regular file" in link.detail
