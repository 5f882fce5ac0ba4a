"""Following an order (``marketplace.cli.watch``): the states and their order come from the
contracts' lifecycle table; each history entry's state from the engine, or from the table."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from marketplace.chain.lifecycle import FINAL_STATES, HAPPY_PATH
from marketplace.cli.orders import order_app
from marketplace.cli.watch import FINAL, PROGRESS, STATES, done, history_states, progress_table
from marketplace.errors import InputError

pytestmark = pytest.mark.unit


def _view(state: str, *events: str, **extra) -> dict:
    history = [{"event": e, "block": i + 1, "tx": f"0x{i + 1:064x}"} for i, e in enumerate(events)]
    return {"id": 7, "state": state, "provider": "0x" + "11" * 20, "engine": {"history": history, **extra}}


def test_the_states_are_the_lifecycles():
    assert PROGRESS == ("open", "assigned", "running", "completed", "settled")
    assert PROGRESS == tuple(s.label for s in HAPPY_PATH) and FINAL == {s.label for s in FINAL_STATES}
    assert set(STATES) == set(PROGRESS) | {"cancelled", "refunded", "disputed", "resolved"}


def test_history_states_follow_the_table_and_a_handover_to_nobody_is_a_refund():
    seen = history_states(_view("settled", "OrderPlaced", "Assigned", "Accepted", "Completed", "Settled"))
    assert [(s, h["block"]) for s, h in seen.items()] == [("open", 1), ("assigned", 2), ("running", 3),
                                                         ("completed", 4), ("settled", 5)]
    # a timed-out acceptance handed to a backup re-assigns; the last one, to nobody, refunds
    seen = history_states(_view("refunded", "OrderPlaced", "Assigned", "AcceptanceTimedOut", "AcceptanceTimedOut"))
    assert seen["assigned"]["block"] == 3 and seen["refunded"]["block"] == 4
    seen = history_states(_view("assigned", "OrderPlaced", "Assigned", "AcceptanceTimedOut"))
    assert seen["assigned"]["block"] == 3 and "refunded" not in seen
    # events that move no order (or unknown ones) put it in no state
    assert history_states(_view("open", "OrderPlaced", "BatchCommitted", "Slashed")) == {"open": {
        "event": "OrderPlaced", "block": 1, "tx": "0x" + "0" * 63 + "1"}}


def test_the_engines_own_state_field_wins_over_the_table():
    view = _view("refunded", "OrderPlaced", "Assigned", "OrderFailed")
    view["engine"]["history"][2]["state"] = "refunded"  # the engine knew `next` was zero
    view["state"] = "refunded"
    assert history_states(view)["refunded"]["block"] == 3
    view["engine"]["history"][2]["state"] = "assigned"
    assert history_states(view)["assigned"]["block"] == 3 and "refunded" not in history_states(view)
    view["engine"]["history"][2]["state"] = "no-such-state"  # garbage falls back to the table
    assert history_states(view)["refunded"]["block"] == 3


def test_done_stops_at_until_a_final_state_or_a_dispute():
    assert not done("open", None) and not done("running", None)
    assert all(done(s, None) for s in FINAL) and done("disputed", None)
    assert done("running", "assigned") and done("completed", "completed") and not done("assigned", "running")
    assert done("cancelled", "completed")  # final: nothing more will happen
    assert not done("assigned", "refunded") and done("refunded", "assigned")


def test_progress_table_ticks_reached_states_and_shows_an_off_path_state():
    table = progress_table(_view("cancelled", "OrderPlaced", "Cancelled"), None)
    assert table.row_count == len(PROGRESS) + 1 and table.title.startswith("order 7: cancelled")
    settled = progress_table(_view("settled", "OrderPlaced"), {"paid": "2000000000000000", "fee": "0", "refund": "5"})
    assert "paid 0.002000 ETH" in settled.caption and "refund 5 wei" in settled.caption


def test_watch_refuses_an_unknown_state_before_reaching_the_market():
    res = CliRunner().invoke(order_app, ["watch", "1", "--until", "finished", "--api", "http://127.0.0.1:9"])
    assert isinstance(res.exception, InputError) and res.exception.field == "until"
    assert "settled" in res.exception.hint
