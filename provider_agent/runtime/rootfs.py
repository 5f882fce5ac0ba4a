"""Container images from a local root file system: no registry needed.

``busybox_rootfs`` lays out a minimal root (a static busybox, its applets as symlinks, the
directories a container run expects), ``build_archive`` turns a root directory into an image
(``podman import``) and saves it as an OCI archive (``podman save --format oci-archive``) - what a
buyer uploads, and what the tests and ``cona bench runtime`` run. The image is removed from the
store again afterwards, so running the archive goes through ``ContainerRuntime.load_archive``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Callable, Sequence

from marketplace.errors import AgentError

BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static: a statically linked busybox
DIRS = ("bin", "dev", "etc", "input", "proc", "sys", "tmp", "work")


def busybox_rootfs(root: Path, busybox: Path = BUSYBOX, extra: dict[str, bytes] | None = None) -> Path:
    """A root file system at ``root``: ``/bin/busybox`` with every applet linked, the mount points a
    run uses, ``/etc/passwd`` naming ``nobody``, and ``extra`` files (path -> bytes; executable
    when under ``bin/``)."""
    if not busybox.exists():
        raise AgentError(f"{busybox} is missing", hint="apt-get install busybox-static (make bootstrap does)")
    for d in DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = root / "bin" / applet
        if applet != "busybox" and not link.exists():
            os.symlink("busybox", link)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/work:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    for rel, data in (extra or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, 0o755 if rel.startswith("bin/") else 0o644)
    return root


def build_archive(podman_argv: Callable[..., list[str]], root: Path, archive: Path, name: str,
                  cmd: Sequence[str] = ("/bin/sh",)) -> Path:
    """Import ``root`` as image ``name`` (command ``cmd``), save it to ``archive`` as an OCI archive,
    and remove the image from the store. ``podman_argv`` builds a podman command line
    (``ContainerRuntime.podman_argv``)."""
    layer = archive.with_suffix(".rootfs.tar")
    with tarfile.open(layer, "w") as tar:
        tar.add(root, arcname=".")
    change = "CMD [" + ", ".join(f'"{c}"' for c in cmd) + "]"
    try:
        for args in (("import", "--quiet", "--change", change, str(layer), name),
                     ("save", "--quiet", "--format", "oci-archive", "--output", str(archive), name),
                     ("rmi", name)):
            proc = subprocess.run(podman_argv(*args), capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                raise AgentError(f"podman {args[0]} failed: {proc.stderr.strip()[-300:]}")
    finally:
        layer.unlink(missing_ok=True)
    return archive
