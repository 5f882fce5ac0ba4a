"""Demo provider profiles (real dumps) through the whole pipeline, the catalog, and `cona-agent discover`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marketplace.resources import catalog
from marketplace.resources.model import DeviceClass, Precision
from provider_agent.cli import app
from provider_agent.probe import discover_dump

pytestmark = pytest.mark.unit

PROFILES = Path(__file__).resolve().parents[2] / "provider_agent" / "profiles"

# profile -> {(class, model): count}, and what must stay unknown because the dump lacks it
EXPECTED = {
    "h100-server": {(DeviceClass.GPU, "NVIDIA H100 80GB HBM3"): 1},
    "l40s-server": {(DeviceClass.GPU, "NVIDIA L40S"): 1},
    "a100-server": {(DeviceClass.GPU, "NVIDIA A100-SXM4-80GB"): 4},  # 4 MIG instances of one GPU
    "t4-node": {(DeviceClass.GPU, "Tesla T4"): 1},
    "dual-a5000-workstation": {(DeviceClass.GPU, "NVIDIA RTX A5000"): 2},
    "mi100-box": {(DeviceClass.GPU, "AMD Instinct MI100"): 4},
    "ascend-node": {(DeviceClass.CPU, "Intel(R) Xeon(R) Platinum 8463B"): 2, (DeviceClass.NPU, "Ascend 910B2C"): 4},
    "epyc-cpu-server": {(DeviceClass.CPU, "AMD EPYC 7451 24-Core Processor"): 2},
}


def test_every_profile_dir_is_listed_and_has_provenance():
    dirs = {p.name for p in PROFILES.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert dirs == set(EXPECTED)
    for name in dirs:
        assert (PROFILES / name / "SOURCES.md").read_text().count("/work/shared/data/") >= 1


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_profile_devices_and_stable_digest(name):
    first, second = discover_dump(PROFILES / name), discover_dump(PROFILES / name)
    node = first.descriptor
    assert {(d.device_class, d.model): d.count for d in node.devices} == EXPECTED[name]
    assert node.hostname == name
    assert node.digest() == second.descriptor.digest()
    # none of these dumps records memory or disk: they must stay unknown, not be invented
    assert node.memory_mib is None and node.disk_gib is None


def test_profiles_have_distinct_digests():
    digests = {discover_dump(PROFILES / n).descriptor.digest() for n in EXPECTED}
    assert len(digests) == len(EXPECTED)


def test_hostname_file_and_meminfo_change_the_descriptor(tmp_path):
    shutil.copytree(PROFILES / "epyc-cpu-server", tmp_path / "d")
    base = discover_dump(tmp_path / "d").descriptor
    (tmp_path / "d" / "hostname").write_text("epyc-1\n")
    (tmp_path / "d" / "meminfo").write_text("MemTotal:       263845888 kB\n")
    node = discover_dump(tmp_path / "d").descriptor
    assert node.hostname == "epyc-1" and node.memory_mib == 263845888 // 1024
    assert node.digest() != base.digest()


def test_cli_discover_from_prints_json_with_digest_and_warnings():
    result = CliRunner().invoke(app, ["discover", "--from", str(PROFILES / "a100-server"), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["digest"] == "0x" + discover_dump(PROFILES / "a100-server").descriptor.digest().hex()
    (dev,) = out["descriptor"]["devices"]
    assert (dev["model"], dev["count"], dev["memory_mib"]) == ("NVIDIA A100-SXM4-80GB", 4, 19968)
    assert any("attached_gpus says 4" in w["message"] for w in out["warnings"])


def test_cli_discover_table_and_bad_dir(tmp_path):
    runner = CliRunner()
    table = runner.invoke(app, ["discover", "--from", str(PROFILES / "mi100-box")])
    assert table.exit_code == 0 and "digest 0x" in table.output and "MI100" in table.output
    bad = runner.invoke(app, ["discover", "--from", str(tmp_path / "missing")])
    assert bad.exit_code == 2 and "does not exist" in bad.output
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    empty = runner.invoke(app, ["discover", "--from", str(tmp_path / "empty")])
    assert empty.exit_code == 2 and "none of the dump files" in empty.output


def test_cli_discover_live_machine_as_json():
    result = CliRunner().invoke(app, ["discover", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    cpus = [d for d in out["descriptor"]["devices"] if d["class"] == "CPU"]
    assert cpus and out["descriptor"]["memory_mib"] > 0
    if shutil.which("nvidia-smi") is None:
        assert "nvidia-smi not installed: skipped" in out["notes"]


def test_catalog_lookup_normalizes_and_refuses_to_guess():
    assert catalog.lookup("NVIDIA A100-SXM4-80GB").peak(Precision.BF16) == 312e12
    assert catalog.lookup("T4") is catalog.lookup("Tesla T4")
    assert catalog.lookup("A10").memory_bandwidth_gbps == 600.0
    for name in ("P100", "V100M16", "V100M32", "G2", "G3", "Ascend 910B2C"):
        assert catalog.lookup(name) is None
    assert "may be any of" in catalog.explain("P100")
    assert "anonymises" in catalog.explain("G2")
    assert all(s.source for s in catalog.specs())


def test_every_alibaba_trace_model_is_resolved_or_explained():
    trace = Path(__file__).resolve().parents[1] / "fixtures" / "traces" / "openb_node_list_gpu_node.csv"
    models = {line.split(",")[4].strip() for line in trace.read_text().splitlines()[1:] if line}
    for m in models:
        assert catalog.lookup(m) is not None or "left unknown" in catalog.explain(m)
    assert catalog.lookup("T4") is not None and catalog.lookup("A10") is not None
