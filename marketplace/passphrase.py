"""Passphrases for encrypted key files (the agent's keystore, buyers' tier credentials).

A passphrase comes from a file (its first line) or from a prompt on the terminal, never
from a command-line argument, where ``ps`` and shell history would show it. The prompt
writes to stderr so that stdout stays clean for ``--json``.
"""

from __future__ import annotations

from pathlib import Path

import click

from marketplace.errors import InputError


def read_passphrase(passphrase_file: Path | None, *, confirm: bool = False) -> str:
    """The first line of ``passphrase_file``, or what the user types at a hidden prompt."""
    if passphrase_file is not None:
        try:
            text = Path(passphrase_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read the passphrase file {passphrase_file}: {exc.strerror}",
                             field="passphrase_file") from None
        lines = text.splitlines()
        phrase = lines[0] if lines else ""
    else:
        phrase = click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm, err=True)
    if not phrase:
        raise InputError("the passphrase is empty", field="passphrase",
                         hint="a key file must be encrypted: put a passphrase on the first line of the file")
    return phrase
