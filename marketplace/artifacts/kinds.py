"""The kinds of artifact the market stores, their size limits, and the check each gets on upload.

- ``wasm``: a buyer's WebAssembly module. It must validate, be a WASI command (``_start``) and
  import nothing a run never offers (``provider_agent.runtime.wasm.module_imports``, the very
  check the provider's agent makes); its imports are kept, so an order that asks for a
  deterministic run of a module importing a clock is refused at order time;
- ``oci``: a container image as an OCI archive. Every platform it has an image for is checked
  completely (``provider_agent.runtime.images.inspect_archive``: the tar, ``oci-layout``, the
  index, each manifest, config and layer against its digest, ``linux``); its architectures are
  kept, so the engine matches it only to providers whose containers run on one of them;
- ``data``: any bytes (input files, output files); nothing to check but the digest.

A corrupt archive or a module that does not validate is one ``ArtifactRejected`` (HTTP 422,
naming ``body``), before the bytes are kept. Limits are bytes per upload, per kind; the API
document states them (``GET /openapi.json``, the upload route).
"""

from __future__ import annotations

import logging
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

from marketplace.errors import InputError

log = logging.getLogger(__name__)

MIB = 1 << 20
#: an artifact's name: the sha256 of its bytes
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class Kind(StrEnum):
    WASM = "wasm"
    OCI = "oci"
    DATA = "data"


#: the largest upload of each kind (the order document's limit is 2 MiB: these are far above it)
MAX_BYTES = {Kind.WASM: 64 * MIB, Kind.OCI: 2048 * MIB, Kind.DATA: 1024 * MIB}


class ArtifactRejected(InputError):
    """Bytes that are not the artifact they claim to be (a digest that does not match, a module that does
    not validate, a corrupt OCI archive), or an artifact an order cannot use."""

    code = "artifact-rejected"


def parse_kind(text: str) -> Kind:
    try:
        return Kind(text)
    except ValueError:
        raise InputError(f"artifact kind {text!r} is not one of {', '.join(k.value for k in Kind)}",
                         field="kind") from None


def inspect(kind: Kind, path: Path) -> dict[str, Any]:
    """The facts the market keeps about an artifact of ``kind`` at ``path`` (``ArtifactRejected`` when
    the bytes are not one)."""
    if kind == Kind.WASM:
        return _wasm(path)
    if kind == Kind.OCI:
        return _oci(path)
    return {}


def _wasm(path: Path) -> dict[str, Any]:
    from provider_agent.runtime.wasm import WorkloadRejected, module_imports

    try:
        imports = module_imports(path.read_bytes())
    except WorkloadRejected as exc:
        raise ArtifactRejected(exc.message, field="body", hint=exc.hint) from None
    return {"imports": [f"{m}.{n}" for m, n in imports]}


def _oci(path: Path) -> dict[str, Any]:
    from provider_agent.runtime.images import ImageRejected, archive_arches, inspect_archive

    try:
        arches = archive_arches(path)
        infos = [inspect_archive(path, None, arch) for arch in arches]
    except ImageRejected as exc:  # named after the upload's temporary file: say "the archive"
        raise ArtifactRejected(exc.message.replace(path.name, "the archive"), field="body", hint=exc.hint) from None
    return {"arches": list(arches), "images": [{"arch": i.architecture, "config": i.config_digest,
                                                "layer_bytes": i.layer_bytes} for i in infos]}
