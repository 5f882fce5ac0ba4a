"""Container images a provider will run: OCI archives by digest, registry references it allows.

Two sources, each checked before anything runs:

- an **OCI archive** (``podman save --format oci-archive``), the bytes of a buyer's artifact,
  named by the sha256 of those bytes. ``inspect_archive`` reads it as a tar without extracting:
  ``oci-layout`` and ``index.json`` must be there, the manifest (the one for this machine's
  platform when the index lists several), its config and every layer must be present and hash
  to their digests, and the config's ``os``/``architecture`` must be this machine's. A corrupt
  archive (not a tar, a missing or altered blob, a truncated file), an image for another
  architecture, or bytes whose sha256 is not the digest named: one ``ImageRejected`` each;
- a **registry reference** (``host[:port]/path[:tag|@sha256:...]``) that matches the provider's
  allowlist (``RegistryPolicy``): an entry is a repository (any tag or digest of it) or one
  exact reference. Anything else is refused before a pull is attempted. References, the
  allowlist and ``ImageRejected`` are defined in ``marketplace.resources.runtimes`` (the engine's
  matching reads them too) and re-exported here.

Pure apart from reading the archive file: no podman here (``container.ImageStore`` loads what
this module accepted).
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from marketplace.resources.runtimes import GOARCH, ImageRef, ImageRejected, RegistryPolicy, goarch, parse_ref

__all__ = ["GOARCH", "ArchiveInfo", "ImageRef", "ImageRejected", "RegistryPolicy", "archive_arches", "host_arch",
           "inspect_archive", "parse_ref", "sha256_file"]

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFESTS = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def host_arch() -> str:
    """This machine's architecture in Go's names (what an image config says)."""
    return goarch(platform.machine())


@dataclass(frozen=True, slots=True)
class ArchiveInfo:
    """What an accepted archive holds: the manifest's and config's digests (the config's is the
    image id podman gives it), its platform and its total layer size."""

    manifest_digest: str
    config_digest: str
    os: str
    architecture: str
    layer_bytes: int

    @property
    def image_id(self) -> str:
        return self.config_digest.split(":", 1)[1]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _bad(path: Path, why: str) -> ImageRejected:
    return ImageRejected(f"{path.name} is not a usable OCI archive: {why}", field="image",
                         hint="make one with `cona artifact image ROOTFS --out FILE` or `podman save --format "
                              "oci-archive -o FILE IMAGE`")


def _json(tar: tarfile.TarFile, name: str, path: Path, digest: str | None = None) -> dict:
    raw = _read(tar, name, path, digest)
    try:
        doc = json.loads(raw)
    except ValueError:
        raise _bad(path, f"{name} is not JSON") from None
    if not isinstance(doc, dict):
        raise _bad(path, f"{name} is not a JSON object")
    return doc


def _read(tar: tarfile.TarFile, name: str, path: Path, digest: str | None = None) -> bytes:
    f = _member(tar, name, path)
    data = f.read()
    if digest is not None and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise _bad(path, f"{name} does not hash to its digest")
    return data


def _member(tar: tarfile.TarFile, name: str, path: Path) -> IO[bytes]:
    try:
        f = tar.extractfile(name)
    except KeyError:
        f = None
    if f is None:
        raise _bad(path, f"{name} is missing")
    return f


def _blob(digest: str, path: Path) -> str:
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise _bad(path, f"{digest!r} is not a sha256 digest")
    return "blobs/sha256/" + digest.split(":", 1)[1]


def _pick_manifest(tar: tarfile.TarFile, path: Path, arch: str) -> dict:
    """The image manifest descriptor for ``arch`` (following one level of image index)."""
    index = _json(tar, "index.json", path)
    entries = index.get("manifests")
    if not isinstance(entries, list) or not entries:
        raise _bad(path, "index.json lists no manifest")
    if entries[0].get("mediaType") == INDEX:  # a multi-platform archive: an index of manifests
        entries = _json(tar, _blob(entries[0].get("digest"), path), path, entries[0].get("digest")).get("manifests")
        if not isinstance(entries, list) or not entries:
            raise _bad(path, "the image index lists no manifest")
    for entry in entries:
        plat = entry.get("platform") or {}
        if not plat or plat.get("architecture") == arch:
            return entry
    found = sorted({str((e.get("platform") or {}).get("architecture")) for e in entries})
    raise ImageRejected(f"{path.name} has images for {', '.join(found)}, none for {arch}", field="image",
                        hint=f"build the image for {arch}")


def archive_arches(path: Path) -> tuple[str, ...]:
    """The architectures an OCI archive has images for (from its index, or its one manifest's
    config), without checking the blobs: ``inspect_archive`` each of them to check it."""
    try:
        with tarfile.open(path, "r:") as tar:
            entries = _json(tar, "index.json", path).get("manifests")
            if not isinstance(entries, list) or not entries:
                raise _bad(path, "index.json lists no manifest")
            if entries[0].get("mediaType") == INDEX:
                entries = _json(tar, _blob(entries[0].get("digest"), path), path).get("manifests")
                if not isinstance(entries, list) or not entries:
                    raise _bad(path, "the image index lists no manifest")
            found = set()
            for entry in entries:
                arch = (entry.get("platform") or {}).get("architecture") if isinstance(entry, dict) else None
                if arch is None:  # one manifest without a platform: its config says
                    manifest = _json(tar, _blob(entry.get("digest"), path), path)
                    arch = _json(tar, _blob((manifest.get("config") or {}).get("digest"), path), path).get(
                        "architecture")
                if not isinstance(arch, str) or not arch:
                    raise _bad(path, "an image names no architecture")
                found.add(arch)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise _bad(path, f"not a readable tar ({exc})") from None
    return tuple(sorted(found))


def inspect_archive(path: Path, digest: str | None = None, arch: str | None = None) -> ArchiveInfo:
    """Check an OCI archive completely (see the module docstring); ``digest``: the sha256 hex the
    buyer named, checked against the file's bytes first."""
    arch = arch or host_arch()
    if digest is not None and sha256_file(path) != digest.removeprefix("sha256:"):
        raise ImageRejected(f"{path.name} does not hash to the digest {digest}", field="image")
    try:
        with tarfile.open(path, "r:") as tar:
            _member(tar, "oci-layout", path)
            entry = _pick_manifest(tar, path, arch)
            if entry.get("mediaType") not in MANIFESTS:
                raise _bad(path, f"unsupported manifest type {entry.get('mediaType')!r}")
            manifest = _json(tar, _blob(entry.get("digest"), path), path, entry.get("digest"))
            config_ref = manifest.get("config") or {}
            config = _json(tar, _blob(config_ref.get("digest"), path), path, config_ref.get("digest"))
            layers = manifest.get("layers")
            if not isinstance(layers, list):
                raise _bad(path, "the manifest lists no layers")
            size = sum(_check_layer(tar, layer, path) for layer in layers)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise _bad(path, f"not a readable tar ({exc})") from None
    found = (str(config.get("os")), str(config.get("architecture")))
    if found != ("linux", arch):
        raise ImageRejected(f"{path.name} is an image for {found[0]}/{found[1]}; this provider runs linux/{arch}",
                            field="image", hint=f"build the image for linux/{arch}")
    return ArchiveInfo(entry["digest"], config_ref["digest"], found[0], found[1], size)


def _check_layer(tar: tarfile.TarFile, layer: object, path: Path) -> int:
    if not isinstance(layer, dict):
        raise _bad(path, "a layer descriptor is not an object")
    digest = layer.get("digest")
    f = _member(tar, _blob(digest, path), path)
    h, size = hashlib.sha256(), 0
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
        size += len(chunk)
    if "sha256:" + h.hexdigest() != digest:
        raise _bad(path, f"layer {digest[:19]}... does not hash to its digest")
    return size
