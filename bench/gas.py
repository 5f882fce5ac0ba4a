"""``cona bench gas``: gas used by every transition of the market, from receipts on the embedded chain.

One scenario per payment asset (native ETH and the ERC-20 DemoToken) drives each
transition of ``ProviderRegistry`` and ``ComputeMarket`` once, through the typed clients
(``marketplace.chain.market``), and reads ``gasUsed`` from its receipt. Gas is a
property of the EVM execution, not of the machine, so these figures are reproducible to
within a few gas (same compiler settings, order of operations and storage warmth; only a
signature's zero bytes, cheaper calldata, vary with the signed deadline).

Accounts: the dev mnemonic's first ten (0 operator, 1 orchestrator, 2 arbiter, 3-5
providers, 6-8 buyers, 9 anyone). Prices: 0.0036 per unit-hour, stake 2 units, one GPU
unit for an hour per order. Where a transition's cost depends on what it touches first,
the scenario says which case it measures (e.g. a buyer's first deposit writes a fresh
storage slot; later ones cost less).

``run(quick)`` returns one flat JSON object: ``"<asset>.<transition>": gas`` plus
``<asset>.lifecycle`` (signed order to provider withdrawal); ``render_markdown`` turns
it into the table in ``docs/gas.md``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import Any, Callable

import typer
from eth_utils import keccak

from marketplace.chain.backends import EmbeddedBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import MarketParams, deploy_market
from marketplace.chain.market import Market, Tx, wait_until
from marketplace.chain.timelock import Change
from marketplace.settings import PACKAGE_ROOT, ProjectConfig

ETH = 10**18
PRICE = 36 * 10**14
GPU = 2
REQ = keccak(b'{"class":"GPU","count":1,"min_vram_mib":40960}')
RESULT = keccak(b"result")
BATCH = 10

#: (key, what the transaction does), in the order of the table
TRANSITIONS: tuple[tuple[str, str], ...] = (
    ("register", "provider registers with its descriptor digest, prices and stake"),
    ("update", "provider changes its descriptor, domain or prices"),
    ("topUp", "provider adds stake"),
    ("pauseProvider", "provider stops taking leases"),
    ("resumeProvider", "provider takes leases again"),
    ("deposit.first", "buyer's first deposit (fresh balance slot)"),
    ("deposit", "buyer deposits again"),
    ("placeOrder", "buyer places its own order (escrow locked, terms version recorded)"),
    ("placeSignedOrders.1", "orchestrator places one buyer-signed EIP-712 intent"),
    ("placeSignedOrders.per_order", f"the same, {BATCH} intents in one transaction, per order"),
    ("invalidateNonces", "buyer revokes the intents it signed"),
    ("assignBatch.1order", "one matching round of one order: batch record + assignment (the engine's path)"),
    ("assignBatch.2backups", "a round of one order with 2 ranked backups"),
    ("assignBatch.per_order", f"a round of {BATCH} assignments and its batch record, per order"),
    ("assignBatch.skipped", "a round whose one order was cancelled meanwhile: reported, not reverted"),
    ("assignBatch.empty", "a round recorded with no assignment (batch record only)"),
    ("accept", "provider accepts within the deadline (Running)"),
    ("complete", "provider posts result hash and metered usage (capped by the time elapsed)"),
    ("settle", "anyone, after the dispute window: pay provider, fee, refund rest"),
    ("cancel.open", "buyer cancels an open order: full refund"),
    ("cancel.assigned", "buyer cancels an assigned order before acceptance"),
    ("timeoutAcceptance.backup", "late provider slashed (burned: nothing paid yet), next backup at its ask"),
    ("timeoutAcceptance.refund", "late provider slashed, no backup left: refund"),
    ("fail.backup", "failure mid-lease: pro-rata pay, slash (compensation + burn), backup assigned"),
    ("fail.refund", "failure mid-lease, no backup: pro-rata pay, slash, refund"),
    ("expire", "anyone ends a lease left Running past its end and grace: slash, refund"),
    ("dispute", "buyer disputes within the window"),
    ("resolve", "the order's arbiter splits the escrow and slashes (capped)"),
    ("lapse", "anyone closes a dispute the arbiter left past its deadline: settled"),
    ("burn", "anyone sends the burn backlog to the burn address"),
    ("withdraw.market", "an account pulls its balance from the market"),
    ("pause", "operator pauses new business"),
    ("unpause", "operator resumes it"),
    ("timelock.schedule", "operator schedules new terms on the timelock"),
    ("timelock.execute", "the scheduled setSettings runs (a new terms version)"),
    ("beginUnbond", "provider starts leaving"),
    ("finishUnbond", "provider exits after the unbonding period"),
    ("withdraw.registry", "exited provider pulls its released stake"),
)

#: the transactions of one lease from a signed intent to the provider's money in hand, on the
#: engine's path: its round binds the order with ``assignBatch`` (the batch record included)
LIFECYCLE = ("placeSignedOrders.1", "assignBatch.1order", "accept", "complete", "settle", "withdraw.market")


class _Scenario:
    """One market, its accounts, and the gas of every transition driven so far."""

    def __init__(self, chain: Chain, asset: str) -> None:
        dep = deploy_market(chain, params=MarketParams(asset=asset, min_stake=ETH, unbonding_period=3600,
                                                       fee_bps=200, accept_window=60, dispute_window=300,
                                                       miss_slash_bps=500, fail_slash_bps=1000))
        self.m = Market.from_deployment(chain, dep)
        self.reg = self.m.registry
        s = chain.signers
        self.op, self.orch, self.arb, self.provs, self.buyers, self.anyone = s[0], s[1], s[2], s[3:6], s[6:9], s[9]
        self.gas: dict[str, int] = {}
        self.rounds = 0
        if self.m.token is not None:
            for acct in (*self.provs, *self.buyers, self.anyone):
                self.m.token.transact(self.op, "mint", acct.address, 1000 * ETH)
                # approve once, generously, so the measured transactions are the transitions alone
                self.m.token.transact(acct, "approve", self.m.address, 2**255)
                self.m.token.transact(acct, "approve", self.reg.address, 2**255)

    def take(self, key: str, tx: Tx, per: int = 1) -> Tx:
        self.gas[key] = tx.gas_used // per
        return tx

    def intent(self, buyer: Any, nonce: int | None = None) -> Any:
        return self.m.intent(buyer.address, requirement=REQ, device_class=GPU, units=1, duration=3600,
                             max_price=PRICE, nonce=nonce)

    def place(self, buyer: Any) -> int:
        return self.m.place_tx(buyer, self.intent(buyer)).event("OrderPlaced").args["order"]

    def round(self, plan: list) -> Tx:
        self.rounds += 1
        seed = b"%d" % self.rounds
        return self.m.assign_batch(self.orch, keccak(b"batch" + seed), keccak(b"in" + seed), keccak(b"out" + seed),
                                   plan)

    def running(self, buyer: Any, provider: Any, backups: list) -> int:
        oid = self.place(buyer)
        self.round([(oid, provider.address, PRICE, [b.address for b in backups])])
        self.m.accept(provider, oid)
        return oid

    def complete(self, provider: Any, oid: int, usage: int) -> Tx:
        wait_until(self.m, self.m.order(oid).started_at + usage)
        return self.m.complete(provider, oid, RESULT, usage)


def _providers_and_money(sc: _Scenario) -> None:
    m, reg, take = sc.m, sc.reg, sc.take
    p0, p1, p2 = sc.provs
    b0, b1, _ = sc.buyers
    for p in sc.provs:
        tx = reg.register(p, hardware=keccak(p.address.encode()), domain=1, prices=[PRICE] * 4, stake=2 * ETH)
        take("register", tx) if p is p0 else None
    take("update", reg.update(p0, hardware=keccak(b"new"), domain=2, prices=[PRICE] * 4))
    take("topUp", reg.top_up(p0, ETH))
    take("pauseProvider", reg.pause(p2))
    take("resumeProvider", reg.resume(p2))
    take("deposit.first", m.deposit(b0, 50 * ETH))
    take("deposit", m.deposit(b0, 50 * ETH))
    m.deposit(b1, 50 * ETH)
    # warm-up, not measured: the market's first order and the buyer's first nonce write fresh
    # storage slots (20k gas each), which would be charged to whichever order came first
    m.cancel(b0, sc.place(b0))


def _lifecycle(sc: _Scenario) -> None:
    m, take, orch = sc.m, sc.take, sc.orch
    p0, p1, p2 = sc.provs
    b0, b1, _ = sc.buyers
    it = sc.intent(b0)
    oid = take("placeSignedOrders.1", m.place_signed(orch, it, m.sign(b0, it))).event("OrderPlaced").args["order"]
    take("assignBatch.1order", sc.round([(oid, p0.address, PRICE, ())]))
    take("accept", m.accept(p0, oid))
    take("complete", sc.complete(p0, oid, 1800))
    wait_until(m, m.order(oid).completed_at + 300)
    take("settle", m.settle(sc.anyone, oid))
    take("withdraw.market", m.withdraw(p0))
    take("cancel.open", m.cancel(b0, sc.place(b0)))
    take("placeOrder", m.place_tx(b0, sc.intent(b0)))
    signed = sc.intent(b0)
    take("invalidateNonces", m.invalidate_nonces(b0, signed.nonce + 1))
    nonce = m.nonce(b1.address)
    batch = [sc.intent(b1, nonce + i) for i in range(BATCH)]
    ids = list(range(m.order_count + 1, m.order_count + 1 + BATCH))
    tx = m.decode(m.contract.transact(orch, "placeSignedOrders", [i.as_tuple() for i in batch],
                                      [m.sign(b1, i) for i in batch], [b""] * BATCH))
    assert [e.args["order"] for e in tx.named("OrderPlaced")] == ids
    take("placeSignedOrders.per_order", tx, BATCH)
    take("assignBatch.per_order", sc.round([(i, p1.address, PRICE, ()) for i in ids]), BATCH)
    take("cancel.assigned", m.cancel(b1, ids[0]))
    gone = sc.place(b0)
    m.cancel(b0, gone)
    take("assignBatch.skipped", sc.round([(gone, p0.address, PRICE, ())]))
    take("assignBatch.empty", sc.round([]))


def _faults(sc: _Scenario) -> None:
    m, take, anyone = sc.m, sc.take, sc.anyone
    p0, p1, p2 = sc.provs
    b0 = sc.buyers[0]
    oid = sc.place(b0)
    take("assignBatch.2backups", sc.round([(oid, p0.address, PRICE, [p1.address, p2.address])]))
    wait_until(m, m.order(oid).accept_deadline + 1)
    take("timeoutAcceptance.backup", m.timeout_acceptance(anyone, oid))
    oid = sc.place(b0)
    sc.round([(oid, p0.address, PRICE, ())])
    wait_until(m, m.order(oid).accept_deadline + 1)
    take("timeoutAcceptance.refund", m.timeout_acceptance(anyone, oid))
    oid = sc.running(b0, p2, [p0])
    wait_until(m, m.order(oid).started_at + 600)
    take("fail.backup", m.fail(sc.orch, oid))
    m.accept(p0, oid)
    wait_until(m, m.order(oid).started_at + 600)
    take("fail.refund", m.fail(sc.orch, oid))
    oid = sc.running(b0, p1, [])
    o = m.order(oid)
    wait_until(m, o.started_at + o.duration + m.terms(o.terms).run_grace + 1)
    take("expire", m.expire(anyone, oid))


def _disputes_and_operator(sc: _Scenario) -> None:
    m, take, b0 = sc.m, sc.take, sc.buyers[0]
    p0, p1, p2 = sc.provs
    oid = sc.running(b0, p2, [])
    sc.complete(p2, oid, 3600)
    take("dispute", m.dispute(b0, oid))
    take("resolve", m.resolve(sc.arb, oid, 10**15, ETH // 10))
    oid = sc.running(b0, p1, [])
    sc.complete(p1, oid, 600)
    m.dispute(b0, oid)
    o = m.order(oid)
    wait_until(m, o.disputed_at + m.terms(o.terms).arbitration_window + 1)
    take("lapse", m.lapse(sc.anyone, oid))
    take("burn", m.burn(sc.anyone))
    take("pause", m.pause(sc.op))
    take("unpause", m.unpause(sc.op))
    change = Change.call(m.contract, "setSettings", replace(m.terms(), fee_bps=150).as_tuple())
    take("timelock.schedule", m.timelock.schedule(sc.op, change))
    take("timelock.execute", m.timelock.execute(sc.op, change))
    unbond_at = take("beginUnbond", sc.reg.begin_unbond(p2)).event("UnbondingStarted").args["unbondAt"]
    wait_until(m, unbond_at)
    take("finishUnbond", sc.reg.finish_unbond(p2))
    take("withdraw.registry", sc.reg.withdraw(p2))


def _scenario(chain: Chain, asset: str) -> dict[str, int]:
    sc = _Scenario(chain, asset)
    for phase in (_providers_and_money, _lifecycle, _faults, _disputes_and_operator):
        phase(sc)
    for check in (sc.m.escrow_check(), sc.reg.escrow_check()):
        assert check.balanced, check  # a scenario that broke the books measured nothing worth publishing
    missing = {k for k, _ in TRANSITIONS} - set(sc.gas)
    assert not missing, f"transitions not measured: {sorted(missing)}"
    sc.gas["lifecycle"] = sum(sc.gas[k] for k in LIFECYCLE)
    return sc.gas


def run(quick: bool = False) -> dict:
    """Gas per transition for both assets (quick: ETH only). Exact, so quick differs only in coverage."""
    project = ProjectConfig.load(PACKAGE_ROOT)
    out: dict[str, Any] = {}
    for asset in ("eth",) if quick else ("eth", "token"):
        chain = Chain(EmbeddedBackend(project.mnemonic, 10), project)
        try:
            for key, value in _scenario(chain, asset).items():
                out[f"{asset}.{key}"] = value
        finally:
            chain.close()
    out["lifecycle_transactions"] = len(LIFECYCLE)
    out["workload"] = "every market transition once, embedded chain, gasUsed from receipts"
    return out


def render_markdown(figures: dict) -> str:
    """The table of ``docs/gas.md``: one row per transition, one column per asset measured."""
    assets = [a for a in ("eth", "token") if f"{a}.register" in figures]
    header = {"eth": "gas (ETH)", "token": "gas (ERC-20)"}
    lines = ["| transition | what it does | " + " | ".join(header[a] for a in assets) + " |",
             "|---|---|" + "---:|" * len(assets)]
    fmt: Callable[[int], str] = lambda v: f"{v:,}"  # noqa: E731
    for key, what in TRANSITIONS:
        lines.append(f"| `{key}` | {what} | " + " | ".join(fmt(figures[f"{a}.{key}"]) for a in assets) + " |")
    lines.append(f"| **lifecycle** | {' + '.join(f'`{k}`' for k in LIFECYCLE)} | "
                 + " | ".join(f"**{fmt(figures[f'{a}.lifecycle'])}**" for a in assets) + " |")
    return "\n".join(lines) + "\n"


def bench_gas(as_json: bool = typer.Option(False, "--json", help="print JSON (the default output)"),
              quick: bool = typer.Option(False, "--quick", help="ETH only"),
              markdown: bool = typer.Option(False, "--markdown", help="print the table of docs/gas.md")) -> None:
    """Gas used by every market transition, exact, from receipts on the embedded chain."""
    figures = run(quick=quick)
    sys.stdout.write(render_markdown(figures) if markdown else json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    typer.run(bench_gas)
