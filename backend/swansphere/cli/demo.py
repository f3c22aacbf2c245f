"""``swansphere demo``: the main job of ``make demo``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="render a moving source to AmbiX FOA and head-tracked binaural")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rate", type=int, default=48000)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from swansphere.demo import run_demo

    summary = run_demo(args.out, seconds=args.seconds, rate=args.rate)
    summary.pop("doa_segments")
    print_json(summary)
    for name, path in summary["files"].items():
        print(f"{name:>22}: {path}")
    return 0
