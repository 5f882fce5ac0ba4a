"""``cona bench ...``: the benchmarks, each one JSON object of figures on stdout.

One command per module of ``bench/``; each imports its module only when it runs (they pull
in the chain, the matcher or the load generator). ``--json`` is accepted for symmetry with
the other commands: the output is JSON either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from marketplace.cli.options import JsonOpt
from marketplace.cli.output import emit

bench_app = typer.Typer(help="Benchmarks: one JSON object of figures on stdout.", no_args_is_help=True)

QuickOpt = typer.Option(False, "--quick", help="a short smoke run")


@bench_app.command("chain")
def bench_chain(as_json: bool = JsonOpt, quick: bool = QuickOpt) -> None:
    """Contract transactions per second through the writer (embedded, anvil, batched) and the web3 baseline."""
    from bench import chain

    emit(chain.run(quick=quick), True)


@bench_app.command("route")
def bench_route(as_json: bool = JsonOpt, quick: bool = QuickOpt) -> None:
    """Convergence layer: SPF at 10k/100k nodes (and networkx), incremental updates, LSA decode and
    verify rates, flooding convergence across five peer processes, and an LSA change reaching the
    views of three engines of a multi-domain market (``cona up --domains 3``)."""
    from bench import flood, lsa, multi_engine, route

    emit({**route.run(quick=quick), **lsa.run(quick=quick), **flood.run(quick=quick),
          **multi_engine.run(quick=quick)}, True)


@bench_app.command("match")
def bench_match(as_json: bool = JsonOpt, quick: bool = QuickOpt,
                trace: Optional[Path] = typer.Option(None, "--trace", exists=True, dir_okay=False,
                                                     help="a pod list of the Alibaba GPU trace v2023 (default: "
                                                          "openb_pod_list_default.csv)"),
                nodes: Optional[Path] = typer.Option(None, "--nodes", exists=True, dir_okay=False,
                                                     help="its node list (default: openb_node_list_gpu_node.csv)"),
                inflation_only: bool = typer.Option(False, "--inflation-only",
                                                    help="only the FGD paper's workload-inflation protocol"),
                policy: list[str] = typer.Option([], "--policy", help="a policy the protocol runs (repeatable; "
                                                                      "default: the project's, the baselines, fgd)")
                ) -> None:
    """Matching on the Alibaba GPU trace at 1k/10k/100k providers against first fit; the FGD paper's
    workload-inflation protocol for the project's policy, FGD and the paper's baselines; and order placed to
    lease on chain through the engine (embedded chain), with the heartbeat failure-detection time."""
    from bench import lease, match

    from marketplace.matching.registry import REGISTRY

    policies = tuple(policy) or match.POLICIES
    for name in policies:
        REGISTRY.policy(name)  # an unknown name: one line with a "did you mean", before any run
    if inflation_only:
        emit(match.run(quick=quick, trace_path=trace, nodes_path=nodes, inflation_only=True, policies=policies), True)
        return
    emit({**match.run(quick=quick, trace_path=trace, nodes_path=nodes, policies=policies), **lease.run(quick=quick)},
         True)


@bench_app.command("api")
def bench_api(as_json: bool = JsonOpt, quick: bool = QuickOpt) -> None:
    """API reads at a bounded open-loop load of 1,000 req/s against `cona up` (p50/p99 from the scheduled
    send time), and order placed to lease through HTTP."""
    from bench import api

    emit(api.run(quick=quick), True)


@bench_app.command("zk")
def bench_zk(as_json: bool = JsonOpt, quick: bool = QuickOpt) -> None:
    """Tier proofs: prove and verify time in Python, gas on chain, at ring sizes 4, 16 and 32."""
    from bench import zk

    emit(zk.run(quick=quick), True)


@bench_app.command("gas")
def bench_gas(as_json: bool = typer.Option(False, "--json", help="print JSON (the default output)"),
              quick: bool = typer.Option(False, "--quick", help="ETH only"),
              markdown: bool = typer.Option(False, "--markdown", help="print the table of docs/gas.md")) -> None:
    """Gas used by every market transition, exact, from receipts on the embedded chain."""
    from bench import gas

    gas.bench_gas(as_json=as_json, quick=quick, markdown=markdown)


@bench_app.command("domains")
def bench_domains(as_json: bool = typer.Option(False, "--json", help="print JSON (the default output)"),
                  quick: bool = QuickOpt,
                  as_graph: Optional[Path] = typer.Option(None, "--as-graph", exists=True, dir_okay=False,
                                                          help="a CAIDA as-rel or SNAP as-caida file")) -> None:
    """Inter-domain summaries: one origin announces, then withdraws, across an AS graph (MRAI timers in
    simulated time); messages, wall and simulated seconds, stale routes left; and load balancing
    (load_cv beside load_cv_best_first: 1,000 orders on GEANT 2012 with the demo profiles)."""
    from bench import domains

    emit(domains.run(quick=quick, as_graph=as_graph), True)


@bench_app.command("runtime")
def bench_runtime(as_json: bool = JsonOpt, quick: bool = QuickOpt) -> None:
    """Workload start-up in the provider agent's runtimes: wasm compile and start, a container with every
    limit on, and its overhead over the same program run natively; artifact uploads through the API."""
    from bench import runtime

    emit(runtime.run(quick=quick), True)
