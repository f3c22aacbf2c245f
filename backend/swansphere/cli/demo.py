"""``swansphere demo``: the main job of ``make demo``.

First the product's main job: a procedural panoramic clip streamed through the shipped
generator with a head turn (:mod:`swansphere.demo_stream`). Then the renderer check: a
synthetic moving source rendered to FOA and head-tracked binaural, and its round trip
through the shipped FOA-VAE (:mod:`swansphere.demo`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import ACCEL_CHOICES, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="stream a panoramic clip through the generator, with head tracking"
    )
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    p.add_argument("--model", default="default", help="bundle: default | PATH | models:/N@A")
    p.add_argument("--seconds", type=float, default=8.0, help="seconds of each demo clip")
    p.add_argument("--rate", type=int, default=48000)
    p.add_argument("--seed", type=int, default=11, help="which procedural clip")
    p.add_argument(
        "--accel",
        choices=ACCEL_CHOICES,
        default="eager",
        help="the generator's acceleration (make demo: aot, built on the first run)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from swansphere.demo import run_demo
    from swansphere.demo_stream import stream_clip

    generator = stream_clip(
        args.out / "generator",
        args.model,
        seed=args.seed,
        rate=args.rate,
        seconds=args.seconds,
        accel=args.accel,
    )
    renderer = run_demo(args.out / "renderer", seconds=args.seconds, rate=args.rate)
    renderer.pop("doa_segments")
    summary = {"generator": generator, "renderer": renderer}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print_json(summary)
    print(f"generator ({generator['accel']}): TTFC {generator['ttfc_ms']} ms (first session "
          f"after loading {generator['ttfc_cold_ms']} ms), RTF {generator['rtf']} "
          f"({generator['patches']} patches, {generator['audio_seconds']} s of audio)")  # fmt: skip
    for section in (generator, renderer):
        for name, path in section["files"].items():
            print(f"{name:>22}: {path}")
    return 0
