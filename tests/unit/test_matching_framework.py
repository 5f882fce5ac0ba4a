"""The framework around the plugins: one registry, policies by name, typed shared state, the
Permit and PostFilter points as plugins, and the public calls the engine uses."""

from __future__ import annotations

import pytest

from marketplace.matching import InMemoryBinder, MatchingConfig, Outcome, ReservationState, Scheduler
from marketplace.matching import trace
from marketplace.matching.errors import InvalidOrder, InvalidProvider, MatchingConfigError
from marketplace.matching.framework import ExtensionPoint, Lifetime, SharedState, StateKey
from marketplace.matching.plugins.filters import FILTERS
from marketplace.matching.registry import FIRST_FIT, REGISTRY, Profile, Registry, Sampling
from tests.unit.matching_fixtures import gpu, nodes, order, pods, provider, workload

pytestmark = pytest.mark.unit


def test_every_extension_point_has_its_plugins_in_the_one_registry():
    assert set(REGISTRY.names(ExtensionPoint.FILTER)) == {f.name for f in FILTERS}
    for point in ExtensionPoint:
        assert REGISTRY.names(point), point
    assert REGISTRY.policies() == ("default", "first-fit", "balanced", "random", "dot-product", "best-fit",
                                   "gpu-packing", "gpu-clustering", "fgd")
    # the default config runs the default policy: every point has its plugins
    p = MatchingConfig().profile
    assert p.queue_sort == "TierAgeing" and p.pre_filter == ("EverFeasible",)
    assert p.post_filter == ("ReservationPreemption",) and p.permit == ("StakeCoversLeases",)
    assert p.reserve == ("ProviderCapacity",) and p.normalize_score == "MinMax"
    assert p.score[0] == ("FGDScore", 10.0) and p.tie_break == ("NodeOrder",)


def test_a_registry_refuses_duplicates_non_plugins_and_unknown_names():
    r = Registry()
    r.register(ExtensionPoint.FILTER, FILTERS[0])
    with pytest.raises(ValueError, match="registered twice"):
        r.register(ExtensionPoint.FILTER, FILTERS[0])
    with pytest.raises(TypeError, match="not a plugin"):
        r.register(ExtensionPoint.SCORE, int)
    with pytest.raises(MatchingConfigError) as e:
        r.plugin(ExtensionPoint.FILTER, "HardwareFits")
    assert e.value.fields["field"] == "filter" and "HardwareFit" in str(e.value)
    with pytest.raises(MatchingConfigError, match="unknown queue_sort plugin 'TierAgeing'.*no queue_sort plugin"):
        r.register_policy("p", FIRST_FIT)  # names plugins this registry does not have


def test_a_policy_is_chosen_by_name_and_its_lists_can_be_overridden():
    ff = MatchingConfig(policy="first-fit")
    assert ff.profile.sampling is Sampling.FIRST_FEASIBLE and ff.profile.score == ()
    assert ff.canonical()["policy"] == "first-fit"
    tuned = MatchingConfig(score=(("Price", 1.0),), filter=("HardwareFit", "FreeCapacity"))
    assert tuned.profile.score == (("Price", 1.0),) and tuned.profile.filter == ("HardwareFit", "FreeCapacity")
    assert tuned.profile.post_filter == MatchingConfig().profile.post_filter
    with pytest.raises(MatchingConfigError) as e:
        MatchingConfig(policy="firstfit")
    assert e.value.fields["field"] == "policy" and "first-fit" in str(e.value)
    with pytest.raises(MatchingConfigError, match="runs no score"):
        MatchingConfig(policy="first-fit", score=(("Price", 1.0),))
    with pytest.raises(MatchingConfigError, match="at least one filter"):
        MatchingConfig(filter=())
    with pytest.raises(MatchingConfigError, match="list of plugin names"):
        MatchingConfig(permit="StakeCoversLeases")


def _read_back(canonical: dict) -> dict:
    """A recorded canonical config as the engine reads it back (floats are recorded as repr)."""
    out = dict(canonical, score=[[n, float(w)] for n, w in canonical["score"]])
    for k in ("ageing_s", "max_load", "max_lsa_age_s"):
        if isinstance(out[k], str):
            out[k] = float(out[k])
    return out


def test_canonical_config_round_trips_and_reads_configs_recorded_before_policies():
    for cfg in (MatchingConfig(), MatchingConfig(policy="first-fit", batch_size=7),
                MatchingConfig(score={"Price": 3, "Fragmentation": 1.5}, tie_break=())):
        again = MatchingConfig.from_dict(_read_back(cfg.canonical()))
        assert again.profile == cfg.profile and again.canonical() == cfg.canonical()
    # a batch recorded before policies: no "policy", "first_fit": false
    old = {k: v for k, v in _read_back(MatchingConfig().canonical()).items() if k != "policy"}
    assert MatchingConfig.from_dict({**old, "first_fit": False}).profile == MatchingConfig().profile
    assert MatchingConfig.from_dict({"first_fit": True}).profile == FIRST_FIT
    with pytest.raises(MatchingConfigError, match="contradicts"):
        MatchingConfig.from_dict({"first_fit": True, "policy": "default"})
    with pytest.raises(MatchingConfigError, match="true or false"):
        MatchingConfig.from_dict({"first_fit": "yes"})


def test_shared_state_drops_entries_by_lifetime():
    keys = {lt: StateKey(lt.name, lt) for lt in Lifetime}
    s = SharedState()
    for key in keys.values():
        s.put(key, 1, key.name)
    s.routes_changed()
    assert {lt for lt, k in keys.items() if s.get(k, 1) is not None} == {Lifetime.MARKET, Lifetime.ROUND}
    for key in keys.values():
        s.put(key, 1, key.name)
    s.end_round()
    assert {lt for lt, k in keys.items() if s.get(k, 1) is not None} == {Lifetime.MARKET, Lifetime.MARKET_ROUTES}
    assert s.get(keys[Lifetime.MARKET], 2) is None  # the sub-key is part of the key
    s.clear()
    assert len(s) == 0


def test_first_fit_takes_the_lowest_id_feasible_provider_and_explain_says_so():
    s = Scheduler(trace.providers(nodes()[:60], 60), workload=workload(),
                  config=MatchingConfig(policy="first-fit", batch_size=1))
    for o in trace.orders(pods(), 40):
        mask = s.feasible(o, o.submitted_at)
        first = s.index.ids[int(mask.argmax())]
        assert s.explain(o).best == first
        s.submit(o)
        d = s.schedule_round(o.submitted_at).decisions[0]
        assert d.outcome == Outcome.BOUND and d.provider_id == first and d.score == 0.0


def test_permit_denies_a_provider_whose_stake_does_not_cover_its_leases():
    # 100/h per GPU, 1 h leases, collateral 1: the poor provider can hold nothing
    ps = [provider("openb-node-0000", "poor", price=100, stake=50),
          provider("openb-node-0001", "rich", price=100, stake=1000)]
    s = Scheduler(ps, config=MatchingConfig(collateral_milli=1000, score=(("Price", 1.0),)))
    s.submit(order("a", gpu(2, duration_s=3600)))
    s.submit(order("b", gpu(2, duration_s=3600), at=1.0))
    r = s.schedule_round(2.0).by_order()
    assert {d.outcome for d in r.values()} == {Outcome.BOUND, Outcome.DENIED}
    denied = next(d for d in r.values() if d.outcome == Outcome.DENIED)
    assert denied.provider_id == "poor" and denied.reasons == (("StakeCoversLeases:stake-cover", 1),)
    assert denied.order_id in s.queue and s.state_of(denied.order_id) is None
    assert s.index.used_milli(trace.DeviceClass.GPU) == 2000  # the denied reservation gave its GPUs back


def test_hold_and_placement_on_are_the_engines_recovery_calls():
    s = Scheduler([provider("openb-node-0000"), provider("openb-node-0001")], binder=InMemoryBinder())
    o = order("kept", gpu(2))
    assert s.placement_on(o, "nobody", 0.0) is None
    pl = s.placement_on(o, "openb-node-0001", 0.0)
    assert pl is not None and pl.provider_id == "openb-node-0001" and len(pl.slots) == 2
    s.hold(o, pl)
    assert s.state_of("kept") == ReservationState.BOUND and s.orders["kept"] is o
    assert s.placement_on(order("more", gpu(1)), "openb-node-0001", 0.0) is None  # its GPUs are held
    with pytest.raises(InvalidOrder):
        s.hold(o, pl)
    with pytest.raises(InvalidProvider):
        s.hold(order("x", gpu()), type(pl)("nobody", pl.device_class, pl.slots, pl.cpu_milli, pl.memory_mib))
    assert s.release("kept") and s.index.used_milli(trace.DeviceClass.GPU) == 0


def test_profiles_are_frozen_values():
    p = MatchingConfig().profile
    assert isinstance(p, Profile)
    with pytest.raises(AttributeError):
        p.score = ()  # type: ignore[misc]
