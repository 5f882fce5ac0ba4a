"""An OCI image archive from a root file system, in Python: no registry, no podman, reproducible.

``build_archive(root, out, cmd=...)`` writes what ``podman save --format oci-archive`` would: a tar
holding ``oci-layout``, ``index.json`` and ``blobs/sha256/...`` - one uncompressed layer (the root
file system), the image config (``linux``/this machine's architecture, the command, ``PATH``) and
the manifest. A buyer on a machine without podman builds the image it uploads
(``cona artifact image ROOT``), and the provider's agent loads it like any archive.

Reproducible: entries in name order, owned by root, mtime 0, modes kept, symbolic links kept as
links (never followed), no timestamps in the config: the same tree gives the same bytes and the
same digest on any machine. The directories a container run mounts over (``/input``, ``/work``,
``/proc``, ``/sys``, ``/dev``, ``/tmp``) are added to the layer when the tree lacks them, because
the run's root file system is read-only.

Invariants: the layer's digest is its ``diff_id`` (uncompressed), every blob is named by its sha256,
and a tree holding anything but directories, regular files and symbolic links is refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import Sequence

from marketplace.errors import InputError
from marketplace.resources.runtimes import goarch

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
MOUNTS = ("dev", "input", "proc", "sys", "tmp", "work")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _entry(name: str, st: os.stat_result | None, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode) if st is not None else 0o755
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    info.linkname = link
    return info


def write_layer(root: Path, out) -> None:
    """The tree at ``root`` as a tar layer (see the module docstring) into the binary file ``out``."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a directory", field="root")
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        present = {p.name for p in root.iterdir()}
        for name in MOUNTS:
            if name not in present:
                tar.addfile(_entry(name, None, tarfile.DIRTYPE))
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            rel = os.path.relpath(dirpath, root)
            for name in sorted(dirnames + filenames):
                path = os.path.join(dirpath, name)
                arc = name if rel == "." else f"{rel}/{name}"
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    tar.addfile(_entry(arc, st, tarfile.SYMTYPE, os.readlink(path)))
                elif stat.S_ISDIR(st.st_mode):
                    tar.addfile(_entry(arc, st, tarfile.DIRTYPE))
                elif stat.S_ISREG(st.st_mode):
                    info = _entry(arc, st, tarfile.REGTYPE)
                    info.size = st.st_size
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    raise InputError(f"{arc} is neither a file, a directory nor a symbolic link", field="root",
                                     hint="an image layer here holds no devices, FIFOs or sockets")


def _sha_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_archive(root: Path, out: Path, *, cmd: Sequence[str] = ("/bin/sh",), arch: str | None = None,
                  name: str = "cona/image:latest") -> str:
    """Write the OCI archive of the tree at ``root`` to ``out``; returns the archive's sha256 (hex)."""
    arch = arch or goarch(platform.machine())
    out = Path(out)
    with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".layer-", delete=False) as layer_f:
        layer = Path(layer_f.name)
        write_layer(root, layer_f)
    try:
        layer_sha, layer_size = _sha_file(layer), layer.stat().st_size
        config = json.dumps({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": list(cmd), "Env": [PATH_ENV], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + layer_sha]},
        }, sort_keys=True, separators=(",", ":")).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                       "size": len(config)},
            "layers": [{"mediaType": LAYER, "digest": "sha256:" + layer_sha, "size": layer_size}],
        }, sort_keys=True, separators=(",", ":")).encode()
        index = json.dumps({"schemaVersion": 2, "manifests": [{
            "mediaType": MANIFEST, "digest": "sha256:" + hashlib.sha256(manifest).hexdigest(), "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": name}}]}, sort_keys=True,
            separators=(",", ":")).encode()
        tmp = out.with_name(f".{out.name}.tmp")
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            _add_bytes(tar, "index.json", index)
            _add_bytes(tar, f"blobs/sha256/{hashlib.sha256(config).hexdigest()}", config)
            _add_bytes(tar, f"blobs/sha256/{hashlib.sha256(manifest).hexdigest()}", manifest)
            info = _entry(f"blobs/sha256/{layer_sha}", None, tarfile.REGTYPE)
            info.mode, info.size = 0o644, layer_size
            with open(layer, "rb") as f:
                tar.addfile(info, f)
        os.replace(tmp, out)
    finally:
        layer.unlink(missing_ok=True)
    return _sha_file(out)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = _entry(name, None, tarfile.REGTYPE)
    info.mode, info.size = 0o644, len(data)
    tar.addfile(info, io.BytesIO(data))
