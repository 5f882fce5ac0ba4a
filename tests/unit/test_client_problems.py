"""``marketplace.client.problem_error``: an API problem detail becomes the ``ConaError`` of its status."""

from __future__ import annotations

import pytest

from marketplace.client import ApiUnreachable, problem_error
from marketplace.errors import (ChainError, ChainUnavailable, InputError, NotFound, Rejected,
                                TransactionReverted)

pytestmark = pytest.mark.unit


def test_each_status_maps_to_its_error_naming_what_the_api_named():
    e = problem_error("POST", "/v1/quotes", 422, {"detail": "count must be >= 1", "field": "count", "hint": "h"})
    assert type(e) is InputError and e.field == "count" and e.hint == "h" and e.http_status == 422
    assert e.message == "POST /v1/quotes: count must be >= 1"
    assert type(problem_error("GET", "/v1/orders/9", 404, {"title": "no order 9"})) is NotFound
    rej = problem_error("POST", "/v1/heartbeats", 409, {"type": "/problems/x", "reason": "unknown-provider",
                                                        "detail": "who?"})
    assert type(rej) is Rejected and rej.reason == "unknown-provider"
    assert problem_error("POST", "/v1/x", 403, {"type": "/problems/not-owner"}).reason == "/problems/not-owner"
    rev = problem_error("POST", "/v1/orders/1/cancel", 409, {"detail": "reverted", "error": "MarketError.NotOrderOwner",
                                                             "args": {"order": 1}, "tx_hash": "0xab"})
    assert type(rev) is TransactionReverted and rev.error == "MarketError.NotOrderOwner" and rev.tx_hash == "0xab"
    down = problem_error("GET", "/readyz", 503, {"detail": "chain down", "hint": "start it"})
    assert type(down) is ChainUnavailable and not isinstance(down, ApiUnreachable) and down.hint == "start it"


def test_an_answer_that_is_no_problem_detail_still_says_what_came_back():
    e = problem_error("GET", "/v1/providers", 500, "Internal Server Error")
    assert type(e) is ChainError and e.http_status == 500 and "Internal Server Error" in e.message
    assert problem_error("GET", "/v1/x", 418, {}).message == "GET /v1/x: HTTP 418"
    assert problem_error("GET", "/v1/x", 413, ["not", "a", "dict"]).http_status == 413


def test_the_status_is_the_answers_not_the_class_default():
    # InputError's class default is 422; an InputError built from a 400 answer says 400
    assert problem_error("POST", "/v1/lsas", 400, {"detail": "bad TLV"}).http_status == 400
    assert InputError.http_status == 422
