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
from typing import Any, Callable

import typer
from eth_utils import keccak

from marketplace.chain.backends import EmbeddedBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import MarketParams, deploy_market
from marketplace.chain.market import Market, Tx, wait_until
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
    ("placeOrder", "buyer places its own order (escrow locked)"),
    ("placeSignedOrder", "orchestrator places a buyer-signed EIP-712 intent"),
    ("placeSignedOrders.per_order", f"the same, {BATCH} intents in one transaction, per order"),
    ("assign", "orchestrator assigns a provider, no backups"),
    ("assign.2backups", "orchestrator assigns a provider with 2 ranked backups"),
    ("assignBatch.1order", "one matching round of one order: batch record + assignment (the engine's path)"),
    ("assignBatch.per_order", f"a round of {BATCH} assignments and its batch record, per order"),
    ("assignBatch.empty", "a round recorded with no assignment (batch record only)"),
    ("accept", "provider accepts within the deadline (Running)"),
    ("complete", "provider posts result hash and metered usage"),
    ("settle", "anyone, after the dispute window: pay provider, fee, refund rest"),
    ("cancel.open", "buyer cancels an open order: full refund"),
    ("cancel.assigned", "buyer cancels an assigned order before acceptance"),
    ("timeoutAcceptance.backup", "late provider slashed, next backup assigned"),
    ("timeoutAcceptance.refund", "late provider slashed, no backup left: refund"),
    ("fail.backup", "failure mid-lease: pro-rata pay, slash, backup assigned"),
    ("fail.refund", "failure mid-lease, no backup: pro-rata pay, slash, refund"),
    ("dispute", "buyer disputes within the window"),
    ("resolve", "arbiter splits the escrow and slashes"),
    ("withdraw.market", "an account pulls its balance from the market"),
    ("pause", "operator pauses new business"),
    ("unpause", "operator resumes it"),
    ("setSetting", "operator changes a bounded setting (fee)"),
    ("beginUnbond", "provider starts leaving"),
    ("finishUnbond", "provider exits after the unbonding period"),
    ("withdraw.registry", "exited provider pulls its released stake"),
)

#: the transactions of one lease from a signed intent to the provider's money in hand, on the
#: engine's path: its round binds the order with ``assignBatch`` (the batch record included)
LIFECYCLE = ("placeSignedOrder", "assignBatch.1order", "accept", "complete", "settle", "withdraw.market")


def _scenario(chain: Chain, asset: str) -> dict[str, int]:
    dep = deploy_market(chain, params=MarketParams(asset=asset, min_stake=ETH, unbonding_period=3600, fee_bps=200,
                                                   accept_window=60, dispute_window=300, miss_slash_bps=500,
                                                   fail_slash_bps=1000))
    m = Market.from_deployment(chain, dep)
    reg = m.registry
    s = chain.signers
    op, orch, arb, provs, buyers, anyone = s[0], s[1], s[2], s[3:6], s[6:9], s[9]
    if m.token is not None:
        for acct in (*provs, *buyers):
            m.token.transact(op, "mint", acct.address, 1000 * ETH)
            # approve once, generously, so the measured transactions are the transitions alone
            m.token.transact(acct, "approve", m.address, 2**255)
            m.token.transact(acct, "approve", reg.address, 2**255)
    gas: dict[str, int] = {}

    def take(key: str, tx: Tx, per: int = 1) -> Tx:
        gas[key] = tx.gas_used // per
        return tx

    def intent(buyer: Any, nonce: int | None = None) -> Any:
        return m.intent(buyer.address, requirement=REQ, device_class=GPU, units=1, duration=3600, max_price=PRICE,
                        nonce=nonce)

    def register(p: Any) -> Tx:
        return reg.register(p, hardware=keccak(p.address.encode()), domain=1, prices=[PRICE] * 4, stake=2 * ETH)

    p0, p1, p2 = provs
    b0, b1, _ = buyers
    take("register", register(p0))
    register(p1)
    register(p2)
    take("update", reg.update(p0, hardware=keccak(b"new"), domain=2, prices=[PRICE] * 4))
    take("topUp", reg.top_up(p0, ETH))
    take("pauseProvider", reg.pause(p2))
    take("resumeProvider", reg.resume(p2))
    take("deposit.first", m.deposit(b0, 50 * ETH))
    take("deposit", m.deposit(b0, 50 * ETH))
    m.deposit(b1, 50 * ETH)

    def placed(tx: Tx) -> int:
        return tx.event("OrderPlaced").args["order"]

    # warm-up, not measured: the market's first order and the buyer's first nonce write fresh
    # storage slots (20k gas each), which would be charged to whichever order came first
    m.cancel(b0, placed(m.place_tx(b0, intent(b0))))

    def round_of(*seed: bytes) -> tuple[bytes, bytes, bytes]:
        return keccak(b"batch" + b"".join(seed)), keccak(b"inputs" + b"".join(seed)), keccak(b"out" + b"".join(seed))

    # a manual assign, outside any batch
    it = intent(b0)
    oid = placed(m.place_signed(orch, it, m.sign(b0, it)))
    take("assign", m.assign(orch, oid, p0.address, PRICE))
    m.cancel(b0, oid)

    # the main lifecycle, by a signed intent bound by a matching round of one order
    it = intent(b0)
    oid = placed(take("placeSignedOrder", m.place_signed(orch, it, m.sign(b0, it))))
    take("assignBatch.1order", m.assign_batch(orch, *round_of(b"1"), [(oid, p0.address, PRICE, ())]))
    take("accept", m.accept(p0, oid))
    take("complete", m.complete(p0, oid, RESULT, 1800))
    wait_until(m, m.order(oid).completed_at + 300)
    take("settle", m.settle(anyone, oid))
    take("withdraw.market", m.withdraw(p0))

    own = placed(take("placeOrder", m.place_tx(b0, intent(b0))))
    take("cancel.open", m.cancel(b0, own))

    nonce = m.nonce(b1.address)
    batch = [intent(b1, nonce + i) for i in range(BATCH)]
    ids = [i for i in range(m.order_count + 1, m.order_count + 1 + BATCH)]
    tx = m.decode(m.contract.transact(orch, "placeSignedOrders", [i.as_tuple() for i in batch],
                                      [m.sign(b1, i) for i in batch], [b""] * BATCH))
    assert [e.args["order"] for e in tx.named("OrderPlaced")] == ids
    take("placeSignedOrders.per_order", tx, BATCH)
    take("assignBatch.per_order", m.assign_batch(orch, *round_of(b"10"), [(i, p1.address, PRICE, ()) for i in ids]),
         BATCH)
    take("cancel.assigned", m.cancel(b1, ids[0]))

    # acceptance timeouts: to a backup, then with none left
    oid = placed(m.place_tx(b0, intent(b0)))
    take("assign.2backups", m.assign(orch, oid, p0.address, PRICE, [p1.address, p2.address]))
    wait_until(m, m.order(oid).accept_deadline + 1)
    take("timeoutAcceptance.backup", m.timeout_acceptance(anyone, oid))
    oid = placed(m.place_tx(b0, intent(b0)))
    m.assign(orch, oid, p0.address, PRICE)
    wait_until(m, m.order(oid).accept_deadline + 1)
    take("timeoutAcceptance.refund", m.timeout_acceptance(anyone, oid))

    # failures mid-lease
    oid = placed(m.place_tx(b0, intent(b0)))
    m.assign(orch, oid, p2.address, PRICE, [p0.address])
    m.accept(p2, oid)
    wait_until(m, m.order(oid).started_at + 600)
    take("fail.backup", m.fail(orch, oid))
    m.accept(p0, oid)
    wait_until(m, m.order(oid).started_at + 600)
    take("fail.refund", m.fail(orch, oid))

    # dispute and resolution
    oid = placed(m.place_tx(b0, intent(b0)))
    m.assign(orch, oid, p2.address, PRICE)
    m.accept(p2, oid)
    m.complete(p2, oid, RESULT, 3600)
    take("dispute", m.dispute(b0, oid))
    take("resolve", m.resolve(arb, oid, 10**15, ETH // 10))

    # operator
    take("pause", m.pause(op))
    take("unpause", m.unpause(op))
    take("setSetting", m.set_setting(op, "feeBps", 150))
    take("assignBatch.empty", m.assign_batch(orch, *round_of(b"empty"), []))

    # leaving
    unbond_at = take("beginUnbond", reg.begin_unbond(p2)).event("UnbondingStarted").args["unbondAt"]
    wait_until(m, unbond_at)
    take("finishUnbond", reg.finish_unbond(p2))
    take("withdraw.registry", reg.withdraw(p2))

    for check in (m.escrow_check(), reg.escrow_check()):
        assert check.balanced, check  # a scenario that broke the books measured nothing worth publishing
    missing = {k for k, _ in TRANSITIONS} - set(gas)
    assert not missing, f"transitions not measured: {sorted(missing)}"
    gas["lifecycle"] = sum(gas[k] for k in LIFECYCLE)
    return gas


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
