"""Origination files, sequence numbers across restarts, refresh, and the peer's configuration checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketplace.convergence.lsa import decode_header, decode_lsa, purge
from marketplace.peering.errors import PeeringConfigError
from marketplace.peering.node import PeerConfig, parse_args
from marketplace.peering.originate import Originations, dump_file, load_file
from marketplace.peering.workload import trace_content, trace_originations

pytestmark = pytest.mark.unit

CSV = Path(__file__).resolve().parents[1] / "fixtures" / "traces" / "openb_node_list_gpu_node.csv"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock) -> Originations:
    return Originations(max_age=60, zero_age_lifetime=5, refresh_interval=40, retry_interval=1, clock=clock)


def test_trace_rows_become_lsa_content_without_invented_fields():
    content = trace_content({"sn": "openb-node-0001", "cpu_milli": "64000", "memory_mib": "262144", "gpu": "2",
                             "model": "P100"})
    [gpu] = content.descriptor.devices
    assert (gpu.model, gpu.count, gpu.memory_mib, gpu.vendor) == ("P100", 2, None, None)
    assert content.descriptor.memory_mib == 262144
    assert [(a.device_class.name, a.free_milli) for a in content.availability] == [("CPU", 64000), ("GPU", 2000)]


def test_origination_file_round_trips_and_signs_what_it_says(tmp_path):
    origs = trace_originations(CSV, 3, offset=40, seed=3)
    path = tmp_path / "o.json"
    dump_file(path, origs)
    loaded = load_file(path)
    assert loaded == origs
    raws = make(Clock()).add(loaded)
    for o, raw in zip(origs, raws):
        lsa = decode_lsa(raw)
        assert lsa.header.originator == o.originator and lsa.header.sequence == 1 and lsa.header.lifetime == 60
        assert lsa.content == o.content


@pytest.mark.parametrize(("text", "match"), [
    ("not json", "cannot read origination file"),
    ('{"lsas": [{"key": "0x01"}]}', "must be 32 bytes"),
    ('{"nothing": []}', "cannot read origination file"),
])
def test_bad_origination_files_are_refused_by_name(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(PeeringConfigError, match=match):
        load_file(path)


def test_refresh_issues_the_next_sequence_when_due():
    clock = Clock()
    origs = make(clock)
    [first] = origs.add(trace_originations(CSV, 1, seed=5))
    clock.now = 39.0
    assert origs.due() == []
    clock.now = 40.0
    [again] = origs.due()
    assert decode_header(again).sequence == decode_header(first).sequence + 1


def test_hearing_our_own_newer_copy_or_its_purge_reissues_above_it():
    clock = Clock()
    origs = make(clock)
    [first] = origs.add(trace_originations(CSV, 1, seed=6))
    h = decode_header(first)
    # the previous life left sequence 7 in the network
    old = h.__class__(h.lsa_type, h.originator, 7, 30, h.checksum, h.length)
    assert decode_header(origs.heard(old)).sequence == 8
    # a purge of the instance we hold (same sequence) is newer than it: reissue too
    now = decode_header(purge(first))
    assert decode_header(origs.heard(now.__class__(now.lsa_type, now.originator, 8, 0, 1, now.length))).sequence == 9
    assert origs.heard(h.__class__(h.lsa_type, b"\x07" * 20, 9, 30, 1, 100)) is None  # not ours


def test_refused_instance_is_retried_after_the_interval():
    clock = Clock()
    origs = make(clock)
    [raw] = origs.add(trace_originations(CSV, 1, seed=8))
    origs.refused(decode_header(raw).originator)
    assert origs.due() == []
    clock.now = 1.0
    assert len(origs.due()) == 1


def test_peer_config_refuses_inconsistent_timers():
    with pytest.raises(PeeringConfigError, match="hold time"):
        PeerConfig(node_id=1, listen_port=1, hello_interval=3, hold_time=2)
    with pytest.raises(PeeringConfigError, match="refresh interval"):
        PeerConfig(node_id=1, listen_port=1, max_age=10, refresh_interval=10)
    with pytest.raises(PeeringConfigError, match="node id"):
        PeerConfig(node_id=0, listen_port=1)


def test_command_line_builds_the_config():
    cfg = parse_args(["--id", "3", "--listen", "7003", "--neighbor", "127.0.0.1:7002", "--neighbor", ":7001",
                      "--max-age", "4", "--refresh-interval", "1.5", "--hello-interval", "0.2", "--hold-time", "0.8"])
    assert cfg.node_id == 3 and cfg.neighbors == (("127.0.0.1", 7002), ("127.0.0.1", 7001))
    assert (cfg.max_age, cfg.refresh_interval, cfg.hold_time) == (4, 1.5, 0.8)
    with pytest.raises(SystemExit):
        parse_args(["--id", "1", "--listen", "1", "--neighbor", "nohost"])


def test_cli_sub_app_lists_its_commands():
    from typer.testing import CliRunner

    from marketplace.peering.cli import peer_app

    result = CliRunner().invoke(peer_app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("run", "status", "originate"):
        assert cmd in result.output
    bad = CliRunner().invoke(peer_app, ["run", "--id", "1", "--listen", "1", "--hello-interval", "5",
                                        "--hold-time", "1"])
    assert bad.exit_code == 2  # refused by the config check before any socket is opened
