"""``cona artifact put|get|info|image``: the market's content-addressed artifacts, from the buyer's side.

- ``put FILE`` uploads a file (a module, an OCI archive, data), signed by the buyer's key (the
  quota it counts against), and prints its digest, ``sha256:<hex>``: what an order names;
- ``get DIGEST --out FILE`` downloads one and keeps it only when it hashes to the digest;
- ``info DIGEST`` shows what the market knows of it (kinds, size, owners, a module's imports, an
  archive's architectures);
- ``image ROOT --out FILE`` builds an OCI archive from a root file system on this machine (no
  registry, no podman: ``marketplace.artifacts.oci``), ready for ``put`` or
  ``cona order place --image``.

The kind of ``put`` is guessed from the file when ``--kind`` is not given: a ``.wasm`` file (or
one starting with the wasm magic) is a module, a tar holding ``oci-layout`` an image, anything
else data.
"""

from __future__ import annotations

import shlex
import tarfile
from pathlib import Path
from typing import Any, Optional

import typer

from marketplace.artifacts.kinds import Kind, parse_kind
from marketplace.cli.keys import DevOpt, KeyFileOpt, PassOpt, buyer_signer
from marketplace.cli.options import JsonOpt
from marketplace.cli.output import emit, out, run
from marketplace.cli.remote import ApiOpt, RemoteMarket, api_client, connect
from marketplace.errors import InputError

artifact_app = typer.Typer(help="Upload, download and build artifacts (modules, OCI images, data) by sha256.",
                           no_args_is_help=True)

KindOpt = typer.Option(None, "--kind", help="wasm, oci or data (default: guessed from the file)")
WASM_MAGIC = b"\x00asm"


def guess_kind(path: Path) -> Kind:
    """wasm for a module, oci for an OCI archive, data for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", field="file") from None
    if path.suffix == ".wasm" or head == WASM_MAGIC:
        return Kind.WASM
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            if "oci-layout" in tar.getnames():
                return Kind.OCI
    return Kind.DATA


def put_file(m: RemoteMarket, signer: Any, path: Path, kind: Kind | None = None) -> dict[str, Any]:
    """Upload ``path`` (its kind guessed when not given) signed by ``signer``; the stored artifact."""
    from marketplace.artifacts.transfer import upload

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} is not a file", field="file")
    return upload(m.api, signer, path, kind or guess_kind(path), chain_id=m.chain_id, market=m.market.address)


@artifact_app.command("put")
def put(file: Path = typer.Argument(..., help="the file to upload"), kind: Optional[str] = KindOpt,
        key_file: Optional[Path] = KeyFileOpt, passphrase_file: Optional[Path] = PassOpt,
        dev_account: Optional[int] = DevOpt, api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """Upload a file as an artifact (signed by your key); prints its digest."""
    m = connect(api)
    try:
        signer = buyer_signer(m, key_file, passphrase_file, dev_account)
        doc = put_file(m, signer, file, parse_kind(kind) if kind else None)
    finally:
        m.close()
    if as_json:
        emit(doc, True)
    else:
        out.print(doc["digest"])


@artifact_app.command("get")
def get(digest: str = typer.Argument(..., help="sha256:<hex>"),
        out_file: Path = typer.Option(..., "--out", help="where to write it"),
        api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """Download an artifact; it is kept only when its bytes hash to the digest."""
    from marketplace.artifacts.transfer import fetch

    with api_client(api) as client:
        path = fetch(client, digest, out_file)
    doc = {"digest": digest, "out": str(path), "size": path.stat().st_size, "verified": True}
    if as_json:
        emit(doc, True)
    else:
        out.print(f"{digest}: {doc['size']} bytes, sha256 checked, written to {path}")


@artifact_app.command("info")
def info(digest: str = typer.Argument(..., help="sha256:<hex>"), api: Optional[str] = ApiOpt,
         as_json: bool = JsonOpt) -> None:
    """What the market knows of an artifact: kinds, size, owners, a module's imports, an archive's platforms."""
    with api_client(api) as client:
        doc = client.artifact_info(digest)
    if as_json:
        emit(doc, True)
        return
    out.print(f"{doc['digest']}: {doc['size']} bytes, {' and '.join(doc['kinds'])}, uploaded by "
              f"{', '.join(doc['owners'])}")
    if "oci" in doc["facts"]:
        out.print("platforms: " + ", ".join(f"linux/{a}" for a in doc["facts"]["oci"]["arches"]))
    if "wasm" in doc["facts"]:
        out.print("imports: " + ", ".join(doc["facts"]["wasm"]["imports"]))


@artifact_app.command("image")
def image(root: Path = typer.Argument(..., help="a root file system (a directory)"),
          out_file: Path = typer.Option(..., "--out", help="the OCI archive to write"),
          cmd: str = typer.Option("/bin/sh", "--cmd", help="the image's command, shell-quoted"),
          arch: Optional[str] = typer.Option(None, "--arch", help="Go's name (default: this machine's)"),
          as_json: bool = JsonOpt) -> None:
    """Build an OCI image archive from a root file system (no registry, no podman); prints its digest."""
    from marketplace.artifacts.oci import build_archive

    try:
        argv = shlex.split(cmd)
    except ValueError as exc:
        raise InputError(f"--cmd: {exc}", field="cmd") from None
    sha = build_archive(root, out_file, cmd=argv, arch=arch)
    doc = {"digest": "sha256:" + sha, "out": str(out_file), "cmd": argv}
    if as_json:
        emit(doc, True)
    else:
        out.print(doc["digest"])


if __name__ == "__main__":  # pragma: no cover
    run(artifact_app, prog_name="cona artifact")
