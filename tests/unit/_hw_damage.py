"""Ways a real dump arrives damaged: truncated, reordered, localised, or mixed from two versions.

Every function takes a dump (``{file name: text}``, as a fixture folder holds it) and returns
damaged copies, each labelled; the damage is mechanical and reproducible, the text it works on is
always a real capture from tests/fixtures/hw.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.unit._hw import FIXTURES

DUMP_NAMES = ("cpuinfo", "lscpu.txt", "online", "possible", "nvidia-smi-q.xml", "nvidia-smi-capture.txt",
              "nvidia-smi.txt", "nvidia-smi-L.txt", "nvidia-smi-query.csv", "rocm-smi.json", "npu-smi.txt",
              "xpu-smi.txt", "sycl-ls.txt", "system_profiler.txt", "tegrastats.txt", "device-tree-model")

#: lscpu keys as util-linux 2.41 po/de.po translates them (the real German lscpu output)
LSCPU_DE = {"Model name:": "Modellname:", "Thread(s) per core:": "Thread(s) pro Kern:",
            "Core(s) per socket:": "Kern(e) pro Sockel:", "Socket(s):": "Sockel:",
            "CPU max MHz:": "Maximale Taktfrequenz der CPU:", "Flags:": "Markierungen:",
            "Architecture:": "Architektur:", "Vendor ID:": "Anbieterkennung:"}


def fixture_dirs() -> list[Path]:
    return sorted(p for p in FIXTURES.iterdir() if (p / "expected.json").is_file())


def load(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir()) if p.name in DUMP_NAMES}


def truncated(dump: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """Each file cut mid-line at a quarter, a half and three quarters (as a killed tool leaves it)."""
    out = []
    for name, text in dump.items():
        for k in (1, 2, 3):
            cut = text[: len(text) * k // 4]
            if cut != text:
                out.append((f"{name} cut at {k}/4", {**dump, name: cut}))
    return out


def reordered(dump: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """Each file with its blank-line blocks (or, in one-block files, its lines) in reverse order;
    a JSON file with its objects' keys reversed (still valid JSON)."""
    out = []
    for name, text in dump.items():
        if name.endswith(".json"):
            try:
                data = json.loads(text)
            except ValueError:
                continue
            rev = {k: (dict(reversed(list(v.items()))) if isinstance(v, dict) else v) for k, v in reversed(list(data.items()))}
            out.append((f"{name} keys reversed", {**dump, name: json.dumps(rev, indent=4) + "\n"}))
            continue
        blocks = re.split(r"\n\s*\n", text.strip("\n"))
        new = "\n\n".join(reversed(blocks)) if len(blocks) > 1 else "\n".join(reversed(text.strip("\n").split("\n")))
        if new.strip() != text.strip():
            out.append((f"{name} reordered", {**dump, name: new + "\n"}))
    return out


def localised(dump: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """lscpu with its German keys (LANG=de_DE); every file with decimal commas (2300,0000)."""
    out = []
    if "lscpu.txt" in dump:
        text = dump["lscpu.txt"]
        for en, de in LSCPU_DE.items():
            text = text.replace(en, de)
        out.append(("lscpu.txt in German", {**dump, "lscpu.txt": text}))
    for name, text in dump.items():
        comma = re.sub(r"(\d)\.(\d)", r"\1,\2", text)
        if comma != text:
            out.append((f"{name} with decimal commas", {**dump, name: comma}))
    return out
