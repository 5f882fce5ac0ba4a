"""The adjacency of one circuit: the three-way handshake of RFC 5303 and the hold timer.

A circuit is one TCP connection to one peer. Its adjacency is ``DOWN`` until a HELLO
arrives, ``INITIALIZING`` while only one side has heard the other, and ``UP`` once the
peer's HELLO names this node as the neighbour it has heard. Flooding runs only over
``UP`` adjacencies: an LSA sent before both ends agree could be lost in a half-open state.

Transitions on a received HELLO (RFC 5303 section 3.2; rows: our state, columns: theirs)::

                 DOWN           INITIALIZING    UP
    DOWN         INITIALIZING   UP              DOWN
    INITIALIZING INITIALIZING   UP              UP
    UP           INITIALIZING   UP (accept)     UP (accept)

plus: a HELLO that names another neighbour than us counts as DOWN, and a HELLO from a
different node id than the one we had heard restarts the handshake. The hold timer is the
*peer's* advertised hold time, restarted by every accepted HELLO; when it runs out, the
adjacency goes DOWN. The machine is pure: time comes in as ``now`` (seconds), and each
call returns the transition it made, if any, for the caller to act on.

Invariants: ``neighbor_id`` is set whenever the state is not DOWN; ``UP`` is only reached
from a HELLO that names ``my_id``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from marketplace.peering.wire import AdjState, Hello

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Transition:
    before: AdjState
    after: AdjState
    neighbor_id: int
    reason: str

    @property
    def went_up(self) -> bool:
        return self.after == AdjState.UP and self.before != AdjState.UP

    @property
    def went_down(self) -> bool:
        return self.before == AdjState.UP and self.after != AdjState.UP


_TABLE = {
    (AdjState.DOWN, AdjState.DOWN): AdjState.INITIALIZING,
    (AdjState.DOWN, AdjState.INITIALIZING): AdjState.UP,
    (AdjState.DOWN, AdjState.UP): AdjState.DOWN,
    (AdjState.INITIALIZING, AdjState.DOWN): AdjState.INITIALIZING,
    (AdjState.INITIALIZING, AdjState.INITIALIZING): AdjState.UP,
    (AdjState.INITIALIZING, AdjState.UP): AdjState.UP,
    (AdjState.UP, AdjState.DOWN): AdjState.INITIALIZING,
    (AdjState.UP, AdjState.INITIALIZING): AdjState.UP,
    (AdjState.UP, AdjState.UP): AdjState.UP,
}


class Adjacency:
    """The three-way state of one circuit. ``hold_ms`` is what *we* advertise."""

    __slots__ = ("my_id", "hold_ms", "state", "neighbor_id", "expires_at", "circuit")

    def __init__(self, my_id: int, hold_ms: int, circuit: str = "") -> None:
        if my_id <= 0:
            raise ValueError(f"node id must be positive, got {my_id}")
        self.my_id = my_id
        self.hold_ms = hold_ms
        self.state = AdjState.DOWN
        self.neighbor_id = 0
        self.expires_at: float | None = None
        self.circuit = circuit

    def hello(self) -> Hello:
        """The HELLO to send now: our id, hold time, state and the neighbour we have heard."""
        return Hello(self.my_id, self.hold_ms, self.state, self.neighbor_id)

    def _move(self, after: AdjState, neighbor: int, reason: str) -> Transition | None:
        before = self.state
        self.state = after
        self.neighbor_id = neighbor if after != AdjState.DOWN else 0
        if after == AdjState.DOWN:
            self.expires_at = None
        if before == after:
            return None
        log.info("circuit %s: adjacency with %d %s -> %s (%s)", self.circuit, neighbor, before.name,
                 after.name, reason)
        return Transition(before, after, neighbor, reason)

    def on_hello(self, hello: Hello, now: float) -> Transition | None:
        if hello.node_id == self.my_id:
            # our own HELLO looped back (a circuit to ourselves): never form an adjacency
            return self._move(AdjState.DOWN, hello.node_id, "looped hello")
        if self.state != AdjState.DOWN and hello.node_id != self.neighbor_id:
            # the peer behind this circuit changed identity: start over with the new one
            self._move(AdjState.DOWN, self.neighbor_id, f"neighbour id changed to {hello.node_id}")
        theirs = hello.state
        if theirs != AdjState.DOWN and hello.neighbor_id not in (0, self.my_id):
            theirs = AdjState.DOWN  # it has heard someone else: for us that is DOWN
        if theirs != AdjState.DOWN and hello.neighbor_id == 0:
            theirs = AdjState.DOWN
        after = _TABLE[(self.state, theirs)]
        if after != AdjState.DOWN:
            self.expires_at = now + hello.hold_ms / 1000.0
        return self._move(after, hello.node_id, f"hello {hello.state.name}")

    def on_timer(self, now: float) -> Transition | None:
        if self.expires_at is not None and now >= self.expires_at:
            return self._move(AdjState.DOWN, self.neighbor_id, "hold timer expired")
        return None

    def on_close(self) -> Transition | None:
        return self._move(AdjState.DOWN, self.neighbor_id, "connection closed")
