"""One conformance suite for every chain backend (eth-tester's BaseTestBackendDirect pattern).

Every test runs against the embedded chain and against anvil through the same
``Chain`` interface: deploy, call, transact, logs and filters, revert decoding,
snapshot and revert, time control, chain id, value transfer, the writer's
nonce, batch and idempotency guarantees, and the relay's limits (``forward``).
"""

from __future__ import annotations

import logging
import tracemalloc

import pytest

from marketplace.chain.backends import RpcError
from marketplace.chain.contracts import Chain
from marketplace.chain.writer import IdempotencyJournal, Signer, TransactionWriter
from marketplace.errors import ChainMismatch, InsufficientFunds, TransactionReverted
from marketplace.limits import MAX_JSON_DEPTH, MAX_RPC_BATCH, MAX_RPC_BODY_BYTES, json_depth

LIMIT = 100
EXPECTED_CHAIN_ID = {"embedded": 131277322940537, "anvil": 31337, "rpc": 31337}


@pytest.fixture(scope="session")
def probe(chain: Chain):
    return chain.deploy("ChainProbe", LIMIT)


def test_chain_id_is_the_backends(chain: Chain, isolated):
    assert chain.backend.chain_id == EXPECTED_CHAIN_ID[chain.backend.name]
    chain.backend.check_chain_id(chain.backend.chain_id)
    with pytest.raises(ChainMismatch, match="expected 1"):
        chain.backend.check_chain_id(1)


def test_dev_accounts_are_funded_and_identical_across_backends(chain: Chain):
    first = chain.signers[0].address
    assert first == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # the well-known test mnemonic, account 0
    balance = int(chain.backend.request("eth_getBalance", [first, "latest"]), 16)
    assert balance > 10**18


def test_deploy_and_call(chain: Chain, probe, isolated):
    assert probe.call("limit") == LIMIT
    assert probe.call("owner") == chain.signers[0].address
    code = chain.backend.request("eth_getCode", [probe.address, "latest"])
    assert len(code) > 100


def test_transact_changes_state_and_emits_decoded_event(chain: Chain, probe, isolated):
    before = probe.call("counter")
    receipt = probe.transact(chain.signers[1], "bump", 7)
    assert receipt.ok and receipt.gas_used > 21_000
    (event,) = probe.events(receipt)
    assert event.name == "Bumped"
    assert event.args == {"by": chain.signers[1].address, "counter": before + 1, "value": 7}
    assert event.block_number == receipt.block_number and event.tx_hash == receipt.tx_hash
    assert probe.call("total", chain.signers[1].address) == 7


def test_get_logs_filters_by_event_and_block(chain: Chain, probe, isolated):
    start = chain.backend.block_number() + 1
    probe.transact(chain.signers[0], "bump", 1)
    probe.transact(chain.signers[0], "deposit", value=5)
    probe.transact(chain.signers[0], "bump", 2)
    bumps = probe.get_logs(from_block=start, event="Bumped")
    assert [e.args["value"] for e in bumps] == [1, 2]
    everything = probe.get_logs(from_block=start)
    assert [e.name for e in everything] == ["Bumped", "Received", "Bumped"]
    assert everything[1].args == {"from": chain.signers[0].address, "amount": 5}


def test_log_filter_reports_only_new_changes(chain: Chain, probe, isolated):
    fid = chain.backend.request("eth_newFilter", [{"address": probe.address, "fromBlock": "latest"}])
    probe.transact(chain.signers[0], "bump", 3)
    changes = chain.backend.request("eth_getFilterChanges", [fid])
    assert len(changes) == 1 and probe.abi.decode_log(changes[0]).args["value"] == 3
    assert chain.backend.request("eth_getFilterChanges", [fid]) == []
    assert chain.backend.request("eth_uninstallFilter", [fid]) is True


def test_value_transfer_moves_balance(chain: Chain, probe, isolated):
    bal = lambda a: int(chain.backend.request("eth_getBalance", [a, "latest"]), 16)  # noqa: E731
    before = bal(probe.address)
    probe.transact(chain.signers[2], "deposit", value=12345)
    assert bal(probe.address) == before + 12345


def test_custom_error_decoded_from_estimate(chain: Chain, probe, isolated):
    with pytest.raises(TransactionReverted) as info:
        probe.transact(chain.signers[0], "bump", LIMIT + 1)
    err = info.value
    assert err.error == "ChainProbe.TooLarge"
    assert err.error_args == {"value": LIMIT + 1, "limit": LIMIT}
    assert "ChainProbe.TooLarge(value=101, limit=100)" in str(err)


def test_custom_error_decoded_from_a_mined_failure(chain: Chain, probe, isolated):
    # explicit gas skips estimation, so the transaction is mined and fails on chain
    with pytest.raises(TransactionReverted) as info:
        probe.transact(chain.signers[0], "bump", LIMIT + 5, gas=100_000)
    assert info.value.error == "ChainProbe.TooLarge"
    assert info.value.tx_hash is not None
    receipt = chain.backend.request("eth_getTransactionReceipt", [info.value.tx_hash])
    assert int(receipt["status"], 16) == 0


def test_call_reverts_decoded_with_caller(chain: Chain, probe, isolated):
    stranger = chain.signers[3].address
    with pytest.raises(TransactionReverted) as info:
        probe.call("ownerOnly", 42, sender=stranger)
    assert info.value.error == "ChainProbe.NotOwner"
    assert info.value.error_args == {"caller": stranger, "code": 42}
    assert probe.call("ownerOnly", 42, sender=chain.signers[0].address) is True


def test_string_and_panic_reverts_decoded(chain: Chain, probe, isolated):
    with pytest.raises(TransactionReverted) as info:
        probe.call("fail", "not today")
    assert info.value.error == "Error" and info.value.error_args == {"reason": "not today"}
    with pytest.raises(TransactionReverted) as info:
        probe.call("divide", 1, 0)
    assert info.value.error == "Panic" and info.value.error_args["code"] == 0x12


def test_snapshot_and_revert(chain: Chain, probe, isolated):
    snap = chain.backend.snapshot()
    base = probe.call("counter")
    probe.transact(chain.signers[0], "bump", 1)
    assert probe.call("counter") == base + 1
    chain.backend.revert(snap)
    chain.writer.forget_nonces()
    assert probe.call("counter") == base
    probe.transact(chain.signers[0], "bump", 1)  # the writer re-reads the nonce after a revert
    assert probe.call("counter") == base + 1


def test_time_control(chain: Chain, probe, isolated):
    t0 = probe.call("now_")
    chain.backend.increase_time(86_400)
    probe.transact(chain.signers[0], "bump", 1)
    assert probe.call("now_") >= t0 + 86_400


def test_batch_is_ordered_and_complete(chain: Chain, probe, isolated):
    base = probe.call("counter")
    reqs = [probe.request("bump", i, gas=90_000) for i in range(1, 21)]
    receipts = chain.writer.transact_many(chain.signers[4], reqs)
    assert [r.ok for r in receipts] == [True] * 20
    assert probe.call("counter") == base + 20
    assert probe.call("total", chain.signers[4].address) == sum(range(1, 21))
    counters = [probe.events(r)[0].args["counter"] for r in receipts]
    assert counters == list(range(base + 1, base + 21))


def test_batch_reports_each_revert_without_losing_the_others(chain: Chain, probe, isolated):
    reqs = [probe.request("bump", v, gas=90_000) for v in (1, LIMIT + 1, 2)]
    receipts = chain.writer.transact_many(chain.signers[5], reqs)
    assert [r.ok for r in receipts] == [True, False, True]
    assert receipts[1].error is not None and receipts[1].error.error == "ChainProbe.TooLarge"
    assert probe.call("total", chain.signers[5].address) == 3


def test_nonce_resync_after_another_writer_used_the_account(chain: Chain, probe, isolated):
    signer = chain.signers[6]
    probe.transact(signer, "bump", 1)  # primes our writer's nonce cache
    other = TransactionWriter(chain.backend, chain.decoder)
    other.transact(signer, probe.request("bump", 1))  # the chain's nonce moves on behind our back
    receipt = probe.transact(signer, "bump", 1)  # our cached nonce is now too low: re-sync, re-sign
    assert receipt.ok
    assert probe.call("total", signer.address) == 3


def test_idempotency_key_sends_one_transaction(chain: Chain, probe, isolated):
    signer = chain.signers[7]
    first = chain.writer.transact(signer, probe.request("bump", 9, key="order-17-assign"))
    again = chain.writer.transact(signer, probe.request("bump", 9, key="order-17-assign"))
    assert first.tx_hash == again.tx_hash
    assert probe.call("total", signer.address) == 9


def test_journal_survives_a_restart(chain: Chain, probe, isolated, tmp_path):
    signer = chain.signers[8]
    path = tmp_path / "journal.jsonl"
    w1 = TransactionWriter(chain.backend, chain.decoder, journal=IdempotencyJournal(path))
    r1 = w1.transact(signer, probe.request("bump", 4, key="lease-3-complete"))
    w2 = TransactionWriter(chain.backend, chain.decoder, journal=IdempotencyJournal(path))  # a restarted engine
    r2 = w2.transact(signer, probe.request("bump", 4, key="lease-3-complete"))
    assert r1.tx_hash == r2.tx_hash
    assert probe.call("total", signer.address) == 4


def test_unfunded_sender_gets_a_clear_error_without_its_key(chain: Chain, probe, isolated, caplog):
    poor = Signer(bytes.fromhex("11" * 32))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(InsufficientFunds) as info:
        probe.transact(poor, "bump", 1, gas=90_000)
    text = str(info.value) + repr(info.value) + caplog.text + repr(poor)
    assert poor.address in str(info.value) and "fund" in str(info.value)
    assert "11" * 32 not in text


def test_unknown_method_is_an_rpc_error(chain: Chain):
    with pytest.raises(RpcError):
        chain.backend.request("eth_noSuchMethod", [])


class _RetryingTransport:
    """A node seen through a transport that retries every batch once after losing the first
    answer (as an HTTP client does after a timeout): the first send lands, the caller only
    sees the node's answers to the resend ("already known" or "nonce too low")."""

    def __init__(self, backend):
        self._backend = backend

    def batch(self, calls):
        calls = list(calls)
        self._backend.batch(calls)
        return self._backend.batch(calls)

    def __getattr__(self, name):
        return getattr(self._backend, name)


def test_a_transport_retry_of_a_batch_that_landed_sends_nothing_twice(chain: Chain, probe, isolated):
    signer = chain.signers[8]
    writer = TransactionWriter(_RetryingTransport(chain.backend), chain.decoder)
    before = probe.call("total", signer.address)
    receipts = writer.transact_many(signer, [probe.request("bump", 1, gas=90_000) for _ in range(3)])
    assert all(r.ok for r in receipts)
    assert probe.call("total", signer.address) == before + 3  # not 6: no intent re-signed and re-sent


# -- the relay's limits (what the API's /rpc serves): refused before anything is allocated per item


def test_forward_refuses_a_batch_over_the_limit_in_bounded_memory(chain: Chain):
    numbers = list(range(1_000_000))  # the 2 MB batch of numbers that grew the market by 542 MiB
    tracemalloc.start()
    try:
        answer = chain.backend.forward(numbers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer["error"]["code"] == -32600 and answer["id"] is None
    assert f"longer than the {MAX_RPC_BATCH} accepted" in answer["error"]["message"]
    assert peak < 64 * 1024


def test_forward_answers_a_batch_at_the_limit(chain: Chain):
    batch = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId"} for i in range(MAX_RPC_BATCH)]
    answers = chain.backend.forward(batch)
    assert [a["id"] for a in answers] == list(range(MAX_RPC_BATCH))
    assert {a["result"] for a in answers} == {hex(chain.backend.chain_id)}
    over = chain.backend.forward(batch + [batch[0]])
    assert over["error"]["code"] == -32600


def _nested_request(depth: int) -> dict:
    params: list = []
    for _ in range(depth - 2):  # the request object is one level, the params list another
        params = [params]
    return {"jsonrpc": "2.0", "id": 7, "method": "eth_blockNumber", "params": params}


def test_forward_refuses_nesting_over_the_limit(chain: Chain):
    assert json_depth(_nested_request(MAX_JSON_DEPTH + 1)) == MAX_JSON_DEPTH + 1
    answer = chain.backend.forward(_nested_request(MAX_JSON_DEPTH + 1))
    assert answer["error"]["code"] == -32600 and "nested deeper" in answer["error"]["message"]
    at_limit = chain.backend.forward(_nested_request(MAX_JSON_DEPTH))
    assert at_limit["id"] == 7 and "nested deeper" not in str(at_limit.get("error"))  # the node's own answer


def test_forward_bytes_parses_within_the_limits(chain: Chain):
    backend = chain.backend
    deep = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert backend.forward_bytes(deep)["error"]["code"] == -32600  # once a segfault of the whole market
    assert backend.forward_bytes(b'{"jsonrpc": "2.0", "id": 1,')["error"]["code"] == -32700
    too_big = b'"' + b"x" * MAX_RPC_BODY_BYTES + b'"'
    assert backend.forward_bytes(too_big)["error"]["code"] == -32600
    ok = backend.forward_bytes(b'[{"jsonrpc":"2.0","id":"a","method":"eth_chainId"}]')
    assert ok == [{"jsonrpc": "2.0", "id": "a", "result": hex(backend.chain_id)}]
