"""The unallocation floor (``marketplace.matching.floor``): a configuration-LP upper bound on the
GPU milli any packing can place, checked against exhaustive search on small instances, on
exact cases, and against every policy on real arrivals (``bench.match.reproduce``)."""

from __future__ import annotations

import numpy as np
import pytest

from bench import inflation, match
from marketplace.errors import InputError, MatchingError
from marketplace.matching import MatchingConfig
from marketplace.matching import floor as fl
from marketplace.resources.model import DeviceClass
from marketplace.resources.requirement import Requirement
from tests.unit.matching_fixtures import nodes, pods

pytestmark = pytest.mark.unit


def _best_packing(shares: list[int], gpus: int) -> int:
    """The most milli any assignment of the items to ``gpus`` GPUs of 1000 (or to none) places:
    every assignment, by depth-first search (items largest first, a GPU's empty twins skipped)."""
    shares = sorted(shares, reverse=True)
    best = 0

    def go(i: int, free: list[int], placed: int) -> None:
        nonlocal best
        best = max(best, placed)
        if i == len(shares) or placed + sum(shares[i:]) <= best:
            return
        tried = set()
        for g in range(gpus):
            if free[g] >= shares[i] and free[g] not in tried:
                tried.add(free[g])
                free[g] -= shares[i]
                go(i + 1, free, placed + shares[i])
                free[g] += shares[i]
        go(i + 1, free, placed)

    go(0, [fl.GPU_MILLI] * gpus, 0)
    return best


@pytest.mark.parametrize("seed", range(40))
def test_the_bound_is_at_least_the_best_packing_and_at_most_the_trivial_bounds(seed):
    rng = np.random.default_rng(seed)
    menu = [150, 250, 333, 340, 410, 500, 520, 600, 667, 810, 1000]
    shares = [int(s) for s in rng.choice(menu, size=int(rng.integers(3, 9)))]
    gpus = int(rng.integers(1, 4))
    got = fl.floor(fl.items(Requirement(DeviceClass.GPU, share_milli=s) for s in shares), gpus)
    best = _best_packing(shares, gpus)
    assert best <= got.placed_milli <= min(gpus * 1000, sum(shares)), (shares, gpus)
    assert got.arrived_milli == sum(shares) and got.unalloc == 1 - got.placed_milli / (gpus * 1000)


def test_the_lp_is_exact_where_configurations_are_whole_and_above_the_packing_where_not():
    assert fl.floor({500: 3}, 2).placed_milli == _best_packing([500] * 3, 2) == 1500
    assert fl.floor({400: 1, 600: 3}, 3).placed_milli == _best_packing([400, 600, 600, 600], 3) == 2200
    # 400, 400, 450, 700 on 2 GPUs: the best packing places 850 + 700; the LP mixes half
    # configurations ({400, 450}, {400, 400}, {700}...) up to 1600: a relaxation, still a bound
    assert _best_packing([400, 400, 450, 700], 2) == 1550
    assert fl.floor({400: 2, 450: 1, 700: 1}, 2).placed_milli == 1600


def test_a_perfectly_packable_set_has_floor_zero():
    got = fl.floor({500: 2, 250: 4}, 2)
    assert got.placed_milli == 2000 and got.unalloc == 0.0
    assert fl.floor({1000: 8, 200: 10}, 10).unalloc == 0.0


def test_items_that_cannot_share_a_gpu_leave_their_exact_waste():
    got = fl.floor({600: 5}, 5)
    assert got.placed_milli == 3000 and got.unalloc == pytest.approx(0.4)
    assert fl.floor({600: 3}, 5).unalloc == pytest.approx(1 - 1800 / 5000)  # too few pods: the rest is idle
    assert fl.floor({600: 9}, 5).placed_milli == 3000  # too many: one per GPU, the rest fails


@pytest.mark.parametrize("items,gpus,placed", [
    ({333: 3}, 1, 999),
    ({333: 4}, 1, 999),
    ({333: 1, 334: 2}, 1, 668),
    ({7: 200}, 1, 994),
    ({1: 1001}, 1, 1000),
    ({999: 2, 1: 1}, 2, 1999),
])
def test_any_milli_share_is_packed_exactly(items, gpus, placed):
    got = fl.floor(items, gpus)
    assert got.placed_milli == placed
    shares = [s for s, c in items.items() for _ in range(c)]
    if len(shares) <= 10:
        assert _best_packing(shares, gpus) == placed


def test_items_counts_fractional_pods_once_and_whole_gpu_pods_per_device():
    reqs = [Requirement(DeviceClass.GPU, share_milli=470), Requirement(DeviceClass.GPU, share_milli=470),
            Requirement(DeviceClass.GPU, count=8, share_milli=1000), Requirement(DeviceClass.CPU, count=4)]
    assert fl.items(reqs) == {470: 2, 1000: 8}


def test_no_items_place_nothing():
    got = fl.floor({}, 3)
    assert got.placed_milli == 0 and got.unalloc == 1.0 and got.arrived_milli == 0
    assert fl.floor({500: 0}, 3).placed_milli == 0


@pytest.mark.parametrize("items,gpus,field", [
    ({500: 1}, 0, "gpus"),
    ({500: 1}, -2, "gpus"),
    ({500: 1}, 1.5, "gpus"),
    ({500: 1}, True, "gpus"),
    ({0: 1}, 2, "items"),
    ({1001: 1}, 2, "items"),
    ({-250: 1}, 2, "items"),
    ({"500": 1}, 2, "items"),
    ({500: -1}, 2, "items"),
    ({500: 1.5}, 2, "items"),
])
def test_bad_input_names_the_field(items, gpus, field):
    with pytest.raises(InputError) as info:
        fl.floor(items, gpus)
    assert info.value.fields["field"] == field


def test_column_generation_that_does_not_converge_says_so():
    mixed = {s: 3 for s in (110, 160, 230, 320, 370, 460, 550, 650, 810)}
    assert fl.floor(mixed, 10).iterations > 1
    with pytest.raises(MatchingError) as info:
        fl.floor(mixed, 10, max_iterations=1)
    assert "did not converge" in str(info.value)


def test_the_floor_on_the_default_list_is_positive_and_below_first_fit():
    """The whole GPU cluster, a held-out seed: the bound is not trivial (the 810-milli pods
    cannot pair with most others), and first fit, run on the same arrivals, is above it."""
    cluster = nodes()[::6]
    capacity = sum(n.gpu for n in cluster) * 1000
    seq = inflation.arrivals(pods(), capacity, 505)
    cut = inflation.until(seq, capacity)
    demand = [p.gpu_milli for p in cut]
    assert sum(demand) * 100 >= 100 * capacity > sum(demand[:-1]) * 100
    assert inflation.until(seq[:5], capacity) == seq[:5]  # a sequence that never gets there: all of it
    bound = match.unalloc_floor(seq, capacity)
    assert 0 < bound < 0.2
    ran = inflation.run(cluster, seq, MatchingConfig(policy="first-fit"), None, 505, marks=(100,))
    assert ran.unalloc_at_100 >= bound
