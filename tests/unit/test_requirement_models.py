"""The device models an order accepts (``Requirement.models``, the trace's ``gpu_spec``): parsing,
the digest, fit, every matching policy, the order document and ``--gpu-model`` on the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from marketplace.cli.quote import requirement_dict
from marketplace.engine.errors import InvalidSpec
from marketplace.engine.spec import Spec, spec_digest
from marketplace.errors import InputError, Unschedulable
from marketplace.matching import MatchingConfig, Order, Outcome, Scheduler
from marketplace.matching.registry import REGISTRY
from marketplace.resources.errors import InvalidRequirement
from marketplace.resources.fit import fit
from marketplace.resources.model import DeviceCapability, DeviceClass, NodeDescriptor
from marketplace.resources.requirement import Requirement, model_matches
from tests.conftest import ROOT
from tests.unit.matching_fixtures import provider

pytestmark = pytest.mark.unit

GPU = DeviceClass.GPU


def _node(model: str, count: int = 2) -> NodeDescriptor:
    return NodeDescriptor("n", (DeviceCapability(DeviceClass.CPU, "cpu", count=1, compute_units=32),
                                DeviceCapability(GPU, model, count=count)), memory_mib=262144)


def test_models_parse_normalize_and_keep_old_digests():
    r = Requirement.from_dict({"device_class": "gpu", "models": [" V100M32", "V100M16 "]})
    assert r.models == frozenset({"V100M16", "V100M32"})
    assert r.to_dict()["models"] == ["V100M16", "V100M32"]
    assert Requirement.from_dict(r.to_dict()) == r
    # a requirement without models has the digest it had before models existed: no key at all
    plain = Requirement.from_dict({"device_class": "gpu"})
    assert "models" not in plain.to_dict()
    assert Requirement.from_dict({"device_class": "gpu", "models": []}).digest() == plain.digest()
    assert Requirement.from_dict({"device_class": "gpu", "models": None}).digest() == plain.digest()
    assert r.digest() != plain.digest()
    assert Requirement.from_dict({"device_class": "gpu", "models": ["V100M16", "V100M32"]}).digest() == r.digest()


@pytest.mark.parametrize("bad", ["A100", [""], ["   "], ["NVIDIA"], [3], ["a|b"], ["x" * 65], 5, ["A1\t00"],
                                 [f"m{i}" for i in range(33)]])
def test_a_bad_model_name_is_an_error_naming_models(bad):
    with pytest.raises(InvalidRequirement) as info:
        Requirement.from_dict({"device_class": "gpu", "models": bad})
    assert info.value.fields["field"] == "models"


def test_model_names_match_on_word_boundaries_of_the_normalized_name():
    a100 = frozenset({"A100"})
    assert model_matches(a100, "NVIDIA A100-SXM4-80GB") and model_matches(a100, "A100")
    assert not model_matches(a100, "NVIDIA A10") and not model_matches(a100, "A100X")
    assert model_matches(frozenset({"Tesla T4"}), "T4") and model_matches(frozenset({"t4"}), "Tesla T4")
    assert not model_matches(frozenset({"V100"}), "V100M16")  # the trace's own names are exact


def test_fit_refuses_another_model_with_reason_model():
    req = Requirement(GPU, models=frozenset({"V100M16", "V100M32"}))
    ok = fit(req, _node("V100M32"))
    assert ok.ok
    no = fit(req, _node("T4"))
    assert not no.ok and [r.code for r in no.reasons] == ["model"]
    assert "V100M16 or V100M32" in no.reasons[0].message and "T4" in no.reasons[0].message


@pytest.mark.parametrize("policy", REGISTRY.policies())
def test_every_policy_honours_the_models(policy):
    """Providers of three models; orders that accept one model (or two) land only there, whatever
    the policy; an order for a model nobody has is refused at once with the reason."""
    ps = [provider(sn) for sn in ("openb-node-0000", "openb-node-0001", "openb-node-0300", "openb-node-0301",
                                  "openb-node-1100", "openb-node-1101")]
    model_of = {p.provider_id: next(d.model for d in p.descriptor.devices if d.device_class == GPU) for p in ps}
    assert len(set(model_of.values())) >= 2
    s = Scheduler(ps, config=MatchingConfig(policy=policy))
    target = sorted(set(model_of.values()))[-1]
    for k in range(6):
        share = 1000 if k % 2 else 300
        o = Order(f"o{k}", Requirement(GPU, share_milli=share, cpu_milli=1000, models=frozenset({target})))
        s.submit(o)
        (d,) = s.schedule_round(float(k)).decisions
        if d.outcome == Outcome.BOUND:
            assert model_of[d.provider_id] == target, (policy, d.provider_id)
    with pytest.raises(Unschedulable) as info:
        s.submit(Order("nope", Requirement(GPU, models=frozenset({"H100"}))))
    assert any(key == "HardwareFit:model" for key, _ in info.value.summary)


def test_the_order_document_carries_models_and_a_bad_one_names_its_field():
    doc = {"requirement": {"device_class": "gpu", "models": ["A100", "H100"]},
           "workload": {"module": "sha256", "input": "", "fuel": 1000}, "attachment": "1"}
    spec = Spec.from_dict(doc)
    assert spec.requirement.models == frozenset({"A100", "H100"})
    assert spec.to_dict()["requirement"]["models"] == ["A100", "H100"]
    assert spec_digest(spec.to_dict()) == spec.digest()
    plain = {**doc, "requirement": {"device_class": "gpu"}}
    assert spec_digest(plain) != spec.digest()
    with pytest.raises(InvalidSpec) as info:
        Spec.from_dict({**doc, "requirement": {"device_class": "gpu", "models": ["NVIDIA"]}})
    assert info.value.fields["field"] == "spec.requirement.models"


def test_gpu_model_flags_build_the_requirement():
    req = requirement_dict("gpu", 1, 1000, None, None, None, None, [], None, 5, None, 60, 0, ["H100", "A100"])
    assert req["models"] == ["A100", "H100"]
    assert "models" not in requirement_dict("gpu", 1, 1000, None, None, None, None, [], None, 5, None, 60, 0)
    with pytest.raises(InputError) as info:
        requirement_dict("gpu", 1, 1000, None, None, None, None, [], None, 5, None, 60, 0, ["A100", " "])
    assert info.value.fields["field"] == "models"


@pytest.mark.parametrize("flag", ["", "NVIDIA", "A100|H100"])
def test_order_place_refuses_a_bad_gpu_model_before_touching_the_market(flag):
    # the API address is unroutable: the command must fail on the flag, not on the network
    proc = subprocess.run([sys.executable, "-m", "marketplace.cli.main", "order", "place", "--api", "http://127.0.0.1:9",
                           "--device-class", "gpu", "--gpu-model", "A100", "--gpu-model", flag, "--max-price", "5",
                           "--attachment", "1", "--module", "sha256", "--dev-account", "3", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    err = proc.stderr
    assert "model" in err and "--gpu-model" in err and "Traceback" not in err, err
    assert not proc.stdout.strip() or "error" in json.loads(proc.stdout)
