"""The agent's work planning (``provider_agent.work``): what it advertises, what it refuses before
accepting, the limits of each run, and the record and bill of what a run produced."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from eth_utils import keccak

from marketplace.chain.market import Order, OrderState
from marketplace.engine.spec import Spec
from marketplace.resources.runtimes import RuntimeOffer
from marketplace.results import parse_result
from provider_agent.runtime.cdi import DevicePool
from provider_agent.runtime.container import ContainerConfig, ContainerLimits
from provider_agent.runtime.images import RegistryPolicy, host_arch
from provider_agent.runtime.native import NativeLimits, NativeProgram, NativeRuntime
from provider_agent.runtime.scratch import OutputBlob
from provider_agent.runtime.wasm import WasmRuntime
from provider_agent.runtime.workbench import ContainerWork, NativeWork, Outcome, Runtime, Usage, WasmWork, Workbench
from provider_agent.work import (ArtifactCache, Ceilings, Planner, SpecError, check_spec, offer_of, usage_for)
from provider_agent.workloads.examples import EXAMPLES

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + hashlib.sha256(b"module").hexdigest()


def order(spec: Spec, units: int = 1, duration: int = 600, served: int = 0) -> Order:
    fields = dict.fromkeys(Order.__dataclass_fields__, 0)
    fields.update(id=7, buyer="0x" + "11" * 20, provider="0x" + "22" * 20, state=OrderState.RUNNING, units=units,
                  duration=duration, served=served, requirement=spec.digest(), digest=b"", result=b"", backups=())
    return Order(**fields)


def spec(workload: dict, device_class: str = "cpu", **req) -> Spec:
    return Spec.from_dict({"requirement": {"device_class": device_class, "count": 2, **req}, "workload": workload,
                           "attachment": "n1"})


def planner(tmp_path: Path, offer: RuntimeOffer, devices: DevicePool | None = None,
            programs: dict | None = None) -> Planner:
    bench = Workbench(WasmRuntime(tmp_path / "wasm"), NativeRuntime(tmp_path / "native") if programs else None,
                      None, devices)
    return Planner(bench, ArtifactCache(tmp_path / "artifacts"), None, offer, programs or {},  # type: ignore[arg-type]
                   Ceilings(NativeLimits(cpu_seconds=30, wall_seconds=20), ContainerLimits(memory_mib=256, cpus=1,
                                                                                           work_mib=64),
                            max_wall_seconds=100.0))


def test_what_an_agent_advertises_follows_its_flags():
    assert offer_of("all", (), None, None) == RuntimeOffer(True, True)
    assert offer_of("deterministic", ("wc-l",), None, None) == RuntimeOffer(True, False, programs=("wc-l",))
    assert offer_of("shipped", (), None, None) == RuntimeOffer(False, False)
    cfg = ContainerConfig(Path("/nonexistent"), registries=RegistryPolicy.of(["localhost:5000/tools/busybox"]),
                          allow_network=True)
    offer = offer_of("all", (), cfg, DevicePool({"nvidia.com/gpu": ("0", "1")}))
    assert offer.container is not None and offer.container.arch == host_arch()
    assert offer.container.network and offer.container.devices and offer.images == ("localhost:5000/tools/busybox",)
    assert not offer_of("all", (), cfg, DevicePool({})).container.devices


def test_a_buyers_module_by_digest_passes_the_spec_check_and_a_need_not_offered_is_refused(tmp_path):
    s = spec({"module": DIGEST, "input": "", "fuel": 10, "deterministic": False})
    assert check_spec(s.to_dict(), order(s)).workload.buyer_module
    with pytest.raises(SpecError, match="not the order's requirement"):
        check_spec(s.to_dict(), replace(order(s), requirement=keccak(b"other")))
    p = planner(tmp_path, RuntimeOffer(buyer_wasm=True, nondeterministic=False))
    with pytest.raises(SpecError, match="needs clock or random imports"):
        p.admit(s, order(s))  # refused before anything is fetched: the cache stays empty
    assert not list(p.cache.root.iterdir())
    box = spec({"runtime": "container", "image": DIGEST, "cmd": []})
    with pytest.raises(SpecError, match="needs a container runtime"):
        p.admit(box, order(box))


def test_each_runtime_gets_its_limits(tmp_path):
    p = planner(tmp_path, RuntimeOffer(), programs={"cat": NativeProgram("cat", ("/bin/cat",))})
    wasm = spec({"module": "sha256", "input": "6869", "fuel": 1000})
    w = p.work(wasm, order(wasm), remaining=600)
    assert isinstance(w, WasmWork) and w.limits.fuel == 1000 and w.limits.wall_seconds == 100.0 and w.deterministic
    native = spec({"runtime": "native", "program": "cat", "input": "", "cpu_s": 5})
    n = p.work(native, order(native), remaining=10)
    assert isinstance(n, NativeWork) and n.limits.cpu_seconds == 5 and n.limits.wall_seconds == 10


def test_a_container_on_accelerators_needs_cdi_devices_of_its_class(tmp_path):
    p = planner(tmp_path, RuntimeOffer(), DevicePool({"huawei.com/npu": ("0",)}))
    s = spec({"runtime": "container", "image": DIGEST, "cmd": []}, device_class="gpu")
    with pytest.raises(SpecError, match="no CDI device of class GPU"):
        p.device_kind(s.requirement.device_class)  # the rule, without podman
    assert p.device_kind(spec({"runtime": "container", "image": DIGEST, "cmd": []}, "npu").requirement
                          .device_class) == "huawei.com/npu"


def test_what_a_run_produced_is_recorded_and_billed_per_runtime(tmp_path):
    p = planner(tmp_path, RuntimeOffer())
    s = spec({"module": "sha256", "input": "", "fuel": 10})
    o = order(s, units=2, duration=600, served=100)
    files = (OutputBlob("out/a.txt", b"alpha"),)
    wasm = Outcome(Runtime.WASM, "ok", 0, b"stdout", Usage(5.0, fuel=3 * 2_000_000_000 + 1), files=files)
    blob, ran = p.ran(wasm, o)
    rec = parse_result(blob)
    assert rec is not None and rec.files[0].sha256 == hashlib.sha256(b"alpha").digest() and rec.output == b"stdout"
    assert ran["usage"] == usage_for(3 * 2_000_000_000 + 1, 2, 500) == 4 and ran["fuel"] == 3 * 2_000_000_000 + 1
    assert ran["files"] == ["sha256:" + hashlib.sha256(b"alpha").hexdigest()]
    assert p.cache.path(ran["files"][0]).read_bytes() == b"alpha"  # durable before ``ran`` names it
    box = Outcome(Runtime.CONTAINER, "ok", 0, b"", Usage(12_300.0, cpu_seconds=1.0, peak_memory_bytes=1 << 20))
    assert p.ran(box, o)[1]["usage"] == 13  # wall seconds: the devices were held
    native = Outcome(Runtime.NATIVE, "cpu-limit", -9, b"", Usage(900.0, cpu_seconds=2.2))
    _, ran = p.ran(native, o)
    assert ran["usage"] == 3 and ran["status"] == "cpu-limit" and ran["cpu_ms"] == 2200.0
    assert p.artifacts_of(s, ran) == set()
    p.cache.drop({"sha256:" + hashlib.sha256(b"alpha").hexdigest()})
    assert not list(p.cache.root.iterdir())


def test_the_example_module_compiles_as_the_agent_admits_it(tmp_path):
    p = planner(tmp_path, RuntimeOffer())
    data = (EXAMPLES / "wordcount-c.wasm").read_bytes()
    digest = p.cache.put(data)
    s = spec({"module": digest, "input": "", "fuel": 10**6, "args": ["a.txt"], "inputs": {"a.txt": digest}})
    p.admit(s, order(s))  # everything cached already: nothing is fetched
    w = p.work(s, order(s), 600)
    assert isinstance(w, WasmWork) and w.module == data and w.args == ("a.txt",) and \
        w.inputs["a.txt"] == p.cache.path(digest)
    assert not isinstance(w, ContainerWork)
