"""The embedded chain's clock: block timestamps that never run ahead of the wall clock.

A block is stamped ``max(parent's timestamp, floor(wall clock) + offset)``: the wall clock, except
that time never goes backwards along the chain. Many blocks mined in one second share its
timestamp (anvil does the same; see docs/chain.md), so load cannot make chain time run fast, and an
idle chain's next block is stamped when it is mined, not when its parent was.

``offset`` is explicit development time travel (``evm_increaseTime``, ``evm_setNextBlockTimestamp``):
the only way chain time gets ahead of the wall clock, by exactly the seconds asked for. It is part
of the chain's state: a snapshot revert restores it, and the durable block log keeps it.

The wall clock is a parameter (``time.time`` by default), so tests drive time by hand instead of
sleeping.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable

from marketplace.errors import InputError


class ChainClock:
    """Wall clock plus a development offset, in whole seconds. Thread-safe."""

    def __init__(self, wall: Callable[[], float] = time.time, offset: int = 0) -> None:
        self.wall = wall
        self._offset = int(offset)
        self._lock = threading.Lock()

    @property
    def offset(self) -> int:
        return self._offset

    def now(self) -> int:
        """The chain's idea of the current second: the wall clock plus the offset."""
        return math.floor(self.wall()) + self._offset

    def stamp(self, parent_timestamp: int) -> int:
        """The timestamp for a block on top of a block stamped ``parent_timestamp``."""
        return max(int(parent_timestamp), self.now())

    def advance(self, seconds: int) -> int:
        """Move chain time forward by ``seconds`` (development only); returns the new offset."""
        if seconds < 0:
            raise InputError(f"time can only move forward, not by {seconds} s", field="seconds")
        with self._lock:
            self._offset += int(seconds)
            return self._offset

    def set_next(self, timestamp: int, latest: int) -> int:
        """Make the next block's timestamp ``timestamp`` (if mined within this second) and let time run
        on from there. Refused below the latest block's timestamp, as anvil refuses it."""
        if timestamp < latest:
            raise InputError(f"timestamp {timestamp} is lower than the latest block's {latest}", field="timestamp")
        with self._lock:
            self._offset = int(timestamp) - math.floor(self.wall())
            return self._offset

    def restore(self, offset: int) -> None:
        """Put back an offset kept with a snapshot or in the block log."""
        with self._lock:
            self._offset = int(offset)
