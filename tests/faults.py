"""Faults the tests inject into this process: a file system that runs out of room."""

from __future__ import annotations

import contextlib
import resource
import signal
from typing import Iterator


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """RLIMIT_FSIZE for this process, with SIGXFSZ ignored so a write past ``limit`` fails with EFBIG
    (a full disk, as the writer sees it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
