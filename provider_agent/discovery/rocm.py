"""AMD GPU discovery from ``rocm-smi ... --json``.

rocm-smi's JSON is a flat object per card (``card0``, ``card1``...) plus ``system``; its keys
change between ROCm versions. The two real captures show it:
- ROCm 6.0.2 (4x Instinct MI100): ``Card series`` is the PCI name
  ``"Arcturus GL-XL [Instinct MI100]"``, ``Card vendor`` is ``"Advanced Micro Devices, Inc. [AMD/ATI]"``,
  the device id is under ``Device ID``;
- ROCm 4.3.0 (RX 6700 XT): ``Card series``, ``Card model`` and ``Card vendor`` are all the bare
  vendor id ``"0x1002"`` and the device id is under ``GPU ID`` (``0x73df``). That id names the
  Navi 22 family, not one board, so the model is reported as the id and no FLOPS are given;
- ROCm 5.7.1: ``Card series`` is the PCI name ``"Navi 22 [Radeon RX 6700/6700 XT / 6800M]"``, the id
  is under ``GPU ID``;
- ROCm 6.1.2 and 6.2.4: the keys are capitalised (``Card Series``, ``Card Model``) and ``Device Name``
  repeats the PCI name. A bracketed name listing several products resolves to one only when the
  VRAM size fits exactly one datasheet (RX 7700 XT 12 GB vs 7800 XT 16 GB); else it is kept as
  printed, without FLOPS, with a warning.

Fields read: the marketing name (the bracketed part of ``Card series``), ``VRAM Total Memory (B)``,
``pcie clock level`` (link speed and width), and the ``system`` ``(Topology) Link type`` entries
(XGMI vs PCIE). Clock levels are not read: rocm-smi merges several clocks' numbered levels under
the same keys ("0", "1"...), so a level's clock cannot be told apart.

Invariants: unknown keys are ignored (there are many and they change); a card without
memory or name gives a warning, never a made-up figure.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

from marketplace.resources import catalog
from marketplace.resources.model import DeviceCapability, DeviceClass
from provider_agent.discovery.common import DiscoveryWarning, Warnings, integer, is_missing

log = logging.getLogger(__name__)

AMD_PCI_VENDOR = "0x1002"


@dataclass(frozen=True, slots=True)
class RocmFacts:
    devices: tuple[DeviceCapability, ...]
    warnings: tuple[DiscoveryWarning, ...] = ()
    driver: str | None = None


#: where each ROCm version puts the marketing name: 4.3-6.0 "Card series", 6.1+ "Card Series" and
#: "Device Name" (the PCI database name, "Navi 32 [Radeon RX 7700 XT / 7800 XT]")
NAME_KEYS = ("Card series", "Card Series", "Device Name", "Card SKU")
DEVICE_ID_KEYS = ("Device ID", "GPU ID", "Card model", "Card Model")


def _model(card: dict[str, object]) -> str | None:
    names = [str(card.get(k) or "") for k in NAME_KEYS]
    for series in names:
        m = re.search(r"\[([^\]]+)\]\s*$", series)
        if m:
            return f"AMD {m.group(1)}"
    for series in names[:3]:
        if series and not re.fullmatch(r"0x[0-9a-fA-F]+", series) and not is_missing(series):
            return series
    for key in DEVICE_ID_KEYS:
        device = card.get(key)
        if isinstance(device, str) and re.fullmatch(r"0x[0-9a-fA-F]+", device) and device.lower() != AMD_PCI_VENDOR:
            return f"AMD GPU {device.lower()}"
    return None


def parse_rocm_json(text: str, source: str = "rocm-smi.json") -> RocmFacts:
    w = Warnings(source)
    try:
        data = json.loads(text)
    except ValueError as exc:
        w.add(f"not JSON ({exc}): no GPU read")
        return RocmFacts((), w.freeze())
    if not isinstance(data, dict):
        w.add("top level is not an object: no GPU read")
        return RocmFacts((), w.freeze())
    system = data.get("system") if isinstance(data.get("system"), dict) else {}
    link_types = {str(v).upper() for k, v in system.items() if str(k).startswith("(Topology) Link type")}
    cards = sorted((k for k in data if re.fullmatch(r"card\d+", k)), key=lambda k: int(k[4:]))
    if not cards:
        w.add("no cardN entries: no GPU read")
    groups: dict[tuple[str, int | None, str | None], int] = {}
    for key in cards:
        card = data[key]
        if not isinstance(card, dict):
            w.add(f"{key} is not an object: skipped")
            continue
        name = _model(card)
        if name is None:
            w.add(f"{key}: neither a card name nor a device id: skipped")
            continue
        if name.startswith("AMD GPU 0x"):
            w.add(f"{key}: rocm-smi printed only PCI ids (Card series {card.get('Card series')!r}); "
                  f"model left as the device id")
        vram = integer(str(card.get("VRAM Total Memory (B)", "N/A")))
        mib = vram // (1024 * 1024) if vram is not None else None
        if mib is None:
            w.add(f"{key} ({name}): VRAM Total Memory (B) missing or unreadable")
        pcie = card.get("pcie clock level")
        link = None
        m = re.search(r"\(([\d.]+GT/s) x(\d+)\)", str(pcie or ""))
        if m:
            link = f"PCIe {m.group(1)} x{m.group(2)}"
        groups[(name, mib, link)] = groups.get((name, mib, link), 0) + 1
    devices = []
    for (name, mib, link), n in groups.items():
        spec, why = catalog.resolve(name, mib)
        if spec is None:
            w.add(why)
        elif "/" in name:
            name = spec.model  # a family name resolved by memory size: offer the product's name
        links = [x for x in (link, "XGMI between GPUs" if "XGMI" in link_types else None,
                             f"datasheet: {spec.interconnect}" if spec and spec.interconnect else None) if x]
        devices.append(DeviceCapability(
            DeviceClass.GPU, name, "AMD", count=n,
            compute_units=spec.compute_units if spec else None,
            clock_mhz=spec.boost_clock_mhz if spec else None,
            flops=spec.flops if spec else (), memory_mib=mib,
            memory_bandwidth_gbps=spec.memory_bandwidth_gbps if spec else None,
            interconnect="; ".join(links) or None,
            features=frozenset({"xgmi"} if "XGMI" in link_types else set())))
    driver = system.get("Driver version") if isinstance(system, dict) else None
    return RocmFacts(tuple(devices), w.freeze(), str(driver) if driver else None)
