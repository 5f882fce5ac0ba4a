"""Loading the Alibaba GPU trace v2023 (openb): every list, every column, and bad files."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from marketplace.errors import InputError, Unschedulable
from marketplace.matching import Order, Scheduler
from marketplace.matching import trace
from marketplace.matching.trace import DEFAULT_TIER, QOS_TIER, InvalidTraceRow
from marketplace.resources.model import DeviceClass
from tests.unit.matching_fixtures import TRACES, nodes

pytestmark = pytest.mark.unit

POD_LISTS = sorted(TRACES.glob("openb_pod_list_*.csv"))


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_fixtures_hold_every_pod_list_of_the_families():
    names = {p.stem.removeprefix("openb_pod_list_") for p in POD_LISTS}
    assert {"default", "cpu050", "gpushare20", "gpushare80", "gpuspec05", "gpuspec25", "multigpu20",
            "multigpu40"} <= names


@pytest.mark.parametrize("path", POD_LISTS, ids=lambda p: p.stem)
def test_every_pod_list_loads_with_every_column_honoured(path):
    pods = trace.load_pods(path)
    rows = _rows(path)
    assert len(pods) == len(rows)
    by_name = {r["name"]: r for r in rows}
    for pod in pods:
        row, r = by_name[pod.name], pod.requirement
        gpus, milli = int(row["num_gpu"]), int(row["gpu_milli"])
        assert r.min_system_memory_mib == int(row["memory_mib"])
        if gpus:
            assert (r.device_class, r.count, r.share_milli, r.cpu_milli) == (DeviceClass.GPU, gpus, milli,
                                                                              int(row["cpu_milli"]))
            spec = row.get("gpu_spec", "")
            assert r.models == frozenset(m for m in spec.split("|") if m)
        else:
            assert r.device_class == DeviceClass.CPU and 0 <= r.count * 1000 - int(row["cpu_milli"]) < 1000
        assert pod.tier == QOS_TIER.get(row.get("qos", ""), DEFAULT_TIER)
    if "creation_time" in rows[0]:
        assert [p.created for p in pods] == sorted(int(r["creation_time"]) for r in rows)
    else:  # the five-column lists keep their file order
        assert [p.name for p in pods] == [r["name"] for r in rows]


def test_gpu_spec_lists_carry_models_and_fractions():
    pods = trace.load_pods(TRACES / "openb_pod_list_gpuspec25.csv")
    spec = [p for p in pods if p.requirement.models]
    assert len(spec) > 1500
    assert any(p.requirement.models == frozenset({"V100M16", "V100M32"}) for p in spec)
    assert any(p.requirement.share_milli < 1000 for p in spec)


@pytest.mark.parametrize("path", sorted(TRACES.glob("openb_node_list_*.csv")), ids=lambda p: p.stem)
def test_both_node_lists_load(path):
    ns = trace.load_nodes(path)
    rows = _rows(path)
    assert [n.sn for n in ns] == [r["sn"] for r in rows]
    assert sum(n.gpu for n in ns) == 6212
    cpu_only = [n for n in ns if n.gpu == 0]
    assert len(cpu_only) == (310 if "all_node" in path.name else 0)
    for n in cpu_only:
        assert all(d.device_class == DeviceClass.CPU for d in n.descriptor().devices)


def _write(tmp_path: Path, text: str, name: str = "pods.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time," \
         "scheduled_time\n"


def test_empty_qos_is_the_default_class_and_unknown_columns_warn_once(tmp_path, caplog):
    p = _write(tmp_path, "name,cpu_milli,memory_mib,num_gpu,gpu_milli,qos,colour,weight\n"
                         "a,4000,1024,1,500,,red,1\nb,4000,1024,0,0,LS,blue,2\nc,1000,1,2,1000,BE,x,3\n")
    with caplog.at_level(logging.WARNING, logger="marketplace.matching.trace"):
        pods = trace.load_pods(p)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "colour" in warnings[0].getMessage() and "weight" in warnings[0].getMessage()
    assert [(x.name, x.tier) for x in pods] == [("a", DEFAULT_TIER), ("b", 2), ("c", 0)]
    assert pods[0].requirement.share_milli == 500 and pods[2].requirement.count == 2


@pytest.mark.parametrize(("body", "line", "column"), [
    ("a,4000,1024,1,500,,LS,Running,0,1,0\nb,4000,x1024,1,500,,LS,Running,1,2,1\n", 3, "memory_mib"),
    ("a,4000,1024,1,1500,,LS,Running,0,1,0\n", 2, "gpu_milli"),
    ("a,4000,1024,-1,500,,LS,Running,0,1,0\n", 2, "num_gpu"),
    ("a,4000,1024,1,0,,LS,Running,0,1,0\n", 2, "gpu_milli"),
    ("a,4000,1024,0,300,,LS,Running,0,1,0\n", 2, "gpu_milli"),
    ("a,4000,1024,1,500,,Gold,Running,0,1,0\n", 2, "qos"),
    ("a,4000,1024,1,500,|,LS,Running,0,1,0\n", 2, "gpu_spec"),
    ("a,4000,1024,1,500,A|NVIDIA,LS,Running,0,1,0\n", 2, "gpu_spec"),
    ("a,4000,1024,1,500,,LS,Running,soon,1,0\n", 2, "creation_time"),
    ("a,4000,1024,1,500,,LS,Running,0,1\n", 2, "scheduled_time"),
    ("a,4000,1024,1,500,,LS,Running,0,1,0,9\n", 2, "#12"),
    (",4000,1024,1,500,,LS,Running,0,1,0\n", 2, "name"),
])
def test_a_malformed_row_is_one_error_naming_line_and_column(tmp_path, body, line, column):
    p = _write(tmp_path, HEADER + body)
    with pytest.raises(InvalidTraceRow) as info:
        trace.load_pods(p)
    err = info.value
    assert err.fields["field"] == column
    assert f"pods.csv:{line}" in err.message and column.lstrip("#") in err.message


def test_bad_files(tmp_path):
    with pytest.raises(InvalidTraceRow, match="missing column 'num_gpu'"):
        trace.load_pods(_write(tmp_path, "name,cpu_milli,memory_mib,gpu_milli\na,1,1,0\n"))
    with pytest.raises(InvalidTraceRow, match="empty file"):
        trace.load_pods(_write(tmp_path, ""))
    with pytest.raises(InvalidTraceRow, match="appears twice"):
        trace.load_pods(_write(tmp_path, "name,cpu_milli,memory_mib,num_gpu,gpu_milli,qos,qos\na,1,1,0,0,LS,LS\n"))
    with pytest.raises(InputError, match="cannot read"):
        trace.load_pods(tmp_path / "missing.csv")
    with pytest.raises(InvalidTraceRow) as info:
        trace.load_nodes(_write(tmp_path, "sn,cpu_milli,memory_mib,gpu,model\nn1,96000,1024,eight,V100M16\n",
                                "nodes.csv"))
    assert info.value.fields["field"] == "gpu" and "nodes.csv:2" in info.value.message
    with pytest.raises(InvalidTraceRow, match="missing column 'gpu'"):
        trace.load_nodes(_write(tmp_path, "sn,cpu_milli,memory_mib,model\nn1,1,1,T4\n", "nodes.csv"))


def test_an_impossible_pod_loads_and_is_refused_at_submit_with_a_reason(tmp_path):
    """More GPUs than any node has: the row is fine, the order is refused at once (HardwareFit:count)."""
    p = _write(tmp_path, "name,cpu_milli,memory_mib,num_gpu,gpu_milli\nhuge,8000,1024,16,1000\n")
    (pod,) = trace.load_pods(p)
    s = Scheduler(trace.providers(nodes()[:50], 50))
    with pytest.raises(Unschedulable) as info:
        s.submit(Order("huge", pod.requirement))
    assert any(key == "HardwareFit:count" for key, _ in info.value.summary)
