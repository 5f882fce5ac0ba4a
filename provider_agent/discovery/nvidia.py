"""NVIDIA GPU discovery from ``nvidia-smi -q -x`` (XML), ``--query-gpu`` (CSV) and exporter captures.

Three inputs, one result (``GpuFacts``):
- ``parse_smi_xml``: the XML log, DTD schema v11 (Tesla T4), v12 (A100, with MIG devices)
  and v13 (dual RTX A5000). Fields read per ``<gpu>``: product_name, fb_memory_usage/total,
  max_clocks/sm_clock, pci link generation and width, mig_mode/current_mig and each
  mig_device's multiprocessor_count and fb_memory_usage/total.
- ``parse_query_csv``: ``--query-gpu=... --format=csv`` (header names the fields and their
  units, ``memory.total [MiB]``) or ``--format=csv,noheader,nounits`` with the field list
  given by the caller.
- ``parse_capture``: an ``nvidia_gpu_exporter`` capture file (many ``# $ command`` sections);
  its idle ``--query-gpu`` section and its ``nvlink -s`` section are used.

Invariants:
- identical GPUs (same name, memory, clock, link, MIG shape) are one group with a count;
- a GPU in MIG mode is offered as its MIG instances: ``compute_units`` and ``memory_mib`` are
  the instance's, ``share_milli`` its fraction of the GPU's SMs (catalog SM count) or, if the
  catalog does not know the GPU, of its memory; ``flops`` stay the whole device's (the model's
  convention: share x flops is what a lease gets);
- peak FLOPS, bandwidth and interconnect come from ``marketplace.resources.catalog`` by name;
  an unknown name leaves them unknown and raises a warning;
- ``attached_gpus`` that disagrees with the ``<gpu>`` elements present is a warning; the count
  is what was seen.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Iterable, Sequence

from marketplace.resources import catalog
from marketplace.resources.model import DeviceCapability, DeviceClass
from provider_agent.discovery import nvidia_text
from provider_agent.discovery.common import DiscoveryWarning, Warnings, integer, is_missing, number

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Gpu:
    """One physical GPU or one MIG instance, as read (``None`` = not reported)."""

    name: str
    memory_mib: int | None
    max_sm_mhz: float | None
    pcie_gen: int | None
    pcie_width: int | None
    mig_sms: int | None = None  # set on MIG instances only
    mig_parent_mib: int | None = None
    mig_profile: str | None = None  # "3g.40gb" when nvidia-smi -L named it


@dataclass(frozen=True, slots=True)
class GpuFacts:
    devices: tuple[DeviceCapability, ...]
    warnings: tuple[DiscoveryWarning, ...] = ()
    driver: str | None = None


def _text(node: ET.Element | None, path: str) -> str | None:
    if node is None:
        return None
    found = node.find(path)
    if found is None or found.text is None:
        return None
    value = found.text.strip()
    return None if is_missing(value) else value


def _width(text: str | None) -> int | None:
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)x", text.strip())
    return int(m.group(1)) if m else None


def parse_smi_xml(text: str, source: str = "nvidia-smi-q.xml") -> GpuFacts:
    w = Warnings(source)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        w.add(f"not well-formed XML ({exc}): no GPU read")
        return GpuFacts((), w.freeze())
    if root.tag != "nvidia_smi_log":
        w.add(f"root element is <{root.tag}>, not <nvidia_smi_log>: no GPU read")
        return GpuFacts((), w.freeze())
    gpus: list[Gpu] = []
    elements = root.findall("gpu")
    attached = integer(_text(root, "attached_gpus"))
    if attached is not None and attached != len(elements):
        w.add(f"attached_gpus says {attached} but the log holds {len(elements)} <gpu> elements; "
              f"counting the {len(elements)} present")
    for el in elements:
        gid = el.get("id", "?")
        name = _text(el, "product_name")
        if name is None:
            w.add(f"gpu {gid} has no product_name: skipped")
            continue
        memory = integer(_text(el, "fb_memory_usage/total"), "MiB")
        if memory is None:
            w.add(f"gpu {gid} ({name}): fb_memory_usage/total missing or unreadable")
        clock = number(_text(el, "max_clocks/sm_clock"), "MHz")
        gen = integer(_text(el, "pci/pci_gpu_link_info/pcie_gen/max_link_gen"))
        width = _width(_text(el, "pci/pci_gpu_link_info/link_widths/max_link_width"))
        base = Gpu(name, memory, clock, gen, width)
        mig = _text(el, "mig_mode/current_mig")
        instances = el.findall("mig_devices/mig_device")
        if mig == "Enabled":
            if not instances:
                w.add(f"gpu {gid} ({name}) is in MIG mode with no MIG instance: nothing to offer")
            for inst in instances:
                sms = integer(_text(inst, "device_attributes/shared/multiprocessor_count"))
                mib = integer(_text(inst, "fb_memory_usage/total"), "MiB")
                if sms is None or mib is None:
                    w.add(f"gpu {gid} MIG instance {_text(inst, 'index')}: SM count or memory unreadable: skipped")
                    continue
                gpus.append(Gpu(name, mib, clock, gen, width, mig_sms=sms, mig_parent_mib=memory))
        else:
            gpus.append(base)
    return GpuFacts(group_gpus(gpus, w), w.freeze(), _text(root, "driver_version"))


# --- CSV ------------------------------------------------------------------------------------

#: the fields the live probe asks for with ``--format=csv,noheader,nounits``
PROBE_FIELDS = ("index", "name", "memory.total", "clocks.max.sm", "pcie.link.gen.max",
                "pcie.link.width.max", "mig.mode.current", "driver_version")


def parse_query_csv(text: str, fields: Sequence[str] | None = None, source: str = "nvidia-smi-query.csv",
                    listing: str | None = None, table: str | None = None) -> GpuFacts:
    """With ``fields`` the text is ``noheader,nounits``; without, its first row is the header.

    ``--query-gpu`` lists a GPU in MIG mode but not its instances: they are read from the default
    table (``table``, exact memory and SMs) or, failing that, from ``nvidia-smi -L`` (``listing``,
    profiles only); with neither the GPU is reported in a warning and not offered.
    """
    w = Warnings(source)
    rows = [r for r in csv.reader(io.StringIO(text), skipinitialspace=True) if r]
    if fields is None:
        if not rows:
            w.add("empty CSV: no header")
            return GpuFacts((), w.freeze())
        header, rows = rows[0], rows[1:]
        names = [re.sub(r"\s*\[.*\]$", "", h.strip()) for h in header]
    else:
        names = list(fields)
    if "name" not in names:
        w.add("no 'name' column: no GPU read")
        return GpuFacts((), w.freeze())
    if not rows:
        w.add("no GPU rows")
    gpus: list[Gpu] = []
    driver = None
    parsed_table = nvidia_text.parse_table(table, w) if table is not None else None
    parsed_list = nvidia_text.parse_list(listing, w) if listing is not None else None
    for n, row in enumerate(rows, 1):
        if len(row) != len(names):
            w.add(f"row {n} has {len(row)} values for {len(names)} columns: skipped (truncated?)")
            continue
        rec = dict(zip(names, row))

        def val(key: str, u: str | None) -> float | None:
            # header variant: "81559 MiB"; nounits variant: "81559" (number() accepts both)
            return number(rec.get(key), u)

        name = rec["name"].strip()
        if is_missing(name):
            w.add(f"row {n} has no GPU name: skipped")
            continue
        memory = val("memory.total", "MiB")
        if memory is None:
            w.add(f"row {n} ({name}): memory.total missing or unreadable")
        clock = val("clocks.max.sm", "MHz")
        gen = val("pcie.link.gen.max", None)
        width = val("pcie.link.width.max", None)
        driver = driver or (rec.get("driver_version") or None)
        base = Gpu(name, int(memory) if memory is not None else None, clock,
                   int(gen) if gen is not None else None, int(width) if width is not None else None)
        if rec.get("mig.mode.current", "").strip() == "Enabled":
            index = integer(rec.get("index")) if rec.get("index") is not None else n - 1
            gpus.extend(_mig_from_text(index if index is not None else n - 1, base, parsed_table, parsed_list, w))
            continue
        gpus.append(base)
    return GpuFacts(group_gpus(gpus, w), w.freeze(), driver)


def _mig_from_text(index: int, base: Gpu, table: "nvidia_text.SmiTable | None",
                   listing: "nvidia_text.SmiList | None", w: Warnings) -> list[Gpu]:
    """The MIG instances of GPU ``index`` (``base`` gives its name, memory, clock, link)."""
    listed_name, profiles = listing.gpus.get(index, (base.name, {})) if listing else (base.name, {})
    if listed_name != base.name:
        w.add(f"nvidia-smi -L names GPU {index} {listed_name!r}, not {base.name!r}: "
              "the two captures are of different machines or drivers; -L not used")
        profiles = {}
    rows = [r for r in table.mig if r.gpu == index] if table is not None else []
    if rows:
        return [dataclasses.replace(base, memory_mib=r.memory_mib, mig_sms=r.sms, mig_parent_mib=base.memory_mib,
                                    mig_profile=profiles.get(r.device)) for r in rows]
    if profiles:
        w.add(f"GPU {index} ({base.name}) MIG instances known by profile only ({', '.join(profiles.values())}): "
              "their exact memory is not in nvidia-smi -L; add the nvidia-smi table for it")
        return [dataclasses.replace(base, memory_mib=None, mig_parent_mib=base.memory_mib, mig_profile=p)
                for p in profiles.values()]
    w.add(f"GPU {index} ({base.name}) is in MIG mode but its instances are not in this capture: "
          "add the nvidia-smi table or nvidia-smi -L (or -q -x); GPU not offered")
    return []


def parse_smi_text(table: str | None, listing: str | None, source: str = "nvidia-smi.txt") -> GpuFacts:
    """The default ``nvidia-smi`` table and/or ``nvidia-smi -L``, without a CSV or XML."""
    w = Warnings(source)
    for text in (table, listing):
        if text and not text.endswith("\n"):
            w.add("text does not end with a newline: the output may be truncated")
    gpus: list[Gpu] = []
    parsed_list = nvidia_text.parse_list(listing, w) if listing is not None else None
    if table is not None:
        parsed = nvidia_text.parse_table(table, w)
        if not parsed.gpus:
            w.add("no GPU row in the nvidia-smi table")
        for g in parsed.gpus:
            base = Gpu(g.name, g.memory_mib, None, None, None)
            gpus.extend(_mig_from_text(g.index, base, parsed, parsed_list, w) if g.mig else [base])
        return GpuFacts(group_gpus(gpus, w), w.freeze(), parsed.driver)
    if parsed_list is None or not parsed_list.gpus:
        w.add("no 'GPU i: NAME' line in nvidia-smi -L")
        parsed_list = nvidia_text.SmiList({})
    for index, (name, profiles) in sorted(parsed_list.gpus.items()):
        w.add(f"GPU {index} ({name}): nvidia-smi -L gives no memory size")
        base = Gpu(name, None, None, None, None)
        gpus.extend(_mig_from_text(index, base, None, parsed_list, w) if profiles else [base])
    return GpuFacts(group_gpus(gpus, w), w.freeze(), None)


# --- exporter capture -----------------------------------------------------------------------

_RULE = "#" * 80


def split_capture(text: str) -> dict[str, str]:
    """Sections of an nvidia_gpu_exporter capture, keyed by their ``# phase :: title`` line.

    A section is a ``#####`` rule, ``# phase :: title``, optional ``# $ command`` lines,
    another rule, then the output up to the next rule. The text before the first section
    (``key: value`` header lines) is returned under ``"header"``.
    """
    lines = text.splitlines()
    out: dict[str, str] = {}
    i, title, body = 0, "header", []
    while i < len(lines):
        if lines[i] == _RULE and i + 1 < len(lines) and re.match(r"^# \S.* :: ", lines[i + 1]):
            out.setdefault(title, "\n".join(body).strip("\n") + "\n")
            title = lines[i + 1][2:].strip()
            i += 2
            while i < len(lines) and lines[i] != _RULE:
                i += 1
            i += 1
            body = []
            continue
        body.append(lines[i])
        i += 1
    out.setdefault(title, "\n".join(body).strip("\n") + "\n")
    return out


@dataclass(frozen=True, slots=True)
class Capture:
    gpus: GpuFacts
    header: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        return dict(self.header).get(key)


def parse_capture(text: str, source: str = "nvidia-smi-capture.txt") -> Capture:
    w = Warnings(source)
    if text and not text.endswith("\n"):
        w.add("text does not end with a newline: the capture may be truncated")
    sections = split_capture(text)
    pairs = []
    for ln in sections.get("header", "").splitlines():
        if not ln.strip() or ln.startswith("#"):
            continue
        key, sep, value = ln.partition(":")
        if not sep or not re.fullmatch(r"[a-z_]+", key.strip()):
            w.add(f"header line not understood: {ln[:60]!r}")
            continue
        pairs.append((key.strip(), value.strip()))
    header = tuple(pairs)
    query = next((v for k, v in sections.items() if k.startswith("idle :: query-gpu")), None)
    if query is None:
        query = next((v for k, v in sections.items() if ":: query-gpu" in k), None)
    if query is None:
        w.add("no '--query-gpu' section: no GPU read")
        return Capture(GpuFacts((), w.freeze()), header)
    table = next((v for k, v in sections.items() if k.startswith("idle :: nvidia-smi (default table)")), None)
    listing = sections.get("capabilities :: list (-L)")
    facts = parse_query_csv(query, source=f"{source}#query-gpu", listing=listing, table=table)
    nvlink = _nvlink(sections.get("capabilities :: nvlink -s"), w)
    devices = facts.devices
    if nvlink is not None:
        links, speeds = nvlink
        desc = f"NVLink {links} links x {'/'.join(f'{s:g}' for s in sorted(set(speeds)))} GB/s"
        devices = tuple(_with(d, interconnect="; ".join(x for x in (desc, d.interconnect) if x),
                              features=d.features | {"nvlink"}) for d in devices)
    w.extend(list(facts.warnings))
    return Capture(GpuFacts(devices, w.freeze(), facts.driver), header)


def _nvlink(section: str | None, w: Warnings) -> tuple[int, list[float]] | None:
    """Links and their speeds from ``nvidia-smi nvlink -s`` (first GPU), or None without NVLink."""
    if section is None or "does not have or support Nvlink" in section:
        return None
    speeds = []
    for line in section.splitlines():
        m = re.match(r"^\s+Link \d+: ([\d.]+) GB/s$", line)
        if m:
            speeds.append(float(m.group(1)))
        elif line.strip().startswith("GPU ") and speeds:
            break
        elif re.match(r"^\s+Link \d+:", line):
            w.add(f"nvlink line not understood: {line.strip()[:60]!r}")
    return (len(speeds), speeds) if speeds else None


# --- grouping and catalog -------------------------------------------------------------------


def _with(d: DeviceCapability, **changes: object) -> DeviceCapability:
    return dataclasses.replace(d, **changes)  # type: ignore[arg-type]


def _interconnect(g: Gpu) -> str | None:
    if g.pcie_gen is None:
        return None
    return f"PCIe Gen{g.pcie_gen}" + (f" x{g.pcie_width}" if g.pcie_width else "")


def group_gpus(gpus: Iterable[Gpu], w: Warnings) -> tuple[DeviceCapability, ...]:
    counts: dict[Gpu, int] = {}
    for g in gpus:
        counts[g] = counts.get(g, 0) + 1
    out = []
    for g, n in counts.items():
        spec = catalog.lookup(g.name)
        if spec is None:
            w.add(catalog.explain(g.name))
        features: set[str] = set()
        share, units = 1000, spec.compute_units if spec else None
        if g.mig_parent_mib is not None or g.mig_sms is not None or g.mig_profile is not None:
            features.add("mig")
            if g.mig_profile:
                features.add(f"mig-{g.mig_profile}")
            units = g.mig_sms
            share = _mig_share(g, spec, w)
        out.append(DeviceCapability(
            DeviceClass.GPU, g.name, "NVIDIA", count=n, compute_units=units,
            clock_mhz=g.max_sm_mhz if g.max_sm_mhz is not None else (spec.boost_clock_mhz if spec else None),
            flops=spec.flops if spec else (), memory_mib=g.memory_mib,
            memory_bandwidth_gbps=spec.memory_bandwidth_gbps if spec else None,
            interconnect=_link_text(g, spec), features=frozenset(features), share_milli=share))
    return tuple(out)


def _mig_share(g: Gpu, spec: catalog.DeviceSpec | None, w: Warnings) -> int:
    """A MIG instance's share of its GPU: SMs over the GPU's SMs, else memory, else compute slices."""
    def milli(part: float, whole: float) -> int:
        return max(1, min(1000, round(1000 * part / whole)))

    if g.mig_sms is not None and spec is not None and spec.compute_units:
        return milli(g.mig_sms, spec.compute_units)
    if g.memory_mib and g.mig_parent_mib:
        return milli(g.memory_mib, g.mig_parent_mib)
    slices = nvidia_text.profile_slices(g.mig_profile or "")
    if slices is not None and spec is not None and spec.mig_slices:
        return milli(slices, spec.mig_slices)
    w.add(f"{g.name} MIG instance {g.mig_profile or ''}: neither its SMs, its memory nor the GPU's MIG "
          "slices are known; offered as a whole device")
    return 1000


def _link_text(g: Gpu, spec: catalog.DeviceSpec | None) -> str | None:
    """The discovered PCIe link, then the datasheet's interconnect, as one line."""
    parts = [p for p in (_interconnect(g), f"datasheet: {spec.interconnect}" if spec and spec.interconnect else None) if p]
    return "; ".join(parts) or None
