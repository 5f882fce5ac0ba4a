"""``python -m bench.durable``: what it costs to keep the embedded chain on disk, and what anvil's
``--state`` keeps across a kill -9 (the figures behind the choice in docs/chain.md).

Workload: ``ChainProbe.bump(1)`` (a storage write and an event), one transaction per block.

- ``durable_append_ms``: the block log's work per block when each block is its own append (read
  the block, RLP-encode it, write, ``fdatasync``), mean over the run;
- ``tx_ms_memory``, ``tx_ms_durable``: one transaction through the writer (estimate, sign, send,
  mined, receipt), in memory and with a data directory, median;
- ``batch_tx_ms_durable``: per transaction in JSON-RPC batches of 100 (one append, one fsync, per batch);
- ``replay_ms_per_block``, ``replay_s``: start-up of a chain of ``replay_blocks`` blocks without a
  checkpoint (every block re-executed and validated by py-evm), as after a crash before the first one;
- ``checkpoint_write_s``, ``checkpoint_mib``: one checkpoint of the head (copy, write, fsync);
  ``start_from_checkpoint_s``:
  the start that loads it (nothing re-executed); ``log_kib``: the block log's size;
- ``anvil_state_*``: anvil with ``--state FILE --state-interval 1`` (the shortest interval), sent
  transactions one at a time for 5 s (``anvil_state_sent`` confirmed), killed with SIGKILL right
  after the last confirmation and restarted on the file: how many of them, and of their logs, came
  back; ``anvil_state_file_kib`` is the size of the last dump (the whole state, rewritten each interval);
- ``order_to_lease_ms_p50_durable``, ``order_to_lease_ms_p99_durable``: ``bench.lease``'s order to
  lease on a durable embedded chain (``cona bench match`` reports it in memory).
"""

from __future__ import annotations

import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import lease
from bench.stats import rnd
from marketplace.chain.backends import AnvilBackend, EmbeddedBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.durable import CHECKPOINT_NAME, LOG_NAME
from marketplace.settings import PACKAGE_ROOT, ProjectConfig

GAS = 90_000


def _one_at_a_time(chain: Chain, probe, n: int) -> list[float]:
    signer, out = chain.signers[1], []
    for _ in range(n):
        t0 = time.perf_counter()
        chain.writer.transact(signer, probe.request("bump", 1, gas=GAS))
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _embedded(project: ProjectConfig, tmp: Path, n: int, replay_blocks: int) -> dict:
    memory = Chain(EmbeddedBackend(project.mnemonic, 4), project)
    try:
        tx_memory = statistics.median(_one_at_a_time(memory, memory.deploy("ChainProbe", 100), n))
    finally:
        memory.close()
    data_dir = tmp / "chain"
    durable = Chain(EmbeddedBackend(project.mnemonic, 4, data_dir=data_dir), project)
    try:
        probe = durable.deploy("ChainProbe", 100)
        journal = durable.backend.journal
        before_s, before_n = journal.append_seconds, journal.appends
        tx_durable = statistics.median(_one_at_a_time(durable, probe, n))
        append_ms = (journal.append_seconds - before_s) / (journal.appends - before_n) * 1000
        t0 = time.perf_counter()
        for _ in range(max(1, n // 100)):
            durable.writer.transact_many(durable.signers[2], [probe.request("bump", 1, gas=GAS) for _ in range(100)])
        batch_ms = (time.perf_counter() - t0) * 1000 / (max(1, n // 100) * 100)
        while durable.backend.block_number() < replay_blocks:
            durable.writer.transact_many(durable.signers[3], [probe.request("bump", 1, gas=GAS) for _ in range(100)])
        blocks = durable.backend.block_number()
        durable.backend.journal.checkpoint(wait=True)  # the periodic one, if it is still being written
        t0 = time.perf_counter()
        durable.backend.journal.checkpoint(wait=True)
        checkpoint_s = time.perf_counter() - t0
    finally:
        durable.close()
    checkpoint_mib = (data_dir / CHECKPOINT_NAME).stat().st_size / 2**20
    t0 = time.perf_counter()
    EmbeddedBackend(project.mnemonic, 4, data_dir=data_dir).close()  # the checkpoint is at the head
    start_checkpointed_s = time.perf_counter() - t0
    (data_dir / CHECKPOINT_NAME).unlink()  # as after a crash before the first checkpoint
    t0 = time.perf_counter()
    replayed = EmbeddedBackend(project.mnemonic, 4, data_dir=data_dir)
    replay_s = time.perf_counter() - t0
    replayed.close()
    return {"durable_append_ms": rnd(append_ms), "tx_ms_memory": rnd(tx_memory), "tx_ms_durable": rnd(tx_durable),
            "batch_tx_ms_durable": rnd(batch_ms), "replay_blocks": blocks, "replay_s": rnd(replay_s),
            "replay_ms_per_block": rnd(replay_s * 1000 / blocks), "checkpoint_write_s": rnd(checkpoint_s),
            "checkpoint_mib": rnd(checkpoint_mib), "start_from_checkpoint_s": rnd(start_checkpointed_s),
            "log_kib": rnd((data_dir / LOG_NAME).stat().st_size / 1024)}


def _anvil_state(project: ProjectConfig, tmp: Path, seconds: float) -> dict:
    state = tmp / "anvil-state.json"
    args = ["--state", str(state), "--state-interval", "1"]
    node = AnvilBackend(project.root, project.mnemonic, accounts=4, extra_args=args)
    try:
        chain = Chain(node, project)
        probe = chain.deploy("ChainProbe", 100)
        time.sleep(1.5)  # the deployment is in a dump
        sent, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            sent.append(chain.writer.transact(chain.signers[1], probe.request("bump", 1, gas=GAS)))
        node.process.send_signal(signal.SIGKILL)  # right after the last confirmation, as a crash would
        node.process.wait(timeout=10)
    finally:
        node.close()
    dump_kib = state.stat().st_size / 1024 if state.exists() else 0.0
    again = AnvilBackend(project.root, project.mnemonic, accounts=4, extra_args=["--load-state", str(state)])
    try:
        kept = sum(again.request("eth_getTransactionReceipt", [r.tx_hash]) is not None for r in sent)
        logs = again.request("eth_getLogs", [{"fromBlock": "0x0", "address": probe.address}])
    finally:
        again.close()
    return {"anvil_state_sent": len(sent), "anvil_state_kept": kept, "anvil_state_logs_kept": len(logs),
            "anvil_state_file_kib": rnd(dump_kib)}


def run(quick: bool = False) -> dict:
    project = ProjectConfig.load(PACKAGE_ROOT)
    n = 10 if quick else 300
    with tempfile.TemporaryDirectory() as tmp:
        out = _embedded(project, Path(tmp), n, 40 if quick else 2000)
        out.update(_anvil_state(project, Path(tmp), 0.5 if quick else 5.0))
        leases = lease.run(quick, chain_dir=Path(tmp) / "lease-chain")
        out["order_to_lease_ms_p50_durable"] = leases["order_to_lease_ms_p50"]
        out["order_to_lease_ms_p99_durable"] = leases["order_to_lease_ms_p99"]
    return out


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
