"""``cona tier``: tier credentials, tier groups and tier proofs from the command line.

Two roles (docs/zk.md, "The CLI"):

- a buyer makes a credential (``keygen``) and, for each tier order, a proof bound to that
  order (``prove``);
- the operator adds buyers' public keys to a tier group for an epoch and commits it on
  chain (``issue``); anyone reads what is committed and spent (``status``).

Where the tier gate is: the deployment record of the chain in the state directory
(``cona deploy`` / ``cona up`` deploy it and bind it to the market).

Where the ring comes from: the chain holds each bucket's commitment, keccak-256 of the
ring's bytes, in a ``GroupCommitted`` event. ``issue`` publishes the group file (the keys)
in the state directory under ``group_id(commitments)``; ``prove`` reads the live commit
from the chain, finds the file by that id (or takes ``--group FILE``) and refuses it unless
its buckets hash to the committed commitments. Nothing of the operator's memory is trusted.

Credential file (``keygen``): JSON ``{"format": "cona-tier-credential/1", "public_key",
"crypto"}`` where ``crypto`` is the Web3 Secret Storage v3 section (scrypt n=2^18, r=8, p=1;
AES-128-CTR; keccak-256 MAC) over the 32-byte secret scalar. Written with mode 0600, never
overwritten. The passphrase comes from ``--passphrase-file`` (its first line) or a prompt,
never from the command line. Invariant: a decrypted secret is accepted only if its public
key equals the file's ``public_key``.

Every failure is a ``ConaError`` with a hint; ``--json`` prints one JSON object.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from marketplace.cli.options import ChainOpt, JsonOpt, RpcOpt, settings
from marketplace.cli.output import emit
from marketplace.errors import ChainMismatch, InputError, NotFound, ProofError, Rejected
from marketplace.passphrase import read_passphrase

log = logging.getLogger(__name__)

tier_app = typer.Typer(help="Tier credentials, groups and proofs (zero-knowledge VIP tiers).",
                       no_args_is_help=True)

CREDENTIAL_FORMAT = "cona-tier-credential/1"
SCRYPT_N = 2**18  # Web3 Secret Storage's standard work factor: about 1 s to derive here

PassOpt = typer.Option(None, "--passphrase-file", help="read the passphrase from this file's first line "
                       "(default: prompt)", dir_okay=False)
EpochOpt = typer.Option(None, "--epoch", help="epoch (default: the gate's current epoch)", min=0)


class CredentialError(InputError):
    """A credential file that cannot be read, decrypted or trusted."""

    code = "tier-credential"


# ----------------------------------------------------------------------------- credentials


def write_credential(path: Path, secret: Any, passphrase: bytes) -> dict[str, Any]:
    """Encrypt ``secret`` (a ``zk.SecretKey``) into a new file with mode 0600; returns the file's JSON."""
    from eth_keyfile import create_keyfile_json

    # the v3 keyfile also derives a secp256k1 address from the scalar: meaningless for a BN254
    # credential, so only its "crypto" section (the encryption) is kept
    crypto = create_keyfile_json(secret.to_bytes(), passphrase, kdf="scrypt", iterations=SCRYPT_N)["crypto"]
    doc = {"format": CREDENTIAL_FORMAT, "public_key": secret.public_key().hex(), "crypto": crypto}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError(f"{path} exists: a credential is never overwritten",
                         hint="choose another --out or delete the old file yourself", field="out") from None
    except OSError as exc:
        raise InputError(f"cannot create {path}: {exc.strerror}", field="out") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(doc, indent=1) + "\n")
    return doc


def read_credential(path: Path, passphrase: bytes) -> Any:
    """The ``zk.SecretKey`` in a credential file (raises ``CredentialError`` naming the fault)."""
    from eth_keyfile import decode_keyfile_json

    from zk import PublicKey, SecretKey

    try:
        raw = Path(path).read_text()
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CredentialError(f"no credential file at {path}", hint="make one with `cona tier keygen --out FILE`",
                              field="key") from None
    except OSError as exc:
        raise CredentialError(f"cannot read credential file {path}: {exc.strerror}", field="key") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("credential %s is readable by others (mode %o): chmod 600 it", path, mode & 0o777)
    try:
        doc = json.loads(raw)
        if doc.get("format") != CREDENTIAL_FORMAT:
            raise ValueError(f"format is {doc.get('format')!r}")
        public = PublicKey.from_hex(doc["public_key"])
        crypto = doc["crypto"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CredentialError(f"{path} is not a tier credential file ({CREDENTIAL_FORMAT}): {exc}",
                              hint="pass the file `cona tier keygen` wrote", field="key") from None
    try:
        plain = decode_keyfile_json({"version": 3, "crypto": crypto}, passphrase)
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise CredentialError(f"wrong passphrase for {path}",
                                  hint="use the passphrase given to `cona tier keygen`", field="passphrase") from None
        raise CredentialError(f"{path}: the encrypted key is malformed: {exc}", field="key") from None
    except (KeyError, TypeError) as exc:
        raise CredentialError(f"{path}: the encrypted key is malformed: missing {exc}", field="key") from None
    secret = SecretKey.from_bytes(plain)
    if secret.public_key() != public:
        raise CredentialError(f"{path}: the decrypted key does not match the file's public key",
                              hint="the file was altered; restore it from a backup", field="key")
    return secret


# ----------------------------------------------------------------------------- chain access


class _Gate:
    """The chain, the deployment's tier gate and the group store of one command (closes the chain)."""

    def __init__(self, chain_kind: Optional[str], rpc_url: Optional[str], keys: tuple[str, ...] = ()) -> None:
        from marketplace.chain.contracts import Chain
        from marketplace.chain.deploy import ZERO, load_deployment
        from marketplace.chain.tiergate import GroupStore, TierGateClient

        self.settings = settings(chain_kind, rpc_url)
        self.chain = Chain.open(self.settings, keys=keys)
        try:
            self.deployment = load_deployment(self.chain, self.settings.state_dir)
            if "TierGate" not in self.deployment.contracts:
                raise NotFound(f"the deployment on chain {self.chain.backend.chain_id} has no TierGate",
                               hint="compile (`cona compile`) and redeploy (`cona deploy`) to enable tiers",
                               field="contract")
            self.gate = TierGateClient.at(self.chain, self.deployment.address("TierGate"))
            if self.gate.market == ZERO:
                raise ChainMismatch(f"tier gate {self.gate.address} is bound to no market",
                                    hint="redeploy with `cona deploy`, which binds the gate to the market")
            self.store = GroupStore.in_state_dir(self.settings.state_dir, self.chain.backend.chain_id,
                                                 self.gate.address)
        except BaseException:
            self.chain.close()
            raise

    def __enter__(self) -> "_Gate":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.chain.close()


def _tier(tier: int) -> int:
    if not 1 <= tier <= 255:
        raise InputError(f"tier must be 1..255 (0 means no tier), got {tier}", field="tier")
    return tier


def _committed(g: _Gate, tier: int, epoch: int) -> Any:
    committed = g.gate.committed_group(tier, epoch)
    if committed is None:
        live = sorted({c.tier for c in g.gate.live_groups() if c.epoch == epoch})
        raise NotFound(f"no group is committed for tier {tier} in epoch {epoch} on gate {g.gate.address}",
                       hint=(f"tiers with a group in epoch {epoch}: {', '.join(map(str, live))}" if live else
                             f"no tier has a group in epoch {epoch}") + "; the operator runs `cona tier issue`",
                       field="tier")
    return committed


def _public_keys(args: list[str], from_file: Optional[Path]) -> list[Any]:
    from zk import PublicKey

    items: list[tuple[str, str]] = [(f"argument {i + 1}", a) for i, a in enumerate(args)]
    if from_file is not None:
        try:
            lines = Path(from_file).read_text().splitlines()
        except OSError as exc:
            raise InputError(f"cannot read {from_file}: {exc.strerror}", field="from") from None
        for n, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].strip()
            if text:
                items.append((f"{from_file} line {n}", text))
    if not items:
        raise InputError("no public key to issue", hint="pass keys as arguments or --from FILE (one per line)",
                         field="keys")
    keys = []
    for where, text in items:
        try:
            keys.append(PublicKey.from_hex(text))
        except ProofError as exc:
            raise InputError(f"{where} is not a tier public key: {exc.message}",
                             hint="a public key is the 0x-hex of 64 bytes that `cona tier keygen` prints",
                             field="keys") from None
    return keys


def _signer_keys(key_file: Optional[Path]) -> tuple[str, ...]:
    if key_file is None:
        return ()
    try:
        text = Path(key_file).read_text().strip()
    except OSError as exc:
        raise InputError(f"cannot read operator key file {key_file}: {exc.strerror}", field="operator_key_file") \
            from None
    return (text,)


# ----------------------------------------------------------------------------- commands


@tier_app.command()
def keygen(out: Path = typer.Option(..., "--out", help="the credential file to create (mode 0600)", dir_okay=False),
           passphrase_file: Optional[Path] = PassOpt, as_json: bool = JsonOpt) -> None:
    """A buyer makes a tier credential: the secret is encrypted into FILE; prints only the public key."""
    from zk import generate_key

    passphrase = read_passphrase(passphrase_file, confirm=True).encode()
    secret = generate_key()
    doc = write_credential(out, secret, passphrase)
    log.info("tier credential %s written to %s", doc["public_key"][:18], out)
    emit({"public_key": doc["public_key"], "file": str(out)}, as_json,
          _table("Tier credential", [("public key", doc["public_key"]), ("file", str(out)),
                                     ("next", "give the public key to the operator (`cona tier issue`)")]))


@tier_app.command()
def issue(keys: list[str] = typer.Argument(None, help="public keys (0x-hex, 64 bytes) to add", show_default=False),
          tier: int = typer.Option(..., "--tier", help="the tier (1..255)"),
          epoch: Optional[int] = EpochOpt,
          from_file: Optional[Path] = typer.Option(None, "--from", help="a file of public keys, one per line",
                                                   dir_okay=False),
          slots: Optional[int] = typer.Option(None, "--slots", min=1,
                                              help="tier orders per member per epoch (default: as committed, else 1)"),
          bucket_size: Optional[int] = typer.Option(None, "--bucket-size", min=1, max=64,
                                                    help="ring size (default: as committed, else 16)"),
          group_file: Optional[Path] = typer.Option(
              None, "--group", dir_okay=False,
              help="the committed group's file, when it is not in the state dir (checked against the chain)"),
          operator_key_file: Optional[Path] = typer.Option(
              None, "--operator-key-file", dir_okay=False,
              help="file holding the operator's 0x-hex private key (default: the chain's first dev account)"),
          chain: Optional[str] = ChainOpt, rpc_url: Optional[str] = RpcOpt, as_json: bool = JsonOpt) -> None:
    """The operator adds public keys to a tier group for an epoch and commits the group on chain."""
    from zk import TierGroup
    from zk.groups import DEFAULT_BUCKET_SIZE

    _tier(tier)
    new = _public_keys(list(keys or []), from_file)
    with _Gate(chain, rpc_url, _signer_keys(operator_key_file)) as g:
        if not g.chain.signers:
            raise InputError("no operator account to sign with", hint="pass --operator-key-file",
                             field="operator_key_file")
        operator = g.chain.signers[0]
        if not g.gate.is_operator(operator.address):
            raise Rejected(f"{operator.address} does not hold OPERATOR_ROLE on tier gate {g.gate.address}",
                           reason="not-operator", hint="sign with the operator's key (--operator-key-file)")
        epoch = g.gate.current_epoch() if epoch is None else epoch
        if epoch < g.gate.current_epoch():
            raise InputError(f"epoch {epoch} has passed (the gate is at epoch {g.gate.current_epoch()})",
                             field="epoch")
        committed = g.gate.committed_group(tier, epoch)
        before = g.store.load(committed, group_file) if committed is not None else None
        slots = slots or (before.slots if before else 1)
        size = bucket_size or (before.bucket_size if before else DEFAULT_BUCKET_SIZE)
        group = TierGroup.build(tier, epoch, (*(before.keys if before else ()), *new), slots=slots, bucket_size=size)
        added = len(group) - (len(before) if before else 0)
        path = g.store.save(group)  # published before the commit: a prover can find it from the event
        if group == before:
            result: dict[str, Any] = {"tier": tier, "epoch": epoch, "version": committed.version, "tx_hash": None}
        else:
            rec = g.gate.commit_group(operator, group)
            ev = next(e for e in g.gate.events(rec) if e.name == "GroupCommitted")
            result = {"tier": tier, "epoch": epoch, "version": ev.args["version"], "tx_hash": rec.tx_hash,
                      "gas_used": rec.gas_used}
        result.update({
            "members": len(group), "added": added, "slots": group.slots, "bucket_size": group.bucket_size,
            "buckets": [{"commitment": "0x" + c.hex(), "size": len(b)}
                        for c, b in zip(group.commitments(), group.buckets())],
            "group_file": str(path), "gate": g.gate.address,
        })
    rows = [("tier / epoch / version", f"{tier} / {epoch} / {result['version']}"),
            ("members (added)", f"{result['members']} ({added})"), ("slots per member", str(group.slots))]
    rows += [(f"bucket {i} ({b['size']} keys)", b["commitment"]) for i, b in enumerate(result["buckets"])]
    rows += [("tx", result["tx_hash"] or "nothing new: no transaction"), ("group file", str(path))]
    emit(result, as_json, _table("Tier group committed", rows))


@tier_app.command()
def prove(key: Path = typer.Option(..., "--key", help="the credential file (from `cona tier keygen`)",
                                   dir_okay=False),
          tier: int = typer.Option(..., "--tier", help="the tier the order claims (1..255)"),
          order_digest: str = typer.Option(..., "--order-digest",
                                           help="the order's EIP-712 intent digest (0x-hex, 32 bytes)"),
          beneficiary: str = typer.Option(..., "--beneficiary", help="the order's buyer address"),
          epoch: Optional[int] = EpochOpt,
          slot: Optional[int] = typer.Option(None, "--slot", min=0, help="the use to spend (default: the first free)"),
          group_file: Optional[Path] = typer.Option(None, "--group", dir_okay=False,
                                                    help="the published group file (default: from the state dir)"),
          passphrase_file: Optional[Path] = PassOpt,
          chain: Optional[str] = ChainOpt, rpc_url: Optional[str] = RpcOpt, as_json: bool = JsonOpt) -> None:
    """A buyer proves tier membership for one order; prints the proof (hex) and its nullifier."""
    from eth_utils import is_address, to_checksum_address

    from zk import prove_tier, ring_commitment

    _tier(tier)
    digest = _digest(order_digest)
    if not is_address(beneficiary):
        raise InputError(f"beneficiary is not an address: {beneficiary!r}", hint="the buyer's 0x address",
                         field="beneficiary")
    beneficiary = to_checksum_address(beneficiary)
    secret = read_credential(key, read_passphrase(passphrase_file).encode())
    with _Gate(chain, rpc_url) as g:
        current = g.gate.current_epoch()
        epoch = current if epoch is None else epoch
        committed = _committed(g, tier, epoch)
        group = g.store.load(committed, group_file)
        ring = group.bucket_of(secret.public_key())  # NotAMember, with its hint, before any work
        slot = _slot(g, secret, committed, tier, epoch, slot)
        statement = g.gate.statement(tier, digest, beneficiary, epoch=epoch)
        data = prove_tier(secret, group, statement, slot)
        if epoch == current:
            checked = g.gate.check(statement, data)  # the gate's own view, as an eth_call
            nullifier, commitment = checked.nullifier, checked.commitment
        else:  # the gate only checks proofs of its current epoch: check in Python
            from zk import check_tier_proof

            verified = check_tier_proof(data, statement, group)
            nullifier, commitment = verified.nullifier, verified.commitment
        assert commitment == ring_commitment(ring)
        result = {"proof": "0x" + data.hex(), "nullifier": "0x" + nullifier.hex(), "tier": tier, "epoch": epoch,
                  "slot": slot, "ring_size": len(ring), "commitment": "0x" + commitment.hex(),
                  "order_digest": "0x" + digest.hex(), "beneficiary": beneficiary, "gate": g.gate.address,
                  "market": statement.market, "checked_on_chain": epoch == current}
    log.info("tier %d epoch %d slot %d: proof for order 0x%s, nullifier 0x%s", tier, epoch, slot,
             digest.hex()[:12], nullifier.hex()[:12])
    if as_json:
        emit(result, True)
    else:
        emit(_table("Tier proof", [("tier / epoch / slot", f"{tier} / {epoch} / {slot}"),
                                   ("ring size", str(len(ring))), ("nullifier", result["nullifier"]),
                                   ("proof", f"{len(data)} bytes, below")]), False)
        emit(result["proof"], False)


def _slot(g: _Gate, secret: Any, committed: Any, tier: int, epoch: int, slot: Optional[int]) -> int:
    """The use of the tier to spend: ``slot`` if it is in range and unspent, else the first free one."""
    from zk import Scope, nullifier_for

    if slot is None:
        free = g.gate.free_slot(secret, tier, epoch=epoch)
        if free is None:
            raise Rejected(f"all {committed.slots} use(s) of tier {tier} in epoch {epoch} are spent",
                           reason="no-free-slot", hint="wait for the next epoch")
        return free
    if slot >= committed.slots:
        raise InputError(f"slot {slot} is outside 0..{committed.slots - 1} for tier {tier} epoch {epoch}",
                         field="slot")
    spent = nullifier_for(secret, Scope(g.chain.backend.chain_id, g.gate.address, epoch, tier, slot))
    if g.gate.is_spent(spent):
        raise Rejected(f"slot {slot} of tier {tier} in epoch {epoch} is already used "
                       f"(NullifierAlreadySpent 0x{spent.hex()})", reason="NullifierAlreadySpent",
                       hint="omit --slot to take the first free one")
    return slot


@tier_app.command()
def status(tier: Optional[int] = typer.Option(None, "--tier", help="only this tier"),
           epoch: Optional[int] = EpochOpt,
           chain: Optional[str] = ChainOpt, rpc_url: Optional[str] = RpcOpt, as_json: bool = JsonOpt) -> None:
    """Committed tier groups (for one epoch, default the current one): slots, buckets, spent proofs."""
    if tier is not None:
        _tier(tier)
    with _Gate(chain, rpc_url) as g:
        current = g.gate.current_epoch()
        epoch = current if epoch is None else epoch
        spent: dict[tuple[int, int], int] = {}
        for ev in g.gate.spent_events():
            k = (ev.args["tier"], ev.args["epoch"])
            spent[k] = spent.get(k, 0) + 1
        groups = []
        for c in g.gate.live_groups():
            if c.epoch != epoch or (tier is not None and c.tier != tier):
                continue
            path = g.store.path_for(c.commitments)
            members: Optional[int] = None
            sizes: Optional[list[int]] = None
            try:
                published = g.store.load(c)
                members, sizes = len(published), [len(b) for b in published.buckets()]
            except (NotFound, ProofError):
                pass  # the keys were published elsewhere (or not at all): the chain's view still stands
            groups.append({"tier": c.tier, "epoch": c.epoch, "version": c.version, "slots": c.slots,
                           "buckets": len(c.commitments), "bucket_sizes": sizes, "members": members,
                           "spent": spent.get((c.tier, c.epoch), 0), "group_id": c.group_id,
                           "group_file": str(path) if members is not None else None,
                           "commit_tx": c.tx_hash})
        result = {"gate": g.gate.address, "market": g.gate.market, "current_epoch": current, "epoch": epoch,
                  "groups": groups}
    table = Table(title=f"Tier groups, epoch {epoch} (current {current}) on gate {result['gate']}")
    for col in ("tier", "version", "members", "buckets", "slots", "spent"):
        table.add_column(col)
    for grp in groups:
        sizes = "+".join(map(str, grp["bucket_sizes"])) if grp["bucket_sizes"] else str(grp["buckets"])
        table.add_row(str(grp["tier"]), str(grp["version"]), str(grp["members"] if grp["members"] is not None
                                                                  else "?"),
                      sizes, str(grp["slots"]), str(grp["spent"]))
    emit(result, as_json, table)


def _digest(text: str) -> bytes:
    t = text[2:] if text.startswith(("0x", "0X")) else text
    try:
        raw = bytes.fromhex(t)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise InputError(f"order digest must be 32 bytes of hex, got {text[:24]!r}",
                         hint="the order's EIP-712 intent digest (Market.digest(intent))", field="order_digest")
    return raw


def _table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("", style="dim")
    table.add_column("")
    for k, v in rows:
        table.add_row(k, v)
    return table
