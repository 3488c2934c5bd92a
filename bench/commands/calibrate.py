"""``convbench calibrate``: this GPU's ceilings for the roofline (method in
:mod:`bench.calibrate`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.commands import common_args
from bench.text import plain


def add_arguments(p: argparse.ArgumentParser) -> None:
    common_args.add_device_option(p.add_argument)
    p.add_argument("--out", type=Path, default=Path("results"),
                   help="results root; writes OUT/calibration/<gpu-uuid>.json")


def main(args: argparse.Namespace) -> int:
    return run(device=args.device, out=args.out)


def run(*, device: int = 0, out: str | Path = "results") -> int:
    from bench.calibrate import calibrate

    path = calibrate(device, out)
    doc = json.loads(path.read_text())
    m = doc["measured"]
    ds = doc.get("datasheet") or {}
    print(plain(doc["gpu"].get("name")) + f": copy {m['copy_gbps']:.0f} GB/s"
          + (f" (datasheet {ds['bandwidth_gbps']:g})" if ds else ""))
    for prec, tf in m["tflops"].items():
        sheet = (ds.get("tflops") or {}).get(prec) if ds else None
        print(f"  {prec}: {tf:.1f} TFLOP/s" + (f" (datasheet {sheet:g})" if sheet else ""))
    print(f"calibration: {path}")
    return 0
