"""Container images and devices, without podman: OCI archives checked before loading, the registry
allowlist, CDI specs from discovered devices, the device pool, and how a run's end is classified."""

from __future__ import annotations

import hashlib
import io
import json
import re
import signal
import tarfile
from pathlib import Path

import pytest

from marketplace.errors import InputError
from marketplace.resources.model import DeviceCapability, DeviceClass
from provider_agent.runtime.cdi import CdiError, DevicePool, check_device_name, generate_spec, read_specs, \
    write_specs
from provider_agent.runtime.container import ContainerLimits, classify, usage_for_container
from provider_agent.runtime.images import ImageRejected, RegistryPolicy, host_arch, inspect_archive, parse_ref

pytestmark = pytest.mark.unit

MIB = 1024 * 1024


def _layer() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"#!/bin/sh\necho hi\n"
        info = tarfile.TarInfo("bin/hello")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _blob(tar: tarfile.TarFile, data: bytes, stored: bytes | None = None) -> str:
    """Store ``data`` under its digest (or ``stored`` under ``data``'s digest: a damaged blob)."""
    digest = hashlib.sha256(data).hexdigest()
    data = data if stored is None else stored
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
    return "sha256:" + digest


def make_archive(path: Path, arch: str = "amd64", *, index_of: tuple[str, ...] = (), tamper: str = "",
                 skip: str = "") -> Path:
    """An OCI archive as `podman save --format oci-archive` writes it (or damaged as asked)."""
    with tarfile.open(path, "w") as tar:
        layer = _layer()
        layer_digest = _blob(tar, layer, layer[:-1] + b"\x01" if tamper == "layer" else None) \
            if skip != "layer" else "sha256:" + hashlib.sha256(layer).hexdigest()
        config = json.dumps({"os": "linux", "architecture": arch, "rootfs": {"type": "layers"}}).encode()
        config_digest = _blob(tar, config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"digest": config_digest, "size": len(config)},
                               "layers": [{"digest": layer_digest, "size": len(layer)}]}).encode()
        manifest_digest = _blob(tar, manifest)
        entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
                 "size": len(manifest)}
        if index_of:
            entries = [dict(entry, platform={"os": "linux", "architecture": a}) for a in index_of]
            nested = json.dumps({"schemaVersion": 2, "manifests": entries}).encode()
            entry = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": _blob(tar, nested)}
        for name, data in (("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
                           ("index.json", json.dumps({"schemaVersion": 2, "manifests": [entry]}).encode())):
            if name == skip:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_good_archive_is_accepted_with_its_digests(tmp_path):
    path = make_archive(tmp_path / "img.tar")
    info = inspect_archive(path, hashlib.sha256(path.read_bytes()).hexdigest(), arch="amd64")
    assert (info.os, info.architecture) == ("linux", "amd64")
    assert info.config_digest.startswith("sha256:") and info.image_id == info.config_digest[7:]
    assert info.layer_bytes == len(_layer())


def test_a_multi_platform_archive_gives_this_machines_image(tmp_path):
    path = make_archive(tmp_path / "img.tar", arch="arm64", index_of=("amd64", "arm64"))
    assert inspect_archive(path, arch="arm64").architecture == "arm64"
    with pytest.raises(ImageRejected, match="none for riscv64"):
        inspect_archive(path, arch="riscv64")


def test_an_image_for_another_architecture_is_refused(tmp_path):
    other = "arm64" if host_arch() != "arm64" else "amd64"
    with pytest.raises(ImageRejected, match=f"linux/{other}; this provider runs linux/{host_arch()}"):
        inspect_archive(make_archive(tmp_path / "img.tar", arch=other))


@pytest.mark.parametrize("damage, why", [
    ("garbage", "not a readable tar"),
    ("truncated", "not a readable tar|is missing|does not hash"),
    ("layer", "does not hash to its digest"),
    ("skip-layer", "is missing"),
    ("skip-oci-layout", "oci-layout is missing"),
    ("skip-index.json", "index.json is missing"),
])
def test_a_corrupt_archive_is_one_clear_error(tmp_path, damage, why):
    path = tmp_path / "img.tar"
    if damage == "garbage":
        path.write_bytes(b"not an archive at all" * 100)
    elif damage == "truncated":
        make_archive(path)
        path.write_bytes(path.read_bytes()[:1500])
    elif damage == "layer":
        make_archive(path, tamper="layer")
    else:
        make_archive(path, skip=damage.removeprefix("skip-"))
    with pytest.raises(ImageRejected, match=why) as info:
        inspect_archive(path, arch="amd64")
    assert info.value.fields["field"] == "image"


def test_bytes_that_are_not_the_named_digest_are_refused(tmp_path):
    with pytest.raises(ImageRejected, match="does not hash to the digest"):
        inspect_archive(make_archive(tmp_path / "img.tar"), "0" * 64)


@pytest.mark.parametrize("text", ["busybox", "busybox:1", "UPPER/case:1", "localhost:5000/x@sha256:12", ""])
def test_references_need_a_host_and_a_valid_form(text):
    with pytest.raises(ImageRejected):
        parse_ref(text)


def test_the_allowlist_allows_a_repository_or_exactly_one_reference():
    digest = "sha256:" + "a" * 64
    policy = RegistryPolicy.of(["localhost:5000/tools/busybox", "registry.example.org/app:1.2",
                                f"localhost:5000/pinned@{digest}"])
    assert str(policy.check("localhost:5000/tools/busybox:any")) == "localhost:5000/tools/busybox:any"
    assert policy.check(f"localhost:5000/tools/busybox@{digest}").digest == digest
    assert policy.check("registry.example.org/app:1.2").tag == "1.2"
    assert policy.check(f"localhost:5000/pinned@{digest}")
    for refused in ("registry.example.org/app:1.3", "localhost:5000/tools/other:1", "localhost:5000/pinned:1",
                    "localhost:5001/tools/busybox:1"):
        with pytest.raises(ImageRejected, match="not on this provider's image allowlist"):
            policy.check(refused)
    with pytest.raises(ImageRejected, match="no registry image"):
        RegistryPolicy().check("localhost:5000/tools/busybox:1")


def _devices(tmp_path: Path, names: list[str]) -> Path:
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def test_cdi_specs_name_each_vendors_devices_and_skip_missing_nodes(tmp_path):
    dev = _devices(tmp_path / "dev", ["nvidia0", "nvidia1", "nvidiactl", "dri/renderD128", "kfd", "davinci0",
                                      "davinci_manager"])
    devices = [DeviceCapability(DeviceClass.GPU, "NVIDIA H100", "NVIDIA", count=3),
               DeviceCapability(DeviceClass.GPU, "AMD Instinct MI300X", "AMD", count=1),
               DeviceCapability(DeviceClass.NPU, "Ascend 910B", "Huawei", count=1),
               DeviceCapability(DeviceClass.CPU, "EPYC", "AMD", count=2)]
    specs = {s["kind"]: s for s in generate_spec(devices, dev)}
    assert sorted(specs) == ["amd.com/gpu", "huawei.com/npu", "nvidia.com/gpu"]
    nv = specs["nvidia.com/gpu"]
    assert [d["name"] for d in nv["devices"]] == ["0", "1"]  # nvidia2 has no node: left out
    assert nv["devices"][1]["containerEdits"]["deviceNodes"] == [{"path": "/dev/nvidia1",
                                                                  "hostPath": str(dev / "nvidia1")}]
    assert [n["path"] for n in nv["containerEdits"]["deviceNodes"]] == ["/dev/nvidiactl"]
    assert specs["amd.com/gpu"]["devices"][0]["containerEdits"]["deviceNodes"][0]["path"] == "/dev/dri/renderD128"
    written = write_specs(specs.values(), tmp_path / "cdi", prefix="test")
    assert sorted(p.name for p in written) == ["test-amd-com-gpu.json", "test-huawei-com-npu.json",
                                               "test-nvidia-com-gpu.json"]
    assert read_specs([tmp_path / "cdi"]) == {"amd.com/gpu": ("0",), "huawei.com/npu": ("0",),
                                              "nvidia.com/gpu": ("0", "1")}


def test_the_device_pool_gives_exactly_what_is_free_and_takes_it_back():
    pool = DevicePool({"nvidia.com/gpu": ("0", "1", "2")})
    first = pool.take("nvidia.com/gpu", 2)
    assert first == ("nvidia.com/gpu=0", "nvidia.com/gpu=1")
    with pytest.raises(CdiError, match="2 nvidia.com/gpu device\\(s\\) asked for, 1 free"):
        pool.take("nvidia.com/gpu", 2)
    with pytest.raises(CdiError, match="no amd.com/gpu"):
        pool.take("amd.com/gpu", 1)
    pool.give(first)
    assert len(pool.take("nvidia.com/gpu", 3)) == 3
    for bad in ("nvidia.com/gpu", "gpu=0", "nvidia.com/gpu=0;rm", "../x=1"):
        with pytest.raises(CdiError):
            check_device_name(bad)


LIMITS = ContainerLimits(memory_mib=64, wall_seconds=5)


@pytest.mark.parametrize("code, killed, peak, oom, want", [
    (0, None, 0, None, ("ok", 0)),
    (3, None, 0, None, ("exit", 3)),
    (137, "wall-timeout", 0, None, ("wall-timeout", -9)),
    (137, "output", 0, None, ("output", -9)),
    (137, None, 64 * MIB + 5, None, ("memory-limit", -9)),  # v1: the parent's peak reached the limit
    (137, None, 1 * MIB, 1, ("memory-limit", -9)),  # v2: the kernel counted the OOM kill
    (137, None, 10 * MIB, None, ("signal", -9)),  # a SIGKILL that was not the OOM killer
    (128 + signal.SIGSEGV, None, 0, None, ("signal", -signal.SIGSEGV)),
])
def test_a_runs_end_is_classified_from_the_exit_code_and_the_cgroup(code, killed, peak, oom, want):
    status, exit_code, _ = classify(code, killed, peak, oom, LIMITS, b"")
    assert (status, exit_code) == want


def test_podman_failures_are_exec_errors_and_an_exit_127_without_them_is_the_programs():
    status, code, detail = classify(127, None, 0, None, LIMITS, b"Error: runc: exec: \"/x\": no such file\n")
    assert (status, code) == ("exec-error", 127) and detail.startswith("Error: runc")
    assert classify(127, None, 0, None, LIMITS, b"sh: x: not found\n")[0] == "exit"


def test_limits_are_checked_and_container_usage_is_wall_time_bounded_by_the_contract():
    with pytest.raises(InputError, match="memory_mib"):
        ContainerLimits(memory_mib=1)
    with pytest.raises(InputError, match="cpus"):
        ContainerLimits(cpus=0)
    assert usage_for_container(0.1, 2500, units=1, remaining_seconds=100) == 3
    assert usage_for_container(9.0, 1000, units=2, remaining_seconds=100) == 5  # 9 CPU s over 2 units
    assert usage_for_container(0.0, 10, units=1, remaining_seconds=100) == 1
    assert usage_for_container(50.0, 500_000, units=2, remaining_seconds=30) == 60


def test_container_limits_parse_over_defaults_and_leases_are_lowered_to_the_ceilings():
    from provider_agent.runtime.container import parse_limits, within

    limits = parse_limits("mem=2048, cpus=1.5,pids=100,wall=30,work=64,output=4")
    assert (limits.memory_mib, limits.cpus, limits.pids, limits.wall_seconds, limits.work_mib,
            limits.max_output_bytes) == (2048, 1.5, 100, 30.0, 64, 4 * MIB)
    assert parse_limits("") == ContainerLimits()
    for bad, field in (("mem", "container_limits"), ("disk=1", "container_limits"), ("mem=x", "container_limits.mem"),
                       ("pids=0", "container_limits.pids")):
        with pytest.raises(InputError) as info:
            parse_limits(bad)
        assert info.value.fields["field"] == field
    lowered = within(ContainerLimits(memory_mib=4096, cpus=8, wall_seconds=10), limits)
    assert (lowered.memory_mib, lowered.cpus, lowered.wall_seconds) == (2048, 1.5, 10)


@pytest.mark.parametrize("args, message", [
    (["--container-limits", "mem=64"], "--container-\\* options without --containers"),
    (["--containers", "--container-limits", "mem=x"], "container limit mem='x' is not a number"),
    (["--containers", "--container-image", "busybox"], "not a registry reference with a host"),
])
def test_cona_agent_run_refuses_bad_container_options_before_anything_starts(args, message):
    from typer.testing import CliRunner

    from provider_agent.cli import app

    result = CliRunner().invoke(app, ["run", "--profile", "provider_agent/profiles/h100-server", "--engine",
                                      "http://127.0.0.1:9", "--attachment", "n1", "--domain", "7", "--price", "gpu=1",
                                      *args])
    assert result.exit_code == 2
    assert re.search(message, result.output), result.output
