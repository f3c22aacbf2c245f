"""``swansphere bench ...``: benchmarks that print JSON."""

from __future__ import annotations

import argparse

from swansphere.foa.formats import OUTPUT_FORMATS

from .common import ACCEL_CHOICES, print_json


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
    _register_serve(what)

    s = what.add_parser("stream", help="streaming generator: time to first chunk, real-time factor")
    s.add_argument("--preset", default="tiny", help="generator preset at random weights")
    s.add_argument("--model", help="a bundle instead of the random preset (default | PATH | ...)")
    s.add_argument("--steps", type=int, help="LocDiT Euler steps (model default: 20)")
    s.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    s.add_argument("--sessions", type=int, default=8, help="fresh sessions timed for TTFC")
    s.add_argument("--patches", type=int, default=40, help="patches timed for the RTF")
    s.add_argument("--device", default="cpu")
    s.add_argument("--accel", choices=ACCEL_CHOICES, default="eager")
    s.add_argument(
        "--sessions-concurrent", type=int, default=1, metavar="N",
        help="also time N sessions' patches with batched LocDiT sampling vs one after the other",
    )  # fmt: skip
    s.add_argument(
        "--no-caption", action="store_true",
        help="video-only sessions (the LocDiT then runs 2 guidance rows, not 3)",
    )  # fmt: skip
    s.add_argument("--json", action="store_true", help="print JSON (always on; kept for scripts)")
    s.set_defaults(run=run_stream_bench)


def run_stream_bench(args: argparse.Namespace) -> int:
    from swansphere.bench.stream import bench_stream

    options = {k: getattr(args, k) for k in ("preset", "model", "steps", "threads", "sessions")}
    options.update(patches=args.patches, device=args.device, accel=args.accel)
    options.update(sessions_concurrent=args.sessions_concurrent, caption=not args.no_caption)
    print_json(bench_stream(**options))
    return 0


def _register_serve(what: argparse._SubParsersAction) -> None:
    p = what.add_parser("serve", help="gRPC server: TTFC, RTF, ingest, concurrent sessions, RSS")
    p.add_argument("--model", help="runtime spec (default: the shipped bundle, else random:tiny)")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.add_argument("--trials", type=int, default=5, help="TTFC sessions (median reported)")
    p.add_argument("--seconds", type=float, default=4.0, help="audio seconds per live session")
    p.add_argument("--max-sessions", type=int, default=4, help="highest concurrency tried")
    p.add_argument("--dropped", type=int, default=100, help="sessions opened and dropped (RSS)")
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--no-batch", action="store_true", help="every session samples alone")
    p.add_argument("--batch-window-ms", type=float, help="LocDiT batch window (default 50)")
    p.add_argument("--accel", choices=ACCEL_CHOICES, default="eager")
    p.add_argument("--json", action="store_true", help="print JSON (always on; kept for scripts)")
    p.set_defaults(run=run_serve_bench)


def run_serve_bench(args: argparse.Namespace) -> int:
    from swansphere.bench.serve import bench_serve

    result = bench_serve(
        args.model,
        args.steps,
        args.trials,
        args.seconds,
        args.max_sessions,
        args.dropped,
        args.torch_threads,
        batch=not args.no_batch,
        batch_window_ms=args.batch_window_ms,
        accel=args.accel,
    )
    print_json(result)
    return 0


def run_render_bench(args: argparse.Namespace) -> int:
    from swansphere.bench.render import bench_render

    print_json(bench_render(args.block, args.streams, args.rate, args.seconds, args.format))
    return 0
