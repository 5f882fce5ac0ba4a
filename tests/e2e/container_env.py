"""What the container tests share: a runtime in a private storage, a busybox image archive, a local registry.

Needs root, podman and runc (``make bootstrap`` installs them from Debian); without them the
container tests skip, naming what is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from provider_agent.runtime.container import ContainerConfig, ContainerRuntime
from provider_agent.runtime.images import RegistryPolicy, sha256_file
from provider_agent.runtime.rootfs import busybox_rootfs, build_archive


def require_podman() -> None:
    missing = [tool for tool in ("podman", "runc", "busybox") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (make bootstrap installs podman, runc, busybox-static)")
    if os.geteuid() != 0:
        pytest.skip("the container runtime is rootful podman: run the tests as root")


def make_runtime(storage: Path, **config) -> ContainerRuntime:
    return ContainerRuntime(ContainerConfig(storage, **config))


def busybox_archive(runtime: ContainerRuntime, workdir: Path, name: str = "localhost/cona-test/busybox:1",
                    extra: dict[str, bytes] | None = None) -> tuple[Path, str]:
    """A busybox image as an OCI archive (not left in the store) and the sha256 of its bytes."""
    root = busybox_rootfs(workdir / "rootfs", extra=extra)
    archive = build_archive(runtime.podman_argv, root, workdir / "busybox.oci.tar", name)
    shutil.rmtree(root)
    return archive, sha256_file(archive)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRegistry:
    """Debian's docker-registry on a loopback port, storing under ``root``."""

    def __init__(self, root: Path) -> None:
        if shutil.which("docker-registry") is None:
            pytest.skip("docker-registry not installed (make bootstrap installs it)")
        self.port = _free_port()
        self.host = f"localhost:{self.port}"
        config = root / "registry.yml"
        config.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                          f"    rootdirectory: {root}/data\nhttp:\n  addr: 127.0.0.1:{self.port}\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.close()
        raise RuntimeError("the local registry did not start")

    def push(self, runtime: ContainerRuntime, archive: Path, ref: str) -> None:
        """Load ``archive`` into a scratch store, push it as ``ref`` (without TLS: loopback only)."""
        image = subprocess.run(runtime.podman_argv("load", "--quiet", "--input", str(archive)), check=True,
                               capture_output=True, text=True).stdout.strip().rsplit(" ", 1)[-1]
        subprocess.run(runtime.podman_argv("tag", image, ref), check=True, capture_output=True)
        subprocess.run(runtime.podman_argv("push", "--quiet", "--tls-verify=false", ref), check=True,
                       capture_output=True)
        subprocess.run(runtime.podman_argv("rmi", "--force", ref, image), capture_output=True)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def allow(*refs: str) -> RegistryPolicy:
    return RegistryPolicy.of(refs)
