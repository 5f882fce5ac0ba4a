"""The Slither gate of `make test`: fail on any High or Medium finding in the project's contracts.

Runs Slither (its own virtual environment, `.venv-slither`: it pins web3 below the project's) over
`contracts/` with the project's pinned compiler behind `tools/slither/solc` (no compiler download),
OpenZeppelin's sources filtered out. A finding is accepted only where it is triaged in place, on the
line above it, with `// slither-disable-next-line DETECTOR` and a comment saying why.

Usage: python tools/slither/gate.py [--slither PATH] [--target DIR]   (exit 0: clean, 1: findings, 2: Slither
failed)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCKING = ("High", "Medium")


def run(slither: Path, target: str = "contracts/") -> dict:
    with tempfile.TemporaryDirectory(prefix="cona-slither-") as tmp:
        out = Path(tmp) / "slither.json"
        proc = subprocess.run(
            [str(slither), target, "--solc", str(ROOT / "tools/slither/solc"), "--solc-standard-json",
             "--filter-paths", "node_modules", "--json", str(out)],
            cwd=ROOT, capture_output=True, text=True, timeout=900)
        shutil.rmtree(ROOT / "crytic-export", ignore_errors=True)
        if not out.exists():
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise SystemExit(2)
        doc = json.loads(out.read_text())
    if not doc.get("success", False):
        sys.stderr.write(f"slither failed: {doc.get('error')}\n")
        raise SystemExit(2)
    return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slither", type=Path, default=ROOT / ".venv-slither" / "bin" / "slither")
    ap.add_argument("--target", default="contracts/", help="the sources to analyse (default: contracts/)")
    args = ap.parse_args()
    findings = run(args.slither, args.target).get("results", {}).get("detectors", [])
    counts = Counter(f["impact"] for f in findings)
    blocking = [f for f in findings if f["impact"] in BLOCKING]
    print("slither: " + ", ".join(f"{counts[k]} {k}" for k in ("High", "Medium", "Low", "Informational",
                                                              "Optimization")))
    for f in blocking:
        print(f"\n[{f['impact']}] {f['check']}: {f['description'].strip()}")
    if blocking:
        print("\ntriage each in place (// slither-disable-next-line DETECTOR, with the reason) or fix it")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
