"""Following an order: ``cona order watch`` and ``cona order place --watch``.

The order's state is read from the API (``GET /v1/orders/{id}``: the chain's state, the
engine's status and its chain-derived history) every ``POLL_S`` until the order reaches
``--until`` or stops moving on its own: a final state, or ``disputed`` (the arbiter decides,
which may take days). The states, their order and which are final come from the contracts'
own table, ``marketplace.chain.lifecycle``; so does the state each history entry put the
order in, when the engine's entry does not say it (``history_states``).

Shown live as a table (Open -> Assigned -> Running -> Completed -> Settled, with block and
transaction of each step) on stdout, or on stderr for ``place --watch`` so that stdout keeps
only the id; or, with ``--json``, one JSON object at the end. For a finished order, the
amounts of its final event (paid, fee, refund) are read from that event's transaction receipt.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Optional

from rich.console import Console
from rich.live import Live
from rich.table import Table

from marketplace.chain.lifecycle import (FINAL_STATES, HAPPY_PATH, PAYING_EVENTS, TRANSITIONS, ZERO_ADDRESS,
                                         OrderState, state_after)
from marketplace.cli.output import emit, eth, out, short
from marketplace.cli.remote import RemoteMarket, connect
from marketplace.errors import ChainError, InputError

log = logging.getLogger(__name__)

#: the states an order goes through when all is well, in order (the labels the API shows)
PROGRESS = tuple(s.label for s in HAPPY_PATH)
FINAL = frozenset(s.label for s in FINAL_STATES)
#: where a watch stops by itself: a final state, or a dispute (the arbiter decides, maybe days later)
STOP_AT = FINAL | {OrderState.DISPUTED.label}
#: the states ``--until`` accepts
STATES = tuple(s.label for s in OrderState if s is not OrderState.NONE)
#: the events that move an order's money; their receipt holds the paid / fee / refund amounts
ENDING_EVENTS = PAYING_EVENTS
POLL_S = 0.3
#: how long a watch that reached its state waits for the engine's history to show the transaction
CATCH_UP_S = 3.0


def history_states(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The latest history entry that put the order in each state, by state label."""
    history = view.get("engine", {}).get("history", [])
    seen: dict[str, dict[str, Any]] = {}
    before = OrderState.NONE
    for i, entry in enumerate(history):
        state = _entry_state(entry, before, last=i == len(history) - 1, current=view.get("state"))
        if state is not None:
            seen[state.label] = entry
            before = state
    return seen


def _entry_state(entry: dict[str, Any], before: OrderState, *, last: bool, current: Any) -> OrderState | None:
    """The state a history entry put the order in: the engine's own ``state`` when the entry
    carries it, else the lifecycle's ``state_after`` for its event."""
    label = entry.get("state")
    if isinstance(label, str) and label.upper() in OrderState.__members__:
        return OrderState[label.upper()]
    name = entry.get("event", "")
    if name not in TRANSITIONS:
        return None
    # A hand-over's target depends only on whether its ``next`` is zero, an argument the entry may
    # not carry; then the order's state tells: a hand-over to nobody refunds the buyer, a final
    # state, so only the last entry of a refunded order can be one.
    args = entry.get("args") or {"next": ZERO_ADDRESS if last and current == OrderState.REFUNDED.label
                                 else "the next backup"}
    return state_after(name, args, before)


def progress_table(view: dict[str, Any], settlement: dict[str, Any] | None) -> Table:
    """The order's progress: one row per state, ticked once reached, with its block and tx."""
    state = view["state"]
    hist = history_states(view)
    steps = list(PROGRESS)
    if state not in steps:
        steps.append(state)
    table = Table(title=f"order {view['id']}: {state}  (provider {short(view.get('provider'))})")
    for col in ("", "state", "block", "tx"):
        table.add_column(col, no_wrap=True)
    reached = steps.index(state) if state in steps else -1
    for i, st in enumerate(steps):
        h = hist.get(st)
        mark = "[green]✔[/]" if i <= reached else ("[yellow]…[/]" if i == reached + 1 and state not in FINAL
                                                    else " ")
        table.add_row(mark, st.capitalize(), str(h["block"]) if h else "", short(h["tx"]) if h else "")
    eng = view.get("engine", {})
    if eng.get("reasons"):
        table.caption = "engine: " + eng.get("status", "") + " " + json.dumps(eng["reasons"])[:200]
    if settlement:
        table.caption = "  ".join(f"{k} {eth(v)}" for k, v in settlement.items() if k in ("paid", "fee", "refund"))
    return table


def settlement_of(m: RemoteMarket, view: dict[str, Any]) -> dict[str, Any] | None:
    """The amounts of the order's final event, read from its transaction on chain."""
    from marketplace.chain.writer import Receipt

    for h in reversed(view.get("engine", {}).get("history", [])):
        if h.get("event") in ENDING_EVENTS:
            raw = m.chain.backend.request("eth_getTransactionReceipt", [h["tx"]])
            if not raw:
                return None
            for ev in m.market.decode(Receipt.from_rpc(raw)).events:
                if ev.name == h["event"] and int(ev.args.get("order", -1)) == int(view["id"]):
                    return {"event": ev.name, "tx": h["tx"], "block": h["block"],
                            **{k: str(v) for k, v in ev.args.items() if k in ("paid", "fee", "refund", "compensation")}}
    return None


def done(state: str, until: Optional[str]) -> bool:
    """Whether a watch for ``until`` (None: until the order stops by itself) ends at ``state``."""
    if state in STOP_AT:
        return True
    if until is None:
        return False
    if state in PROGRESS and until in PROGRESS:
        return PROGRESS.index(state) >= PROGRESS.index(until)
    return state == until


def watch_order(api: Optional[str], order_id: int, until: Optional[str], timeout: float, as_json: bool,
                screen: Console | None = None, emit_json: bool = True) -> dict[str, Any]:
    """Poll the order until ``until`` (or it stops by itself); show it live on ``screen`` (default
    stdout), or print one JSON object (``as_json`` and ``emit_json``). Returns that object."""
    until = _check_until(until)
    screen = screen if screen is not None else (None if as_json else out)
    m = connect(api)
    try:
        view, settlement = _follow(m, order_id, until, timeout, screen)
    finally:
        m.close()
    result = {"id": order_id, "state": view["state"], "provider": view.get("provider"), "escrow": view.get("escrow"),
              "history": view.get("engine", {}).get("history", []), "settlement": settlement}
    if as_json:
        if emit_json:
            emit(result, True)
    else:
        _print_outcome(screen or out, order_id, view, settlement)
    return result


def _check_until(until: Optional[str]) -> Optional[str]:
    if until is None:
        return None
    until = until.lower()
    if until not in STATES:
        raise InputError(f"--until {until!r} is not an order state", field="until", hint=", ".join(STATES))
    return until


def _follow(m: RemoteMarket, order_id: int, until: Optional[str], timeout: float,
            screen: Console | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The polling loop: the order's last view and its settlement once ``done``."""
    deadline = time.monotonic() + timeout
    view = m.api.order(order_id)
    settlement = None
    live = None if screen is None else Live(progress_table(view, None), console=screen, auto_refresh=False)
    if live is not None:
        live.start()
    try:
        last = None
        catch_up_by = time.monotonic() + CATCH_UP_S
        while True:
            if view["state"] != last:
                last = view["state"]
                log.info("order %d: %s", order_id, last)
            if view["state"] in FINAL:
                settlement = settlement_of(m, view)
            if live is not None:
                live.update(progress_table(view, settlement), refresh=True)
            if done(view["state"], until):
                # the state is read from the chain, the history from the engine's event index:
                # give the index a moment to show the transaction that made this state
                if view["state"] in history_states(view) or time.monotonic() > catch_up_by:
                    return view, settlement
                time.sleep(0.2)
            else:
                catch_up_by = time.monotonic() + CATCH_UP_S
                if time.monotonic() > deadline:
                    raise ChainError(f"order {order_id} is still {view['state']} after {timeout:.0f}s",
                                     hint="see `cona order explain " + str(order_id) + "`")
                time.sleep(POLL_S)
            view = m.api.order(order_id)
    finally:
        if live is not None:
            live.stop()
            screen.print()


def _print_outcome(screen: Console, order_id: int, view: dict[str, Any], settlement: dict[str, Any] | None) -> None:
    provider = view.get("provider", "0x0")
    screen.print(f"order {order_id} {view['state'].capitalize()}" + (f" by {provider}" if int(provider, 16) else ""))
    if settlement and settlement["event"] == "Settled":
        total = int(settlement["paid"]) + int(settlement["refund"])
        screen.print(f"paid {settlement['paid']} wei for the metered usage (fee {settlement['fee']}); refunded "
                     f"the unused {settlement['refund']} wei of the {total} wei escrow to the buyer")
    elif settlement and "refund" in settlement:
        screen.print(f"refunded {settlement['refund']} wei to the buyer ({settlement['event']})")

