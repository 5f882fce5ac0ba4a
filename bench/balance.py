"""``load_cv``: how evenly the convergence layer spreads 1,000 orders over the providers.

The market: GEANT 2012 (Topology Zoo), one provider at every node, the five demo hardware
profiles (``marketplace.demo``: H100, L40S, 4x MI100, 4x Ascend 910B2C, 2x EPYC 7451) taken in
turn with their demo prices, in three domains planned over the graph
(``routing.regions.plan_domains``: homes by farthest-point sampling, every node in the region of
its nearest home). Each domain runs what an engine runs: a real matching ``Scheduler`` over its
own providers and a real ``DomainRouter``; the routers exchange summaries in simulated time
(``DomainNetwork``, link latency between homes, MRAI 1 s as a market's engines run it).

The workload (seeded): 1,000 orders arriving as a Poisson stream, each from a uniformly drawn
node, asking for one GPU, one or two NPUs or 4 to 16 CPU slots, for an exponentially
distributed time (mean 10 minutes); each class is offered 70 % of its capacity in the market, so
a perfect spread would leave every provider equally busy. An order goes to
its node's domain, which keeps it or hands it to another by summary
(``routing.domain_choice``); that domain's scheduler places it (if it cannot, the next option
is tried; an order nobody can place is counted ``unplaced``). Leases end on time and free
their capacity; every change is advertised: the provider's load (as its next LSA would say) and
its domain's summary.

Two runs, same orders:

- ``load_cv_best_first``: domains best first (``ChoicePolicy.BEST_FIRST``: own domain if it can,
  else the router's best route) and the default matching policy (best score first);
- ``load_cv``: domains spread by free capacity and latency (``ChoicePolicy.BALANCED``) and the
  ``balanced`` matching policy (``LoadLatency``: advertised load and path latency).

A provider's utilisation is the time average, over the arrival window, of its dominant share
(the largest share in use over its device classes and host CPU, as DRF measures it); ``load_cv``
is the coefficient of variation (population standard deviation / mean) of the utilisations.
Also reported per run: the orders placed, unplaced, handed to another domain, and the mean
latency from buyer to provider (the price of spreading).
"""

from __future__ import annotations

import functools
import heapq
import random
import statistics
from dataclasses import dataclass, field

from marketplace.demo import DEMO_PROVIDERS, PROFILES
from marketplace.errors import Unschedulable
from marketplace.matching import MatchingConfig, Order, Outcome, Provider, Scheduler
from marketplace.resources.model import DeviceClass
from marketplace.resources.requirement import Requirement
from marketplace.routing import DomainNetwork, DomainRouter, Neighbor, RoutingTable, load_topology
from marketplace.routing.domain_policy import market_config
from marketplace.routing.domain_choice import ChoicePolicy, DomainOption, choose, options
from marketplace.routing.domain_values import ProviderCapacity
from marketplace.routing.regions import DomainPlan, plan_domains
from marketplace.settings import DEFAULT_TOPOLOGY
from provider_agent.probe import discover_dump

ORDERS = 1_000
QUICK_ORDERS = 200
DOMAINS = 3
SEED = 20250301
#: the share of each class's capacity the orders offer (arrival rate x mean count x mean duration)
LOAD = 0.7
MEAN_DURATION_S = 600.0
MRAI_S = 1.0
#: devices (CPU: slots) one order asks, uniformly in [lo, hi]
COUNTS = {DeviceClass.GPU: (1, 1), DeviceClass.NPU: (1, 2), DeviceClass.CPU: (4, 16)}
MEAN_COUNT = {cls: (lo + hi) / 2 for cls, (lo, hi) in COUNTS.items()}


@dataclass
class Domain:
    asn: int
    sched: Scheduler
    providers: dict[str, Provider]
    home: str


@dataclass
class Run:
    """One simulation's bookkeeping."""

    table: RoutingTable
    plan: DomainPlan
    domains: dict[int, Domain]
    net: DomainNetwork
    owner: dict[str, int]
    #: per provider: the integral of its dominant share so far, its share now, and since when
    share_time: dict[str, float] = field(default_factory=dict)
    share_now: dict[str, float] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    placed: int = 0
    unplaced: int = 0
    handed: int = 0
    latency_ms: list[float] = field(default_factory=list)


@functools.lru_cache(maxsize=None)
def _descriptor(name: str):
    return discover_dump(PROFILES / name).descriptor


def _providers(table: RoutingTable, plan: DomainPlan) -> dict[int, list[Provider]]:
    """One provider per node, the demo profiles in turn, each in its node's region."""
    descriptors = {p.name: _descriptor(p.name) for p in DEMO_PROVIDERS}
    out: dict[int, list[Provider]] = {d: [] for d in plan.domains}
    for i, node in enumerate(table.topology.nodes):
        demo = DEMO_PROVIDERS[i % len(DEMO_PROVIDERS)]
        d = descriptors[demo.name]
        cls = min((x.device_class for x in d.devices if x.device_class != DeviceClass.CPU), default=DeviceClass.CPU)
        price = demo.prices[cls.name.lower()]
        domain = plan.region[node]
        out[domain].append(Provider(f"p{i:02d}-{demo.name}", d, node, price, domain, stake=10**18))
    return out


def _capacity(run: Run) -> dict[DeviceClass, float]:
    """Devices per accelerator class, CPU slots, over the whole market."""
    cap: dict[DeviceClass, float] = {}
    for dom in run.domains.values():
        ix = dom.sched.index
        for cls, cs in ix.slots.items():
            cap[cls] = cap.get(cls, 0.0) + float(cs.cap.sum()) / 1000
        cap[DeviceClass.CPU] = cap.get(DeviceClass.CPU, 0.0) + float(ix.cpu_cap.sum()) / 1000
    return cap


def _orders(table: RoutingTable, capacity: dict[DeviceClass, float], n: int, seed: int) -> list[tuple[float, Order, int]]:
    """``n`` orders; each class is offered ``LOAD`` of its capacity (rate x mean count x mean duration)."""
    rng = random.Random(seed)
    rates = {cls: LOAD * capacity[cls] / (MEAN_COUNT[cls] * MEAN_DURATION_S) for cls in MEAN_COUNT}
    classes = sorted(rates)
    weights = [rates[c] for c in classes]
    total = sum(weights)
    t = 0.0
    out = []
    for i in range(n):
        t += rng.expovariate(total)
        cls = rng.choices(classes, weights)[0]
        lo, hi = COUNTS[cls]
        duration = max(1, int(rng.expovariate(1 / MEAN_DURATION_S)))
        node = rng.choice(table.topology.nodes)
        req = Requirement(cls, count=rng.randint(lo, hi), duration_s=duration)
        out.append((t, Order(f"o{i}", req, 0, node, t), duration))
    return out


def _dominant_share(sched: Scheduler, pid: str) -> float:
    ix = sched.index
    i = ix.pos[pid]
    shares = []
    for cs in ix.slots.values():
        cap = int(cs.cap[i].sum())
        if cap:
            shares.append(1.0 - float(cs.free[i].sum()) / cap)
    if ix.cpu_cap[i]:
        shares.append(1.0 - float(ix.cpu_free[i]) / float(ix.cpu_cap[i]))
    return max(shares, default=0.0)


def _capacities(run: Run, dom: Domain) -> list[ProviderCapacity]:
    """What the domain advertises: per provider and class, devices (CPU: slots) total and free."""
    ix = dom.sched.index
    out = []
    for pid, p in dom.providers.items():
        i = ix.pos[pid]
        latency = float(run.table.latency(dom.home, p.attach_node))
        for cls, cs in ix.slots.items():
            cap = float(cs.cap[i].sum()) / 1000
            if cap:
                out.append(ProviderCapacity(pid, cls, cap, float(cs.n_full[i]), float(p.price), latency))
        if ix.cpu_cap[i]:
            out.append(ProviderCapacity(pid, DeviceClass.CPU, ix.cpu_cap[i] / 1000, ix.cpu_free[i] / 1000,
                                        float(p.price), latency))
    return out


def _advertise(run: Run, dom: Domain, pid: str, now: float) -> None:
    """A provider's capacity changed: account its utilisation, refresh its LSA load, re-summarise."""
    share = _dominant_share(dom.sched, pid)
    _account(run, pid, now)
    run.share_now[pid] = share
    p = dom.providers[pid]
    dom.providers[pid] = Provider(p.provider_id, p.descriptor, p.attach_node, p.price, p.domain, p.status, p.stake,
                                  min(1.0, share), now, p.reliability)
    dom.sched.update_provider(dom.providers[pid])
    run.net.originate(dom.asn, _capacities(run, dom))


def _account(run: Run, pid: str, now: float) -> None:
    run.share_time[pid] = run.share_time.get(pid, 0.0) + run.share_now.get(pid, 0.0) * (now - run.marks.get(pid, 0.0))
    run.marks[pid] = now


def _local_option(run: Run, dom: Domain, order: Order) -> DomainOption | None:
    ex = dom.sched.explain(order, now=order.submitted_at)
    feasible = [v.provider_id for v in ex.verdicts if v.feasible]
    if not feasible:
        return None
    req = order.requirement
    caps = [c for c in _capacities(run, dom) if c.device_class == req.device_class]
    latency = min(float(run.table.latency(order.buyer_node, dom.providers[p].attach_node)) for p in feasible)
    return DomainOption(dom.asn, sum(c.free for c in caps), sum(c.total for c in caps),
                        min(c.price for c in caps), latency, 1, local=True)


def _place(dom: Domain, order: Order, now: float) -> str | None:
    try:
        dom.sched.submit(order)
    except Unschedulable:  # nothing in this domain could ever run it
        return None
    result = dom.sched.schedule_round(now)
    for d in result.decisions:
        if d.order_id == order.order_id and d.outcome == Outcome.BOUND:
            return d.provider_id
    dom.sched.queue.remove(order.order_id)  # no fit now: try elsewhere rather than wait
    dom.sched.orders.pop(order.order_id, None)
    return None


def _build(policy: str) -> Run:
    table = RoutingTable(load_topology(DEFAULT_TOPOLOGY))
    plan = plan_domains(table, DOMAINS)
    by_domain = _providers(table, plan)
    config = MatchingConfig(policy=policy)
    domains, routers, owner = {}, {}, {}
    for asn in plan.domains:
        ps = by_domain[asn]
        domains[asn] = Domain(asn, Scheduler(ps, config=config, routing=table), {p.provider_id: p for p in ps},
                              plan.home(asn))
        owner.update({p.provider_id: asn for p in ps})
        routers[asn] = DomainRouter(asn, {n: Neighbor(ms) for n, ms in plan.neighbours(asn).items()},
                                    config=market_config(MRAI_S))
    run = Run(table, plan, domains, DomainNetwork(routers, processing_s=0.001), owner)
    for dom in domains.values():
        run.net.originate(dom.asn, _capacities(run, dom))
    run.net.run()
    return run


def _until(run: Run, t: float) -> None:
    run.net.run(until=t)
    if run.net.now < t:
        run.net.advance(t - run.net.now)


def simulate(orders: list[tuple[float, Order, int]], policy: ChoicePolicy) -> dict:
    """One run of ``orders`` with domain choice ``policy`` (and its matching policy)."""
    run = _build("balanced" if policy is ChoicePolicy.BALANCED else "default")
    ends: list[tuple[float, str, int, str]] = []
    for k, (t, order, duration) in enumerate(orders):
        while ends and ends[0][0] <= t:
            end, oid, asn, pid = heapq.heappop(ends)
            _until(run, end)
            run.domains[asn].sched.release(oid)
            _advertise(run, run.domains[asn], pid, end)
        _until(run, t)
        entry = run.domains[run.plan.region[order.buyer_node]]
        req = order.requirement
        local = _local_option(run, entry, order)
        border = float(run.table.latency(order.buyer_node, entry.home))
        opts = options(entry_routes(run, entry, req.device_class), own=entry.asn, local=local,
                       need=float(req.count), border_latency_ms=border)
        first = choose(opts, policy, k)
        tried = ([first] if first is not None else []) + [o for o in opts if o is not first]
        if local is None:
            tried.append(DomainOption(entry.asn, 0, 0, 0, 0, 1, local=True))  # it may still fit here
        for opt in tried:
            dom = run.domains[opt.domain]
            pid = _place(dom, order, t)
            if pid is None:
                continue
            run.placed += 1
            run.handed += dom.asn != entry.asn
            run.latency_ms.append(float(run.table.latency(order.buyer_node, dom.providers[pid].attach_node)))
            heapq.heappush(ends, (t + duration, order.order_id, dom.asn, pid))
            _advertise(run, dom, pid, t)
            break
        else:
            run.unplaced += 1
    horizon = orders[-1][0]
    utilisation = []
    for pid in run.owner:
        _account(run, pid, horizon)
        utilisation.append(run.share_time.get(pid, 0.0) / horizon)
    mean = statistics.fmean(utilisation)
    return {"cv": statistics.pstdev(utilisation) / mean if mean else 0.0, "mean_utilisation": mean,
            "placed": run.placed, "unplaced": run.unplaced, "handed": run.handed,
            "mean_latency_ms": statistics.fmean(run.latency_ms) if run.latency_ms else 0.0}


def entry_routes(run: Run, dom: Domain, cls: DeviceClass):
    return run.net.routers[dom.asn].routes(cls)


def run(quick: bool = False) -> dict:
    """``load_cv`` (balanced) beside ``load_cv_best_first`` over the same orders."""
    n = QUICK_ORDERS if quick else ORDERS
    probe = _build("default")
    orders = _orders(probe.table, _capacity(probe), n, SEED)
    best = simulate(orders, ChoicePolicy.BEST_FIRST)
    balanced = simulate(orders, ChoicePolicy.BALANCED)
    return {
        "load_cv": round(balanced["cv"], 4), "load_cv_best_first": round(best["cv"], 4),
        "load_orders": n, "load_providers": len(probe.owner), "load_domains": DOMAINS,
        "load_mean_utilisation": round(balanced["mean_utilisation"], 4),
        "load_mean_utilisation_best_first": round(best["mean_utilisation"], 4),
        "load_placed": balanced["placed"], "load_placed_best_first": best["placed"],
        "load_handed_over": balanced["handed"], "load_handed_over_best_first": best["handed"],
        "load_mean_latency_ms": round(balanced["mean_latency_ms"], 3),
        "load_mean_latency_ms_best_first": round(best["mean_latency_ms"], 3),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
