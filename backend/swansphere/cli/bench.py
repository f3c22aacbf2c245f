"""``swansphere bench ...``: benchmarks that print JSON."""

from __future__ import annotations

import argparse

from swansphere.foa.formats import OUTPUT_FORMATS

from .common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks (JSON output)")
    what = bench.add_subparsers(dest="bench", required=True, metavar="WHAT")
    p = what.add_parser(
        "render", help="batched head-tracked renderer vs the textbook NumPy renderer"
    )
    p.add_argument("--block", type=int, default=128, help="block size in samples")
    p.add_argument("--streams", type=int, default=64, help="head-tracked listeners")
    p.add_argument("--rate", type=int, default=48000, help="sample rate in Hz")
    p.add_argument("--seconds", type=float, default=2.0, help="audio seconds per stream")
    p.add_argument("--format", choices=OUTPUT_FORMATS, default="binaural")
    p.add_argument("--json", action="store_true", help="print JSON (always on; kept for scripts)")
    p.set_defaults(run=run_render_bench)


def run_render_bench(args: argparse.Namespace) -> int:
    from swansphere.bench.render import bench_render

    print_json(bench_render(args.block, args.streams, args.rate, args.seconds, args.format))
    return 0
