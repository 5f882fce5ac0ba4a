"""Shared fixtures: the project config, one chain per backend per session, and per-test isolation.

Chains are expensive to start and contracts expensive to deploy, so each backend is
started once per session (``chain_backend``), and every test that touches a chain
runs between a snapshot and a revert (``isolated``), as ape's ``_isolation`` does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from marketplace.chain.backends import AnvilBackend, ChainBackend, EmbeddedBackend, RpcBackend
from marketplace.chain.contracts import Chain
from marketplace.settings import ProjectConfig

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["embedded", "anvil", "rpc"]


@pytest.fixture(scope="session")
def project() -> ProjectConfig:
    return ProjectConfig.load(ROOT)


class _NodeBehindRpc(RpcBackend):
    """The ``rpc`` backend as a user would run it: a plain JSON-RPC URL and private keys.

    The node behind the URL is an anvil process this fixture owns; CONA talks to it only
    through ``RpcBackend`` (no process management, no dev-account knowledge).
    """

    def __init__(self, project: ProjectConfig) -> None:
        self._node = AnvilBackend(project.root, project.mnemonic, accounts=10)
        super().__init__(self._node.url, keys=[a.key.hex() for a in self._node.accounts], expected_chain_id=31337)

    def close(self) -> None:
        super().close()
        self._node.close()


def _open(kind: str, project: ProjectConfig) -> ChainBackend:
    if kind == "embedded":
        return EmbeddedBackend(project.mnemonic, 10)
    if kind == "anvil":
        return AnvilBackend(project.root, project.mnemonic, accounts=10)
    return _NodeBehindRpc(project)


_chains: dict[str, Chain] = {}


@pytest.fixture(scope="session", params=BACKENDS)
def chain(request: pytest.FixtureRequest, project: ProjectConfig) -> Chain:
    """A chain of each backend, opened once per session and shared by every test that asks."""
    kind = request.param
    if kind not in _chains:
        _chains[kind] = Chain(_open(kind, project), project)
        request.addfinalizer(lambda: _chains.pop(kind).close())
    return _chains[kind]


@pytest.fixture
def isolated(chain: Chain):
    """Snapshot before the test, revert after: every test sees the session's deployed state."""
    snap = chain.backend.snapshot()
    yield chain
    chain.backend.revert(snap)
    chain.writer.forget_nonces()  # its nonce cache is now ahead of the reverted chain


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        if "chain" in path.parts and not any(m.name == "chain" for m in item.iter_markers()):
            item.add_marker(pytest.mark.chain)
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("chain") in ("anvil", "rpc"):
            item.add_marker(pytest.mark.rpc)
