"""Fletcher checksums: plain Fletcher-16 and the ISO 8473 / ISO 10589 form LSAs carry.

The ISO form (used by IS-IS LSPs and OSPF LSAs) places two check octets X, Y inside
the checksummed region so that the running sums over the whole region are both 0
modulo 255. Neither X nor Y is ever 0 (255 stands for 0), so a zero checksum field
always means "not computed".

Invariants:
- ``c0 = sum(b_i) mod 255`` and ``c1 = sum((n - i) * b_i) mod 255`` over a region of
  n bytes, exactly as the byte-at-a-time loop ``c0 += b; c1 += c0`` computes them;
- no per-byte Python loop: ``c0`` and ``c1`` are computed with C-speed primitives. One
  big-integer reduction ``r = int(data) mod 255**2`` gives ``S + 255 W`` (S the plain sum,
  W the weighted sum), because 256**k = (1 + 255)**k = 1 + 255k mod 255**2; so r mod 255
  is S mod 255. ``zlib.adler32`` gives S mod 65521 in one call, and since 65521 and 255
  are coprime the two residues fix S exactly (Chinese remainder) whenever S < 255 * 65521,
  i.e. for any region under 65521 bytes (an LSA is at most 1492). Longer regions take
  exact sums of 256-byte blocks from adler32 instead.
"""

from __future__ import annotations

import zlib

_MOD2 = 255 * 255
_ADLER_MOD = 65521  # the largest prime under 2**16
_INV_ADLER_MOD_255 = pow(_ADLER_MOD, -1, 255)


def fletcher_sums(data: bytes) -> tuple[int, int]:
    """(c0, c1) of the Fletcher running sums over ``data``, each modulo 255."""
    data = bytes(data)
    n = len(data)
    r = int.from_bytes(data, "big") % _MOD2  # S + 255 * sum b_i*(n-1-i)  (mod 255**2)
    if n < _ADLER_MOD:
        # S = a + 65521 k with k in 0..254: k from S = r (mod 255)
        a = ((zlib.adler32(data) & 0xFFFF) - 1) % _ADLER_MOD  # adler32's low half is 1 + S mod 65521
        s0 = a + _ADLER_MOD * (((r - a) * _INV_ADLER_MOD_255) % 255)
    else:
        s0 = 0
        # a 256-byte block sums to at most 65280 < 65521, so each block sum is exact
        for i in range(0, n, 256):
            s0 += (zlib.adler32(data[i : i + 256]) & 0xFFFF) - 1
    weighted = ((r - s0) % _MOD2) // 255  # sum b_i*(n-1-i) mod 255
    return s0 % 255, (weighted + s0) % 255  # sum b_i*(n-i) = weighted + s0


def fletcher16(data: bytes) -> int:
    """Fletcher-16 (modulo 255) of ``data``: ``(c1 << 8) | c0``."""
    c0, c1 = fletcher_sums(data)
    return (c1 << 8) | c0


def iso_checksum(region: bytes, offset: int) -> int:
    """The ISO 10589 check octets for ``region`` with the checksum at ``offset``..``offset+1``.

    The two octets at ``offset`` are taken as zero whatever they hold. Returns ``X << 8 | Y``,
    never 0.
    """
    n = len(region)
    if not 0 <= offset <= n - 2:
        raise ValueError(f"checksum offset {offset} outside a region of {n} bytes")
    c0, c1 = fletcher_sums(region[:offset] + b"\x00\x00" + region[offset + 2 :])
    x = ((n - offset - 1) * c0 - c1) % 255 or 255
    y = (-c0 - x) % 255 or 255
    return (x << 8) | y


def iso_verify(region: bytes) -> bool:
    """True when ``region`` (check octets in place) sums to zero in both running sums."""
    c0, c1 = fletcher_sums(region)
    return c0 == 0 and c1 == 0
