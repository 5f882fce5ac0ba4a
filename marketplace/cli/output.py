"""How CONA's command lines print: results on stdout, progress and errors on stderr.

One module decides the look of both command lines (``cona`` and ``cona-agent``), so every
command group prints the same way:

- a result is either JSON for scripts (``--json``) or something for people (a rich table,
  or a line of text); ``emit`` prints ``cona``'s (indented JSON), ``emit_line`` prints
  ``cona-agent``'s (one sorted JSON object per line, or one line of text);
- a ``ConaError`` is never a traceback: it is ``error: <message>`` and, when the error
  carries one, ``hint: <what to do>``, each one line however long (never wrapped, never read
  as rich markup), on stderr, and the command exits with status 2
  (``EXIT_ERROR``). ``cona-agent`` puts the hint on the same line (one line per error, so a
  log or a script reads it whole) and, with ``--json``, prints ``{"error": {...}}`` instead;
- ``run`` is the entry point of ``cona`` and of every group run alone
  (``python -m marketplace.cli.<group>``): it turns an escaping ``ConaError`` into that line.

Invariant: stdout carries only results (an id, a table, a JSON object), so
``X=$(cona ...)`` captures exactly the result while progress and errors stay on the terminal.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from marketplace.errors import ConaError

#: exit status of a command that failed with a ``ConaError``
EXIT_ERROR = 2

#: progress, warnings and errors
console = Console(stderr=True)
#: results
out = Console()


def emit(data: Any, as_json: bool, renderable: Any = None) -> None:
    """``cona``'s result: indented JSON with ``as_json``, else ``renderable`` (a rich table or a
    string), else ``data`` itself."""
    if as_json:
        out.print_json(json.dumps(data, default=str))
    elif renderable is not None:
        out.print(renderable)
    else:
        out.print(data)


def emit_line(data: dict[str, Any], as_json: bool, text: str) -> None:
    """``cona-agent``'s result: one JSON object on one line (keys sorted), or one line of text."""
    typer.echo(json.dumps(data, sort_keys=True) if as_json else text)


def emit_document(data: dict[str, Any]) -> None:
    """A document for people and scripts alike (a hardware descriptor): indented JSON, keys sorted."""
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


def wide(min_width: int = 160) -> Console:
    """A stdout console at least ``min_width`` columns wide: a table too wide for the terminal is
    printed whole and the terminal wraps it, instead of squeezing every cell."""
    return out if out.width >= min_width else Console(width=min_width)


def report(exc: ConaError, *, as_json: bool = False, one_line: bool = False, hint: str | None = None) -> None:
    """Print ``exc`` on stderr: ``error:`` and ``hint:`` lines (``cona``), both on one line
    (``one_line``, ``cona-agent``), or ``{"error": {...}}`` (``as_json``). ``hint`` stands in
    for an error that carries none."""
    hint = exc.hint or hint
    if as_json:
        typer.echo(json.dumps({"error": exc.to_dict()}), err=True)
    elif one_line:
        typer.echo(f"error: {exc.message}" + (f" (hint: {hint})" if hint else ""), err=True)
    else:  # one line each, however long (no wrapping), and the text as it is (no markup)
        console.print(f"[red]error:[/] {escape(exc.message)}", soft_wrap=True)
        if hint:
            console.print(f"[dim]hint:[/] {escape(hint)}", soft_wrap=True)


def fail(exc: ConaError, *, as_json: bool = False, one_line: bool = False, hint: str | None = None) -> typer.Exit:
    """Report ``exc`` and return the exit to raise (``raise fail(exc) from None``)."""
    report(exc, as_json=as_json, one_line=one_line, hint=hint)
    return typer.Exit(EXIT_ERROR)


def run(app: typer.Typer, argv: list[str] | None = None, *, prog_name: str | None = None) -> None:
    """Run a typer app as a command line: a ``ConaError`` that escapes a command becomes the
    error line and exit status 2, never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(args=argv, prog_name=prog_name, standalone_mode=True)
    except ConaError as exc:
        report(exc)
        sys.exit(EXIT_ERROR)


def short(h: Any) -> str:
    """An address or hash shortened for a table (``--json`` always prints them whole)."""
    h = str(h)
    return h[:6] + "…" + h[-4:] if len(h) > 14 else h


def eth(wei: int | str) -> str:
    """An amount for people: ETH with six decimals from 10^12 wei up, else wei."""
    wei = int(wei)
    return f"{wei / 10**18:.6f} ETH" if wei >= 10**12 else f"{wei} wei"
