"""Contracts on a chain: ABI encoding, calls, transactions and event decoding.

``Chain`` bundles a backend, the transaction writer and the compiled artifacts:
it is what the rest of CONA holds to talk to contracts. ``BoundContract`` is a
deployed contract: ``call`` reads, ``transact``/``request`` write through the
writer, ``decode_logs`` turns receipt logs into ``Event`` values.

Encoding and decoding are pure functions of the ABI (eth_abi); only the
backend does I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import event_abi_to_log_topic, function_signature_to_4byte_selector, to_checksum_address

from marketplace.chain.backends import ChainBackend, open_backend
from marketplace.chain.compiler import Artifact, ensure_fresh, load_all_artifacts
from marketplace.chain.revert import RevertDecoder, canonical_type
from marketplace.chain.writer import IdempotencyJournal, Receipt, Signer, TransactionWriter, TxRequest, as_signer
from marketplace.errors import ArtifactError, ChainMismatch, InputError
from marketplace.settings import ConaSettings, ProjectConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """A decoded log: which contract and event, its arguments, and where it is on chain."""

    contract: str
    name: str
    args: dict[str, Any]
    address: str
    block_number: int
    tx_hash: str
    log_index: int


def _normalise(abi_type: str, value: Any) -> Any:
    if abi_type == "address":
        return to_checksum_address(value)
    if abi_type == "address[]":
        return [to_checksum_address(v) for v in value]
    return value


class ContractABI:
    """Pure ABI helpers for one contract: encode calls, decode results and events."""

    def __init__(self, name: str, abi: list[dict[str, Any]]) -> None:
        self.name = name
        self.abi = abi
        self.functions: dict[str, list[dict[str, Any]]] = {}
        self.events: dict[bytes, dict[str, Any]] = {}
        self.event_by_name: dict[str, dict[str, Any]] = {}
        self.constructor: dict[str, Any] | None = None
        for item in abi:
            kind = item.get("type")
            if kind == "function":
                self.functions.setdefault(item["name"], []).append(item)
            elif kind == "event":
                self.events[event_abi_to_log_topic(item)] = item
                self.event_by_name[item["name"]] = item
            elif kind == "constructor":
                self.constructor = item

    def function(self, name: str, nargs: int) -> dict[str, Any]:
        try:
            overloads = self.functions[name]
        except KeyError:
            raise InputError(f"{self.name} has no function {name}", field="function") from None
        for fn in overloads:
            if len(fn["inputs"]) == nargs:
                return fn
        raise InputError(f"{self.name}.{name} takes {len(overloads[0]['inputs'])} arguments, not {nargs}",
                         field="args")

    def encode_call(self, name: str, args: Sequence[Any]) -> bytes:
        fn = self.function(name, len(args))
        types = [canonical_type(i) for i in fn["inputs"]]
        selector = function_signature_to_4byte_selector(f"{name}({','.join(types)})")
        try:
            return selector + abi_encode(types, list(args))
        except Exception as exc:  # eth_abi's encoding errors: name the function and types
            raise InputError(f"cannot encode {self.name}.{name}({', '.join(types)}) with {args!r}: {exc}",
                             field="args") from None

    def decode_result(self, name: str, nargs: int, data: bytes) -> Any:
        fn = self.function(name, nargs)
        types = [canonical_type(o) for o in fn["outputs"]]
        values = abi_decode(types, data)
        values = tuple(_normalise(t, v) for t, v in zip(types, values))
        return values[0] if len(values) == 1 else values

    def encode_constructor(self, args: Sequence[Any]) -> bytes:
        inputs = self.constructor["inputs"] if self.constructor else []
        if len(inputs) != len(args):
            raise InputError(f"{self.name} constructor takes {len(inputs)} arguments, not {len(args)}", field="args")
        types = [canonical_type(i) for i in inputs]
        return abi_encode(types, list(args)) if types else b""

    def decode_log(self, log_: dict[str, Any]) -> Event | None:
        topics = [bytes.fromhex(t[2:]) if isinstance(t, str) else bytes(t) for t in log_.get("topics", [])]
        if not topics or topics[0] not in self.events:
            return None
        ev = self.events[topics[0]]
        indexed = [i for i in ev["inputs"] if i.get("indexed")]
        plain = [i for i in ev["inputs"] if not i.get("indexed")]
        data = log_.get("data") or "0x"
        data_b = bytes.fromhex(data[2:]) if isinstance(data, str) else bytes(data)
        args: dict[str, Any] = {}
        for inp, topic in zip(indexed, topics[1:]):
            t = canonical_type(inp)
            args[inp["name"]] = _normalise(t, abi_decode([t], topic)[0]) if t not in ("string", "bytes") else topic
        values = abi_decode([canonical_type(i) for i in plain], data_b)
        for inp, v in zip(plain, values):
            args[inp["name"]] = _normalise(canonical_type(inp), v)
        ordered = {i["name"]: args[i["name"]] for i in ev["inputs"]}
        return Event(
            contract=self.name,
            name=ev["name"],
            args=ordered,
            address=to_checksum_address(log_["address"]),
            block_number=_int(log_.get("blockNumber")),
            tx_hash=_hex(log_.get("transactionHash")),
            log_index=_int(log_.get("logIndex")),
        )

    def topic(self, event: str) -> str:
        try:
            return "0x" + event_abi_to_log_topic(self.event_by_name[event]).hex()
        except KeyError:
            raise InputError(f"{self.name} has no event {event}", field="event") from None


def _int(v: Any) -> int:
    if v is None:
        return -1
    return int(v, 16) if isinstance(v, str) else int(v)


def _hex(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else "0x" + bytes(v).hex()


class BoundContract:
    """A deployed contract at ``address``."""

    def __init__(self, chain: "Chain", abi: ContractABI, address: str) -> None:
        self.chain = chain
        self.abi = abi
        self.address = to_checksum_address(address)
        self.name = abi.name

    def __repr__(self) -> str:
        return f"<{self.name} at {self.address}>"

    def call(self, fn: str, *args: Any, sender: str | None = None, block: str = "latest") -> Any:
        data = self.abi.encode_call(fn, args)
        out = self.chain.writer.call(self.address, data, sender=sender, block=block, label=f"{self.name}.{fn}")
        return self.abi.decode_result(fn, len(args), out)

    def request(self, fn: str, *args: Any, value: int = 0, gas: int | None = None, key: str | None = None) -> TxRequest:
        return TxRequest(to=self.address, data=self.abi.encode_call(fn, args), value=value, gas=gas, key=key,
                         label=f"{self.name}.{fn}")

    def transact(self, sender: Any, fn: str, *args: Any, value: int = 0, gas: int | None = None,
                 key: str | None = None) -> Receipt:
        return self.chain.writer.transact(sender, self.request(fn, *args, value=value, gas=gas, key=key))

    def events(self, receipt: Receipt) -> list[Event]:
        return self.decode_logs(receipt.logs)

    def decode_logs(self, logs: Iterable[dict[str, Any]]) -> list[Event]:
        out = []
        for lg in logs:
            if to_checksum_address(lg["address"]) != self.address:
                continue
            ev = self.abi.decode_log(lg)
            if ev is not None:
                out.append(ev)
        return out

    def get_logs(self, from_block: int = 0, to_block: int | str = "latest", event: str | None = None) -> list[Event]:
        flt: dict[str, Any] = {
            "address": self.address,
            "fromBlock": hex(from_block),
            "toBlock": hex(to_block) if isinstance(to_block, int) else to_block,
        }
        if event:
            flt["topics"] = [self.abi.topic(event)]
        return self.decode_logs(self.chain.backend.request("eth_getLogs", [flt]))


class Chain:
    """A backend, its writer, and the compiled contracts: CONA's handle on one chain."""

    def __init__(self, backend: ChainBackend, project: ProjectConfig, *, journal: IdempotencyJournal | None = None,
                 check_artifacts: bool = True) -> None:
        self.backend = backend
        self.project = project
        if check_artifacts:
            ensure_fresh(project)
        self.artifacts: dict[str, Artifact] = load_all_artifacts(project)
        self.abis = {name: ContractABI(name, a.abi) for name, a in self.artifacts.items()}
        self.decoder = RevertDecoder.from_abis((n, a.abi) for n, a in self.artifacts.items())
        self.writer = TransactionWriter(backend, self.decoder, journal=journal)

    @classmethod
    def open(cls, settings: ConaSettings, *, keys: Sequence[str | bytes] = (), journal_path: Path | None = None,
             data_dir: Path | None = None) -> "Chain":
        """The chain ``settings`` name; ``keys`` sign on a node, ``data_dir`` keeps an embedded chain."""
        project = settings.project()
        net = project.network(settings.chain) if settings.chain in project.networks else {}
        backend = open_backend(
            settings.chain,
            root=settings.root,
            mnemonic=project.mnemonic,
            accounts=project.dev_account_count,
            rpc_url=settings.rpc_url or net.get("url"),
            chain_id=settings.chain_id,
            keys=keys,
            data_dir=data_dir,
        )
        try:
            return cls(backend, project, journal=IdempotencyJournal(journal_path) if journal_path else None)
        except Exception:
            backend.close()
            raise

    @property
    def signers(self) -> list[Signer]:
        return [as_signer(a) for a in self.backend.accounts]

    def _abi(self, name: str) -> ContractABI:
        try:
            return self.abis[name]
        except KeyError:
            raise ArtifactError(f"no compiled contract named {name}",
                                hint=f"known: {', '.join(sorted(self.abis))}") from None

    def deploy(self, name: str, *args: Any, sender: Any = None, value: int = 0, gas: int | None = None) -> BoundContract:
        abi = self._abi(name)
        art = self.artifacts[name]
        if art.bytecode in ("0x", ""):
            raise ArtifactError(f"{name} is abstract or an interface: it has no bytecode to deploy")
        data = bytes.fromhex(art.bytecode[2:]) + abi.encode_constructor(args)
        signer = as_signer(sender if sender is not None else self.backend.accounts[0])
        rec = self.writer.transact(signer, TxRequest(to=None, data=data, value=value, gas=gas, label=f"deploy {name}"))
        assert rec.contract_address is not None
        log.info("deployed %s at %s (gas %d)", name, rec.contract_address, rec.gas_used)
        return BoundContract(self, abi, rec.contract_address)

    def at(self, name: str, address: str) -> BoundContract:
        abi = self._abi(name)
        code = self.backend.request("eth_getCode", [address, "latest"])
        if code in ("0x", "", None):
            raise ChainMismatch(f"no contract code at {address} on {self.backend.describe()}",
                                hint=f"deploy {name} first (`cona deploy`) or check the address")
        return BoundContract(self, abi, address)

    def close(self) -> None:
        self.backend.close()
