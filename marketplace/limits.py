"""Input limits: how much CONA accepts in one request, and a JSON parser that keeps to them.

Every edge that parses bytes from someone else (the API's routes, ``/rpc``, a JSON-RPC node's
answers) takes its limits from here, so one number means the same thing everywhere and a test
can send just over it.

Invariants:
- ``parse_json`` never recurses deeper than ``max_depth``: the nesting is measured first without
  recursion (strings are skipped by a regular expression, the brackets left are summed in C), and
  only a document within the limits reaches ``json.loads``. A document nested 100,000 deep costs a
  scan, never the interpreter's stack;
- ``json_depth`` measures an already parsed value with an explicit stack, never recursion;
- the interpreter's recursion limit is pinned to ``RECURSION_LIMIT`` by ``pin_recursion_limit``.
  py_ecc (imported by eth-account and py-evm) raises it to 100,000 on import, and CPython's C JSON
  parser counts its nesting against that limit: at 100,000 a deep document overflows the C stack
  and kills the process (SIGSEGV) where a RecursionError was due. py-evm raises it to 1024 * 12 on
  import, for the EVM's maximum call depth of 1,024 (measured here: about six Python frames per
  EVM call level; a self-calling contract 455 levels deep needs a limit of 2,800). That is the
  value kept: the EVM gets what it asks for, and a 12,288-deep parse still fits a thread's stack.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from array import array
from typing import Any

from marketplace.errors import DecodeError, LimitExceeded

#: deepest JSON nesting accepted anywhere (a JSON-RPC request needs about 5, an order document 6)
MAX_JSON_DEPTH = 64
#: longest JSON-RPC batch relayed to the chain (geth's default BatchRequestLimit)
MAX_RPC_BATCH = 1000
#: largest request body a route accepts unless it declares its own limit
MAX_BODY_BYTES = 2 * 1024 * 1024
#: largest JSON-RPC request body at ``/rpc`` (a batch of 1000 raw transactions of 2 KB fits)
MAX_RPC_BODY_BYTES = 4 * 1024 * 1024
#: largest order a buyer posts (``POST /v1/orders``): a spec's input is at most 1 MiB
#: (``marketplace.engine.spec.MAX_INPUT_BYTES``), sent as hex, plus the intent, signature and a tier proof
MAX_ORDER_BODY_BYTES = 2 * 1024 * 1024 + 64 * 1024
#: largest result a provider uploads: a run's stdout is kept up to 16 MiB (the agents' ``max_output_bytes``)
#: plus the result record's header and its manifest of output files
MAX_RESULT_BODY_BYTES = 17 * 1024 * 1024
#: largest body of the small documents: an LSA (a real one is under 1 KB), a heartbeat, a quote's
#: requirement, a buyer's signed cancel or dispute, a development request
MAX_SMALL_BODY_BYTES = 64 * 1024
#: the interpreter's recursion limit in CONA's processes: py-evm's own EVM_RECURSION_LIMIT (module docstring)
RECURSION_LIMIT = 1024 * 12

# A JSON string, unrolled so the regular expression engine never backtracks over its body.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)
# '[' and '{' -> +1, ']' and '}' -> -1 as a signed byte
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def max_nesting(body: bytes) -> int:
    """The deepest bracket nesting of a JSON text, brackets inside strings not counted.

    Without recursion and in C but for one call per document. An unterminated string leaves its
    brackets counted, so an invalid document can only measure deeper than ``json.loads`` would
    get before failing, never shallower.
    """
    brackets = _STRING.sub(b'""', body).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    opens = brackets.count(b"[") + brackets.count(b"{")
    if opens <= 1:
        return opens
    return max(itertools.accumulate(array("b", brackets.translate(_STEP))))


def parse_json(body: bytes | str, *, max_depth: int = MAX_JSON_DEPTH, max_bytes: int | None = MAX_BODY_BYTES,
               what: str = "body") -> Any:
    """``json.loads`` within limits: ``LimitExceeded`` over ``max_bytes`` or ``max_depth``,
    ``DecodeError`` (with the offset) for text that is not JSON. ``max_bytes=None``: no size limit."""
    raw = body.encode() if isinstance(body, str) else bytes(body)
    if max_bytes is not None and len(raw) > max_bytes:
        raise LimitExceeded(f"{what} is {len(raw)} bytes, more than the {max_bytes} accepted",
                            limit="max_bytes", maximum=max_bytes, field=what)
    depth = max_nesting(raw)
    if depth > max_depth:
        raise LimitExceeded(f"{what} is JSON nested {depth} deep, deeper than the {max_depth} accepted",
                            limit="max_depth", maximum=max_depth, field=what)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"{what} is not JSON: {exc.msg} at byte {exc.pos}", offset=exc.pos, field=what) from None
    except (ValueError, RecursionError) as exc:  # not UTF-8, an integer too long to convert
        raise DecodeError(f"{what} is not JSON: {exc}", field=what) from None


def json_depth(value: Any, *, stop_above: int | None = None) -> int:
    """The nesting depth of a parsed JSON value (a scalar is 0, ``[]`` is 1), with an explicit stack.

    ``stop_above``: return as soon as the depth is known to exceed it (a cheap refusal)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if stop_above is not None and deepest > stop_above:
                return deepest
        stack.extend((child, depth) for child in children if isinstance(child, (dict, list, tuple)))
    return deepest


def pin_recursion_limit(limit: int = RECURSION_LIMIT) -> int:
    """Import py_ecc (so its own raise of the limit has happened) and set the limit back to ``limit``.

    py_ecc raises the limit once, in its ``__init__``; after this call no later import raises it
    again. Returns the limit that was in force before."""
    import py_ecc  # noqa: F401  (for its side effect on the recursion limit)

    before = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    return before
