"""``lscpu`` output as blocks of one CPU type each (x86 servers have one, big.LITTLE SoCs several).

lscpu's layout changed between util-linux versions: older ones print a flat ``Key: value`` list in
one order, 2.38+ indent the per-type keys under ``Vendor ID`` and wrap long ``Flags`` over several
lines; ARM boards print ``Core(s) per cluster``/``Cluster(s)`` with ``Socket(s): -``; some ARM
servers (Kunpeng 920) print only ``BIOS Model name``; s390x prints ``Model name: -`` with a
``Machine type`` and a book/drawer topology that describes the whole machine, not the partition.

Invariants:
- a block's model is ``Model name``, else ``BIOS Model name``, else the s390 machine type; a block
  with none of them keeps ``model_name`` ``None`` (``cpu.cpu_devices`` names it from cpuinfo or says
  it could not);
- a ``-`` or empty value is missing, never a zero;
- localised output (``LANG=zh_CN lscpu``) is recognised and reported: its keys are not read;
- an appended ``lscpu -p`` section is row-counted and checked against the online CPUs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from provider_agent.discovery.common import DiscoveryWarning, Warnings, cpu_list, integer, number, truncation

_BLOCK_KEYS = frozenset({
    "Model name", "BIOS Model name", "Model", "CPU family", "BIOS CPU family", "Thread(s) per core",
    "Core(s) per socket", "Core(s) per cluster", "Core(s) per book", "Socket(s)", "Cluster(s)",
    "Socket(s) per book", "Book(s)", "Book(s) per drawer", "Drawer(s)", "Stepping", "CPU max MHz",
    "CPU min MHz", "BogoMIPS", "Flags", "CPU(s) scaling MHz", "Frequency boost", "CPU MHz", "Machine type",
})

#: keys every English lscpu prints; none of them in a long output means it was localised
_ENGLISH_KEYS = frozenset({"Architecture", "Vendor ID", "Model name", "BIOS Model name", "Byte Order", "Socket(s)",
                           "Core(s) per socket", "Thread(s) per core"})

_PARSABLE_ROW = re.compile(r"^\d+(,[0-9A-Za-z:.-]*)+$")

#: IBM Z machine types (lscpu ``Machine type``, cpuinfo ``machine =``) as IBM names the systems
S390_MACHINES = {
    "2097": "IBM z10 EC", "2098": "IBM z10 BC", "2817": "IBM z196", "2818": "IBM z114", "2827": "IBM zEC12",
    "2828": "IBM zBC12", "2964": "IBM z13", "2965": "IBM z13s", "3906": "IBM z14", "3907": "IBM z14 ZR1",
    "8561": "IBM z15", "8562": "IBM z15 T02", "3931": "IBM z16", "3932": "IBM z16 A02",
}


def s390_model(machine: str | None) -> str | None:
    if not machine:
        return None
    name = S390_MACHINES.get(machine.strip())
    return f"{name} (machine type {machine.strip()})" if name else f"IBM Z machine type {machine.strip()}"


def _missing(value: str | None) -> bool:
    return value is None or value.strip() in ("", "-")


@dataclass(frozen=True, slots=True)
class LscpuBlock:
    """One CPU type as lscpu prints it."""

    fields: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        return dict(self.fields).get(key)

    @property
    def model_name(self) -> str | None:
        for key in ("Model name", "BIOS Model name"):
            if not _missing(self.get(key)):
                return self.get(key)
        return s390_model(self.get("Machine type"))

    @property
    def sockets(self) -> int | None:
        for key in ("Socket(s)", "Cluster(s)"):
            value = self.get(key)
            if not _missing(value):
                return integer(value)
        return None

    @property
    def cores_per_socket(self) -> int | None:
        for key in ("Core(s) per socket", "Core(s) per cluster"):
            value = self.get(key)
            if not _missing(value):
                return integer(value)
        return None

    @property
    def threads_per_core(self) -> int | None:
        return integer(self.get("Thread(s) per core"))

    @property
    def max_mhz(self) -> float | None:
        value = self.get("CPU max MHz")
        if value is not None and re.fullmatch(r"\s*\d+,\d+\s*", value):
            value = value.replace(",", ".")  # printed under a locale with a decimal comma
        return number(value)

    @property
    def flags(self) -> frozenset[str]:
        return frozenset((self.get("Flags") or "").split())

    @property
    def s390_books(self) -> bool:
        """s390 topology (books, drawers) describes the machine, not this partition's CPUs."""
        return self.get("Socket(s) per book") is not None or self.get("Book(s)") is not None


@dataclass(frozen=True, slots=True)
class Lscpu:
    globals: tuple[tuple[str, str], ...]
    blocks: tuple[LscpuBlock, ...]
    warnings: tuple[DiscoveryWarning, ...] = ()
    localised: bool = False

    def get(self, key: str) -> str | None:
        return dict(self.globals).get(key)

    @property
    def cpus(self) -> int | None:
        return integer(self.get("CPU(s)"))

    @property
    def online(self) -> frozenset[int] | None:
        text = self.get("On-line CPU(s) list")
        return cpu_list(text) if text else None

    @property
    def numa_nodes(self) -> int | None:
        count = integer(self.get("NUMA node(s)"))
        if count is not None:
            return count
        listed = [k for k, _ in self.globals if re.fullmatch(r"NUMA node\d+ CPU\(s\)", k)]
        return len(listed) or None


def _split_lines(text: str, w: Warnings) -> tuple[list[tuple[str, str]], list[int]]:
    """``(key, value)`` pairs with wrapped continuation lines joined, and the ``lscpu -p`` row counts."""
    pairs: list[tuple[str, str]] = []
    sections: list[int] = []
    value_col = None
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            value_col = None
            continue
        if stripped.startswith("#"):
            if stripped.startswith("# CPU,"):
                sections.append(0)
            continue
        if _PARSABLE_ROW.match(stripped) and sections:
            sections[-1] += 1
            continue
        if value_col is not None and pairs and len(line) > value_col and not line[:value_col].strip():
            # lscpu wraps a long value (Flags) at the terminal width, aligned under its column
            key, value = pairs[-1]
            pairs[-1] = (key, value + line[value_col:].rstrip())
            continue
        m = re.match(r"^(\s*)([^:：]+)[:：](\s*)(.*)$", line)
        if m:
            pairs.append((m.group(2).strip(), m.group(4).rstrip()))
            value_col = m.start(4) if m.group(4) else None
        else:
            w.add(f"line {lineno} is not 'Key: value': {line[:60]!r}")
    return pairs, sections


def parse_lscpu(text: str, source: str = "lscpu") -> Lscpu:
    """Plain ``lscpu`` output; an appended ``lscpu -p`` section is checked for completeness."""
    w = Warnings(source)
    truncation(text, w)
    pairs, sections = _split_lines(text, w)
    globals_: list[tuple[str, str]] = []
    blocks: list[list[tuple[str, str]]] = [[]]
    for key, value in pairs:
        if key in _BLOCK_KEYS:
            if any(k == key for k, _ in blocks[-1]):  # a key seen twice starts the next core type
                blocks.append([])
            blocks[-1].append((key, value))
        else:
            globals_.append((key, value))
    localised = len(pairs) >= 8 and not {k for k, _ in pairs} & _ENGLISH_KEYS
    out = Lscpu(tuple(globals_), tuple(LscpuBlock(tuple(b)) for b in blocks if b), (), localised)
    if localised:
        w.add("lscpu output is localised (keys such as "
              f"{pairs[0][0]!r}); its fields cannot be read: capture it with LC_ALL=C lscpu")
        return Lscpu(out.globals, (), w.freeze(), True)
    _check(out, sections, w)
    return Lscpu(out.globals, out.blocks, w.freeze(), False)


def _check(out: Lscpu, sections: list[int], w: Warnings) -> None:
    if out.cpus is None:
        w.add("no usable 'CPU(s)' line")
    if not out.blocks:
        w.add("no CPU model block")
    for i, block in enumerate(out.blocks):
        for what, value in (("Model name", block.model_name), ("Thread(s) per core", block.threads_per_core)):
            if value is None:
                w.add(f"CPU block {i} ({block.model_name or '?'}) has no usable {what!r}")
        if not block.s390_books:
            for what, value in (("Socket(s)", block.sockets), ("Core(s) per socket", block.cores_per_socket)):
                if value is None:
                    w.add(f"CPU block {i} ({block.model_name or '?'}) has no usable {what!r}")
    if out.cpus is None:
        return
    counted = sum((b.sockets or 0) * (b.cores_per_socket or 0) * (b.threads_per_core or 0) for b in out.blocks)
    if out.blocks and not any(b.s390_books for b in out.blocks) and counted != out.cpus and \
            all(b.sockets and b.cores_per_socket and b.threads_per_core for b in out.blocks):
        w.add(f"sockets x cores x threads = {counted} but CPU(s) says {out.cpus}")
    online = out.online
    expected = {out.cpus, len(online)} if online is not None else {out.cpus}
    for n, rows in enumerate(sections):
        if rows not in expected:
            w.add(f"parsable section {n} has {rows} rows but CPU(s) says {out.cpus}: truncated?")
