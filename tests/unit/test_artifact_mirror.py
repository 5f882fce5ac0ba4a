"""Artifacts across domains (``marketplace.federation.mirror``): what another domain's engine serves is
kept only when it hashes to the digest asked for and passes its kind's checks; a lying, absent or
unreachable engine is counted under its reason and leaves nothing behind.

The other engines are real HTTP servers on loopback that answer ``/v1/artifacts/{digest}`` and
``/info`` from a table: honestly, with other bytes than the digest names, or with bytes that are not
the kind they are claimed to be."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from marketplace.artifacts import ArtifactStore, Kind
from marketplace.chain.backends import free_port
from marketplace.federation.config import DEFAULT_TIMERS, DomainEntry, Federation
from marketplace.federation.mirror import ArtifactMirror
from marketplace.settings import PACKAGE_ROOT

pytestmark = pytest.mark.unit

FOX = b"the quick brown fox\njumps over the lazy dog\n"
OWNER = "0x" + "12" * 20


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Engine(ThreadingHTTPServer):
    """Another domain's engine's artifact routes: ``table`` maps a digest to (kinds, bytes served)."""

    def __init__(self, table: dict[str, tuple[list[str], bytes]]) -> None:
        self.table = table
        self.seen: list[tuple[str, str | None]] = []
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        server: Engine = self.server  # type: ignore[assignment]
        server.seen.append((self.path, self.headers.get("X-Cona-From-Domain")))
        name = self.path.removeprefix("/v1/artifacts/").removesuffix("/info")
        if name not in server.table:
            self.send_response(404)
            self.end_headers()
            return
        kinds, data = server.table[name]
        body = json.dumps({"digest": name, "kinds": kinds, "size": len(data), "owners": [OWNER]}).encode() \
            if self.path.endswith("/info") else data
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def world(tmp_path):
    engines = {2: Engine({}), 3: Engine({})}
    entries = {1: DomainEntry(1, f"http://127.0.0.1:{free_port()}", "127.0.0.1", free_port(), "0x" + "01" * 20)}
    entries.update({d: DomainEntry(d, e.api, "127.0.0.1", free_port(), "0x" + f"{d:02x}" * 20)
                    for d, e in engines.items()})
    fed = Federation(31337, "0x" + "ab" * 20, entries, ((1, 2, 1.0), (2, 3, 1.0)), dict(DEFAULT_TIMERS))
    store = ArtifactStore(tmp_path / "artifacts")
    mirror = ArtifactMirror(store, fed, 1)
    yield store, mirror, engines
    mirror.close()
    for e in engines.values():
        e.shutdown()
        e.server_close()


def test_an_artifact_another_engine_has_is_fetched_checked_and_kept(world):
    store, mirror, engines = world
    d = digest(FOX)
    engines[3].table[d] = (["data"], FOX)
    info = mirror.fetch(d, None, [2, 3])  # domain 2 has not got it: asked next
    assert info is not None and info.digest == d and info.kinds == ("data",) and info.owners == (OWNER,)
    assert store.path(d).read_bytes() == FOX
    assert dict(mirror.counters) == {"not-there": 1, "fetched": 1}
    # the other engines were told who asks: they answer from their own store only
    assert {who for e in engines.values() for _, who in e.seen} == {"1"}


def test_a_module_is_kept_as_the_kind_the_spec_needs_after_its_checks(world):
    store, mirror, engines = world
    module = (PACKAGE_ROOT / "provider_agent" / "workloads" / "src" / "examples" / "wordcount-c.wasm").read_bytes()
    d = digest(module)
    engines[2].table[d] = (["data"], module)  # the source's kinds do not matter when the spec names one
    mirror.for_refs([(d, "wasm")], 2)
    info = store.get(d)
    assert info is not None and info.kinds == ("wasm",) and "imports" in info.facts["wasm"]
    mirror.for_refs([(d, "wasm")], 2)  # already here: not asked again
    assert sum(path.endswith(d) for path, _ in engines[2].seen) == 1


def test_lying_absent_and_unreachable_engines_leave_nothing_behind(world, tmp_path):
    store, mirror, engines = world
    d = digest(FOX)
    engines[2].table[d] = (["data"], FOX + b"!")  # other bytes than the digest names
    not_wasm = digest(FOX + b"?")
    engines[3].table[not_wasm] = (["wasm"], FOX + b"?")  # bytes that are no module
    assert mirror.fetch(d, None, [2]) is None
    assert mirror.fetch(not_wasm, Kind.WASM, [3]) is None
    assert mirror.fetch(digest(b"nobody"), None, [2, 3]) is None
    engines[2].shutdown()
    engines[2].server_close()
    assert mirror.fetch(d, None, [2, 1, 4]) is None  # 2 is down; 1 is this engine and 4 no domain: skipped
    assert len(store) == 0 and not list(store.tmp.iterdir())
    assert mirror.counters == {"failed:artifact-rejected": 2, "not-there": 2, "failed:ConnectError": 1}
