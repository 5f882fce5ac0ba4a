"""A CONA engine peer process: TCP circuits to its neighbours, flooding, ageing, a control socket.

    python -m marketplace.peering.node --id 1 --listen 7001 --neighbor 127.0.0.1:7002 \\
        [--originate-from lsas.json] [--control /tmp/peer1.sock] [--max-age 3600 ...]

One ``PeerNode`` owns one LSDB and drives the pure parts (``Adjacency`` per circuit,
``Flooder``) from asyncio: a reader task per circuit, a HELLO task per circuit, one pump
task that sends whatever the flooder says is due, one timer task for LSDB ageing and for
refreshing the LSAs this peer originates, and one dialer task per configured neighbour.

Circuits. Each TCP connection is a point-to-point circuit with its own three-way
adjacency. Peers accept connections from anyone and dial the neighbours they are given, so
two peers that list each other end up with two circuits; once the HELLOs show it, both keep
the circuit dialled by the lower node id and close the other (both sides apply the same
rule, so they agree without talking). A dialer that loses its circuit, or cannot connect,
retries with exponential backoff (``backoff_initial`` doubling to ``backoff_max``, with
jitter so restarted peers do not reconnect in lockstep); the backoff resets after a circuit
that stayed up longer than the hold time.

A circuit whose byte stream stops parsing (``FrameError``) is closed and counted; a bad LSA
inside a good frame is the LSDB's business (rejected with a reason, counted, logged).

An engine embeds a ``PeerNode`` (``marketplace.federation.link``) and passes a ``PeerListener``:
it hears of every LSA installed from a neighbour (to check it against the registry and match
on it), of adjacencies coming up and going down, and of the inter-domain messages
(``DomainOpen``, ``DomainUpdate``), which flooding does not handle; it hands the node the LSAs
its providers post (``inject``) and the UPDATEs to send (``send_to``), both from other threads
through ``call_soon_threadsafe``. ``allowed_peers``, when set, limits who may form an
adjacency: a HELLO from another id closes the circuit (``refused_peer``).

The control socket (a Unix socket, one JSON object per line each way) answers
``{"cmd": "status"}`` with the LSDB size and digest, counters and adjacencies, and
``{"cmd": "originate", "file": PATH}`` by originating the LSAs that file describes.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from marketplace.convergence.lsa import decode_header
from marketplace.convergence.lsdb import Outcome
from marketplace.peering.adjacency import Adjacency, Transition
from marketplace.peering.db import LsdbView, open_lsdb
from marketplace.peering.errors import FrameError, PeeringConfigError
from marketplace.peering.flooding import Flooder
from marketplace.peering.originate import Originations, load_file
from marketplace.peering.wire import AdjState, DomainOpen, DomainUpdate, FrameDecoder, Hello, Message, encode_frame

log = logging.getLogger(__name__)

#: LSAs signed per event-loop turn when originating a file: small enough that the first
#: ones are on the wire while the rest are still being signed
ORIGINATE_BATCH = 25


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """Every knob of a peer. Defaults are IS-IS-like; tests shrink them to sub-second."""

    node_id: int
    listen_port: int
    listen_host: str = "127.0.0.1"
    neighbors: tuple[tuple[str, int], ...] = ()
    control_path: str | None = None
    originate_from: Path | None = None
    hello_interval: float = 3.0
    hold_time: float = 10.0
    retransmit_interval: float = 5.0
    csnp_interval: float = 10.0
    tick_interval: float = 1.0
    max_age: int = 3600
    zero_age_lifetime: int = 60
    min_arrival_interval: float = 1.0
    refresh_interval: float = 900.0
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    #: node ids that may form an adjacency with this one (empty: anyone)
    allowed_peers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.node_id <= 0 or self.node_id > 0xFFFFFFFF:
            raise PeeringConfigError(f"node id must be within 1..2^32-1, got {self.node_id}", field="id")
        if self.hold_time <= self.hello_interval:
            raise PeeringConfigError(
                f"hold time {self.hold_time}s must exceed the hello interval {self.hello_interval}s",
                hint="IS-IS uses hold = 3 x hello", field="hold_time")
        if self.refresh_interval >= self.max_age:
            raise PeeringConfigError(
                f"refresh interval {self.refresh_interval}s must be below max age {self.max_age}s, "
                "or the LSAs this peer originates would age out between refreshes", field="refresh_interval")


class PeerListener(Protocol):
    """What an embedding engine hears from its node (called on the node's event loop thread)."""

    def lsa_installed(self, raw: bytes) -> None: ...
    def adjacency_up(self, peer_id: int, circuit: str) -> None: ...
    def adjacency_down(self, peer_id: int, circuit: str) -> None: ...
    def domain_message(self, peer_id: int, circuit: str, msg: DomainOpen | DomainUpdate) -> None: ...


@dataclass(eq=False)
class Circuit:
    name: str
    writer: asyncio.StreamWriter
    adjacency: Adjacency
    dialed: bool
    tasks: list[asyncio.Task] = field(default_factory=list)
    closing: bool = False
    #: the last node id heard in a HELLO here (kept after the adjacency is torn down)
    heard: int = 0

    def send(self, messages: list[Message]) -> None:
        if self.closing or self.writer.is_closing():
            return
        self.writer.write(b"".join(encode_frame(m) for m in messages))

    def close(self) -> None:
        self.closing = True
        self.writer.close()


class PeerNode:
    def __init__(self, config: PeerConfig, *, clock=time.monotonic, listener: PeerListener | None = None) -> None:
        self.config = config
        self.clock = clock
        self.listener = listener
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lsdb = open_lsdb(config, clock)
        self.view = LsdbView(self.lsdb)
        self.flooder = Flooder(self.view, self.lsdb, config.node_id,
                               retransmit_interval=config.retransmit_interval, csnp_interval=config.csnp_interval)
        self.originations = Originations(max_age=config.max_age, zero_age_lifetime=config.zero_age_lifetime,
                                         refresh_interval=config.refresh_interval,
                                         retry_interval=max(config.min_arrival_interval, config.tick_interval),
                                         clock=clock)
        self.circuits: dict[str, Circuit] = {}
        self._ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._servers: list[asyncio.AbstractServer] = []
        self.counters = self.flooder.counters

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        self.loop = asyncio.get_running_loop()
        self._servers.append(await asyncio.start_server(self._accepted, cfg.listen_host, cfg.listen_port,
                                                        reuse_address=True))
        if cfg.control_path:
            try:
                os.unlink(cfg.control_path)
            except FileNotFoundError:
                pass
            self._servers.append(await asyncio.start_unix_server(self._control, cfg.control_path))
        self._tasks.append(asyncio.create_task(self._pump(), name="pump"))
        if cfg.originate_from is not None:
            await self.originate_file(cfg.originate_from)
        self._tasks.append(asyncio.create_task(self._timers(), name="timers"))
        for host, port in cfg.neighbors:
            self._tasks.append(asyncio.create_task(self._dial(host, port), name=f"dial {host}:{port}"))
        log.info("node %d listening on %s:%d, %d neighbour(s) to dial", cfg.node_id, cfg.listen_host,
                 cfg.listen_port, len(cfg.neighbors))

    async def run(self) -> None:
        await self.start()
        await self._stop.wait()
        await self.close()

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for circuit in list(self.circuits.values()):
            circuit.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.config.control_path:
            try:
                os.unlink(self.config.control_path)
            except FileNotFoundError:
                pass

    # -- origination -------------------------------------------------------------------------
    async def originate_file(self, path: Path) -> int:
        """Originate every LSA the file describes, in batches, so flooding starts with the first."""
        originations = load_file(path)
        for i in range(0, len(originations), ORIGINATE_BATCH):
            for raw in self.originations.add(originations[i:i + ORIGINATE_BATCH]):
                self._originate(raw)
            self._wake.set()
            await asyncio.sleep(0)  # let the pump send this batch while the next is signed
        log.info("node %d originated %d LSA(s) from %s", self.config.node_id, len(originations), path)
        return len(originations)

    def _originate(self, raw: bytes) -> None:
        result = self.flooder.originate(raw)
        if result.outcome is Outcome.TOO_SOON:
            self.originations.refused(decode_header(raw).originator)

    # -- an embedding engine's calls (from its threads) ----------------------------------------
    def inject(self, raw: bytes) -> None:
        """Flood an LSA a provider handed to the engine (thread-safe; a no-op before ``start``)."""
        self._call(self._inject, bytes(raw))

    def _inject(self, raw: bytes) -> None:
        result = self.flooder.originate(raw)
        if result.outcome is Outcome.INSTALLED:
            self.counters["injected"] += 1
            self._wake.set()

    def send_to(self, circuit: str, messages: list[Message]) -> None:
        """Send messages on one circuit (thread-safe; dropped if the circuit is gone)."""
        self._call(self._send_to, circuit, list(messages))

    def _send_to(self, circuit: str, messages: list[Message]) -> None:
        c = self.circuits.get(circuit)
        if c is not None and c.adjacency.state == AdjState.UP:
            c.send(messages)

    def close_circuit(self, circuit: str, reason: str) -> None:
        """Drop one circuit (thread-safe): its adjacency goes down, the dialer redials later."""
        self._call(self._close_circuit, circuit, reason)

    def _close_circuit(self, circuit: str, reason: str) -> None:
        c = self.circuits.get(circuit)
        if c is None or c.closing:
            return
        log.warning("node %d: closing circuit %s (peer %d): %s", self.config.node_id, circuit,
                    c.adjacency.neighbor_id, reason)
        self._transition(c, c.adjacency.on_close())
        c.close()

    def _call(self, fn, *args) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed between the check and the call
            pass

    # -- circuits ----------------------------------------------------------------------------
    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(reader, writer, dialed=False)

    async def _dial(self, host: str, port: int) -> None:
        cfg = self.config
        delay = cfg.backoff_initial
        peer_id = 0  # learnt from the first HELLO on a circuit we dialled there
        while True:
            if peer_id and self._up_with(peer_id):
                # already adjacent over a circuit the peer dialled (and kept, by the lower-id
                # rule): dialling again would only make a duplicate to be closed
                await asyncio.sleep(cfg.hold_time)
                continue
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError as exc:
                log.debug("node %d: dial %s:%d failed: %s", cfg.node_id, host, port, exc)
                self.counters["dial_failed"] += 1
            else:
                began = self.clock()
                peer_id = await self._serve(reader, writer, dialed=True) or peer_id
                if self.clock() - began > cfg.hold_time:
                    delay = cfg.backoff_initial
            # jitter in [delay/2, delay] so peers restarted together do not redial in lockstep
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, cfg.backoff_max)

    def _up_with(self, peer_id: int) -> bool:
        return any(c.adjacency.neighbor_id == peer_id and c.adjacency.state == AdjState.UP and not c.closing
                   for c in self.circuits.values())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, dialed: bool) -> int:
        """Run one circuit until it closes; return the id of the peer heard on it (0: none)."""
        name = f"{'out' if dialed else 'in'}{next(self._ids)}"
        adjacency = Adjacency(self.config.node_id, int(self.config.hold_time * 1000), circuit=name)
        circuit = Circuit(name, writer, adjacency, dialed)
        self.circuits[name] = circuit
        circuit.tasks.append(asyncio.create_task(self._hellos(circuit), name=f"hello {name}"))
        decoder = FrameDecoder()
        try:
            while not circuit.closing:
                data = await reader.read(1 << 16)
                if not data:
                    break
                for msg in decoder.feed(data):
                    self._on_message(circuit, msg)
        except FrameError as exc:
            self.counters["frame_errors"] += 1
            log.warning("node %d: circuit %s (peer %d) closed: %s", self.config.node_id, name,
                        adjacency.neighbor_id, exc)
        except (ConnectionError, OSError) as exc:
            log.info("node %d: circuit %s lost: %s", self.config.node_id, name, exc)
        except Exception:  # a bug must cost one circuit, not the peer
            self.counters["circuit_errors"] += 1
            log.exception("node %d: circuit %s (peer %d) failed", self.config.node_id, name, adjacency.neighbor_id)
        finally:
            for task in circuit.tasks:
                task.cancel()
            self.circuits.pop(name, None)
            self._transition(circuit, adjacency.on_close())
            circuit.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        return circuit.heard

    async def _hellos(self, circuit: Circuit) -> None:
        while True:
            circuit.send([circuit.adjacency.hello()])
            await asyncio.sleep(self.config.hello_interval)
            t = circuit.adjacency.on_timer(self.clock())
            if t is not None:
                self._transition(circuit, t)
                circuit.close()  # the peer went silent: drop the TCP connection, the dialer redials
                return

    def _on_message(self, circuit: Circuit, msg: Message) -> None:
        if circuit.closing:
            return
        now = self.clock()
        if isinstance(msg, Hello):
            allowed = self.config.allowed_peers
            if allowed and msg.node_id not in allowed:
                self.counters["refused_peer"] += 1
                log.warning("node %d: circuit %s: HELLO from node %d, which is not a configured peer; closing",
                            self.config.node_id, circuit.name, msg.node_id)
                circuit.close()
                return
            circuit.heard = msg.node_id
            before = circuit.adjacency.state
            t = circuit.adjacency.on_hello(msg, now)
            self._transition(circuit, t)
            if circuit.adjacency.state != AdjState.DOWN:
                self._drop_duplicate(circuit)
            if circuit.adjacency.state != before:
                circuit.send([circuit.adjacency.hello()])  # answer at once: the handshake needs our view
            return
        if circuit.adjacency.state != AdjState.UP:
            self.counters["ignored_not_up"] += 1
            return
        if isinstance(msg, (DomainOpen, DomainUpdate)):
            self.counters["rx_domain"] += 1
            if self.listener is None:
                self.counters["ignored_domain"] += 1
            else:
                self.listener.domain_message(circuit.adjacency.neighbor_id, circuit.name, msg)
            return
        result = self.flooder.receive(circuit.name, msg, now)
        if result is not None and result.outcome is Outcome.INSTALLED and self.listener is not None \
                and result.lsa is not None:
            self.listener.lsa_installed(self.view.raw_now(result.lsa.key) or result.lsa.raw)
        if result is not None and result.outcome is Outcome.INSTALLED and self.originations.owns(result.lsa.key):
            # someone holds a newer instance of an LSA we originate (our previous life's, or
            # its purge): outbid it, or the network would keep the stale one
            raw = self.originations.heard(result.lsa.header)
            if raw is not None:
                self._originate(raw)
        self._wake.set()

    def _transition(self, circuit: Circuit, t: Transition | None) -> None:
        if t is None:
            return
        if t.went_up:
            self.flooder.adjacency_up(circuit.name, t.neighbor_id, self.clock())
            self._wake.set()
            if self.listener is not None:
                self.listener.adjacency_up(t.neighbor_id, circuit.name)
        elif t.went_down:
            self.flooder.adjacency_down(circuit.name)
            if self.listener is not None:
                self.listener.adjacency_down(t.neighbor_id or circuit.heard, circuit.name)

    def _drop_duplicate(self, circuit: Circuit) -> None:
        peer = circuit.adjacency.neighbor_id
        for other in list(self.circuits.values()):
            if other is circuit or other.closing or other.adjacency.neighbor_id != peer:
                continue
            if other.adjacency.state == AdjState.DOWN:
                continue
            # keep the circuit dialled by the lower id; between two in the same direction, the newer
            keep_dialed = self.config.node_id < peer
            if circuit.dialed == other.dialed:
                loser = other
            else:
                loser = other if circuit.dialed == keep_dialed else circuit
            log.info("node %d: two circuits to %d (%s, %s); closing %s", self.config.node_id, peer,
                     circuit.name, other.name, loser.name)
            self.counters["duplicate_circuits"] += 1
            self._transition(loser, loser.adjacency.on_close())
            loser.close()

    # -- timers ------------------------------------------------------------------------------
    async def _pump(self) -> None:
        while True:
            deadline = self.flooder.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            if timeout is None or timeout > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
            self._wake.clear()
            try:
                out = self.flooder.poll(self.clock())
            except Exception:  # keep flooding alive; the failure is logged with the node id
                self.counters["pump_errors"] += 1
                log.exception("node %d: flooding round failed", self.config.node_id)
                await asyncio.sleep(self.config.tick_interval)
                continue
            by_circuit: dict[str, list[Message]] = {}
            for name, msg in out:
                by_circuit.setdefault(name, []).append(msg)
            for name, messages in by_circuit.items():
                circuit = self.circuits.get(name)
                if circuit is not None:
                    circuit.send(messages)
            for name in by_circuit:
                circuit = self.circuits.get(name)
                if circuit is not None and not circuit.closing:
                    try:
                        await circuit.writer.drain()
                    except (ConnectionError, OSError):
                        circuit.close()
            await asyncio.sleep(0)  # let readers run between rounds

    async def _timers(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_interval)
            try:
                if self.flooder.age():
                    self._wake.set()
                for raw in self.originations.due():
                    self._originate(raw)
                    self._wake.set()
            except Exception:  # ageing must go on next tick whatever one tick hit
                self.counters["timer_errors"] += 1
                log.exception("node %d: ageing or refresh failed", self.config.node_id)

    # -- control -----------------------------------------------------------------------------
    def status(self) -> dict:
        return {
            "id": self.config.node_id,
            "size": len(self.lsdb),
            "digest": self.lsdb.digest().hex(),
            "pending": self.flooder.pending(),
            "counters": dict(self.counters),
            "rejected": dict(self.flooder.rejected),
            "lsdb_rejected": dict(self.lsdb.rejected),
            "originated": len(self.originations),
            "adjacencies": {c.name: {"peer": c.adjacency.neighbor_id, "state": c.adjacency.state.name}
                            for c in self.circuits.values()},
            "neighbours_up": sorted(nb.peer_id for nb in self.flooder.neighbours.values()),
        }

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    cmd = request.get("cmd")
                    if cmd == "status":
                        reply = self.status()
                    elif cmd == "originate":
                        reply = {"originated": await self.originate_file(Path(request["file"]))}
                    elif cmd == "stop":
                        reply = {"stopping": True}
                        self.stop()
                    else:
                        reply = {"error": f"unknown command {cmd!r}", "commands": ["status", "originate", "stop"]}
                except Exception as exc:  # a bad control request must not take the peer down
                    reply = {"error": str(exc), "type": type(exc).__name__}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


def _neighbor(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"neighbour must be HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m marketplace.peering.node", description=__doc__.split("\n")[0])
    p.add_argument("--id", type=int, required=True, help="this peer's node id (1..2^32-1)")
    p.add_argument("--listen", type=int, required=True, help="TCP port on --host to accept circuits on")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--neighbor", type=_neighbor, action="append", default=[], help="HOST:PORT to dial (repeat)")
    p.add_argument("--originate-from", type=Path, help="JSON file of LSAs this peer originates and refreshes")
    p.add_argument("--control", help="Unix socket path for the JSON-lines control interface")
    for name, kind in (("hello-interval", float), ("hold-time", float), ("retransmit-interval", float),
                       ("csnp-interval", float), ("tick-interval", float), ("max-age", int),
                       ("zero-age-lifetime", int), ("min-arrival-interval", float), ("refresh-interval", float),
                       ("backoff-initial", float), ("backoff-max", float)):
        p.add_argument(f"--{name}", type=kind)
    p.add_argument("--log-level", default="INFO")
    return p


def config_from_args(args: argparse.Namespace) -> PeerConfig:
    knobs = {name.replace("-", "_"): getattr(args, name.replace("-", "_"))
             for name in ("hello-interval", "hold-time", "retransmit-interval", "csnp-interval", "tick-interval",
                          "max-age", "zero-age-lifetime", "min-arrival-interval", "refresh-interval",
                          "backoff-initial", "backoff-max")}
    return PeerConfig(node_id=args.id, listen_port=args.listen, listen_host=args.host,
                      neighbors=tuple(args.neighbor), control_path=args.control, originate_from=args.originate_from,
                      **{k: v for k, v in knobs.items() if v is not None})


def parse_args(argv: list[str] | None = None) -> PeerConfig:
    return config_from_args(build_parser().parse_args(argv))


async def _main(config: PeerConfig) -> None:
    node = PeerNode(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.stop)
    await node.run()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except PeeringConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s peer{args.id} %(levelname)s %(name)s: %(message)s")
    asyncio.run(_main(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
