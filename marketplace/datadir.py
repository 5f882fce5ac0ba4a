"""The market's data directory: everything one ``cona up`` or ``cona serve`` keeps, held by one process.

``cona up`` keeps the whole market here (``--data-dir DIR``, else ``CONA_DATA_DIR``, else
``<project>/.cona``), so that a restart, after a clean stop or a kill -9, resumes it:

    cona.lock                 held (``flock``) by the process that runs the market here; its pid inside
    chain/                    the durable embedded chain: block log, checkpoint, its own LOCK
    deployments/<id>.json     the deployment record of each chain (the contracts' addresses and roles)
    engine/<chain id>/        the engine's state: event index, specs, batches, results, LSDB, journals
    demo/<name>/              each demo agent's home: keystore, passphrase, state (lease and writer journals)
    logs/                     the supervised children's logs
    index/                    the audit command's caches

Invariants:
- one process holds the directory at a time (``claim``); a second ``cona up`` or ``cona serve`` on
  it is refused with the holder's pid, whatever it asked for (``--fresh`` included);
- ``fresh`` removes only the entries named above, and only once the lock is held: never the
  directory itself, never a file it does not know (a mistaken ``--data-dir ~`` costs nothing);
- the lock dies with its process (a kill -9 included): a stale ``cona.lock`` blocks no one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from marketplace.chain.deploy import Deployment

from marketplace.errors import ConfigError

log = logging.getLogger(__name__)

LOCK_NAME = "cona.lock"
MARK_NAME = "market.json"
#: the entries ``fresh`` removes: the market's state and nothing else
MARKET_ENTRIES = ("chain", "deployments", "engine", "demo", "logs", "index")


class DataDirInUse(ConfigError):
    """Another process runs a market on this data directory."""

    code = "data-dir-in-use"


class DataDir:
    """One market's data directory (see the module docstring for the layout and the invariants)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()
        self._fd: int | None = None

    @property
    def chain_dir(self) -> Path:
        return self.path / "chain"

    @property
    def demo_dir(self) -> Path:
        return self.path / "demo"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    def engine_dir(self, chain_id: int) -> Path:
        return self.path / "engine" / str(chain_id)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def claim(self, *, fresh: bool = False) -> "DataDir":
        """Hold the directory for this process (creating it); with ``fresh``, then wipe the market's
        state in it. ``DataDirInUse`` if another process holds it."""
        if self._fd is not None:
            return self
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(f"the data directory {self.path} is in use by another market (pid {holder})",
                               field="data_dir",
                               hint="stop that `cona up`/`cona serve` first, or pass another --data-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        if fresh:
            self.wipe()
        return self

    def check_free(self) -> None:
        """Raise ``DataDirInUse`` now if another process holds the directory (a command checks this
        before its slow start; ``claim`` is still what holds it)."""
        if self._fd is None and (self.path / LOCK_NAME).exists():
            self.claim()
            self.release()

    def wipe(self) -> list[str]:
        """Remove the market's state (``MARKET_ENTRIES``) from the held directory; returns what went."""
        if self._fd is None:
            raise ConfigError(f"the data directory {self.path} must be held before it is wiped", field="data_dir")
        from marketplace.chain.durable import discard

        discard(self.chain_dir)  # refused (ChainError) while some other process has the chain open
        removed = []
        for name in MARKET_ENTRIES:
            entry = self.path / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.exists() or entry.is_symlink():
                entry.unlink()
            else:
                continue
            removed.append(name)
        log.info("data directory %s: started afresh (removed %s)", self.path, ", ".join(removed) or "nothing")
        return removed

    def release(self) -> None:
        """Let another process hold the directory. Idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def market_mark(dep: "Deployment") -> dict[str, Any]:
    """What a state directory records of the market it belongs to: the chain's genesis and the market."""
    return {"genesis": dep.genesis, "market": dep.contracts["ComputeMarket"]}


def claim_for_market(directory: Path, mark: dict[str, Any], *, fresh: bool = False, what: str = "state") -> bool:
    """Keep ``directory`` only if its ``market.json`` is ``mark`` (it belongs to this chain and market);
    else, or with ``fresh``, empty it first. Returns whether earlier state was kept."""
    path = directory / MARK_NAME
    kept = False
    if directory.exists():
        try:
            have = None if fresh else json.loads(path.read_text())
        except (OSError, ValueError):
            have = None
        if have == mark:
            kept = True
        else:
            if not fresh:
                log.warning("%s in %s belongs to another chain or market (%s); starting it afresh", what, directory,
                            have)
            shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not kept:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(mark))
        tmp.replace(path)
    return kept
