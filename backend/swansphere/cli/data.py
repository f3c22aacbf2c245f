"""``swansphere data ...``: the procedural corpus, captioning, importers and statistics.

The work lives in the training package (``swansphere_training``); this module only
parses arguments and prints summaries.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from swansphere.errors import InputError

from .common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="procedural corpus, captioning, importers, statistics")
    what = data.add_subparsers(dest="data", required=True, metavar="WHAT")

    p = what.add_parser("synth", help="synthesise procedural panoramic audio-visual clips")
    p.add_argument("--out", type=Path, required=True, help="corpus folder (clips go to OUT/SPLIT/)")
    p.add_argument("--clips", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=["train", "val", "test"], default="train")
    p.add_argument(
        "--start",
        type=int,
        default=0,
        help="index of the first clip (default 0): --clips N --start S writes clips S .. "
        "S+N-1, so a corpus grows without rewriting the clips it has (clip i is the same "
        "whatever the start)",
    )
    p.add_argument(
        "--preset",
        choices=["default", "small"],
        default="default",
        help="default: 44.1 kHz; small: 22.05 kHz (the tiny model's rate)",
    )
    p.add_argument("--seconds", type=float, help="clip length (default 10 s)")
    p.add_argument("--sources", type=int, help="fix the number of sources per clip (1-3)")
    p.add_argument("--workers", type=int, help="processes (default: both cores)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=run_synth)

    p = what.add_parser("caption", help="automated spatial captioning of a corpus")
    p.add_argument("root", type=Path)
    p.add_argument("--split", help="only this split")
    p.add_argument("--seed", type=int, default=0, help="seed of the caption wording")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=run_caption)

    p = what.add_parser("import", help="import a real corpus into the clip format")
    p.add_argument("--layout", choices=["sphere360", "ytambigen", "captions"], required=True)
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--split", default="train")
    p.add_argument("--clip-seconds", type=float, default=10.0)
    p.add_argument("--rate", type=int, default=44100)
    p.set_defaults(run=run_import)

    p = what.add_parser("stats", help="class, direction and duration histograms (PNG + JSON)")
    p.add_argument("root", type=Path)
    p.add_argument("--out", type=Path, help="where to write the plots (default ROOT/stats)")
    p.set_defaults(run=run_stats)


def run_synth(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from swansphere_training.corpus.scene import PRESETS
    from swansphere_training.corpus.synth import synthesize_corpus

    if args.clips < 1:
        raise InputError(f"--clips must be at least 1, got {args.clips}")
    if args.start < 0:
        raise InputError(f"--start must be at least 0, got {args.start}")
    if args.sources is not None and not 1 <= args.sources <= 3:
        raise InputError(f"--sources must be 1, 2 or 3, got {args.sources}")
    config = PRESETS[args.preset]
    if args.seconds is not None:
        if not 1.0 <= args.seconds <= 60.0:
            raise InputError(f"--seconds must be between 1 and 60, got {args.seconds}")
        config = replace(config, seconds=args.seconds)
    summary = synthesize_corpus(
        args.out, args.clips, args.seed, args.split, config, args.workers, args.sources,
        start_index=args.start,
    ).to_json()  # fmt: skip
    if args.json:
        print_json(summary)
    else:
        print(
            f"{summary['clips']} clips ({summary['skipped']} skipped) in {summary['seconds']} s "
            f"= {summary['clips_per_s']} clips/s -> {args.out}/{args.split}"
        )
    return 0 if summary["clips"] else 1


def run_caption(args: argparse.Namespace) -> int:
    from swansphere_training.corpus.captioning import caption_corpus

    summary = caption_corpus(args.root, split=args.split, seed=args.seed)
    print_json(summary) if args.json else print(summary)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from swansphere_training.data.importers import import_caption_corpus, import_paired_corpus

    if not args.src.is_dir():
        raise InputError(f"source folder not found: {args.src}")
    if args.layout == "captions":
        summary = import_caption_corpus(
            args.src,
            args.dst,
            split=args.split,
            clip_seconds=args.clip_seconds,
            sample_rate=args.rate,
        )
    else:
        summary = import_paired_corpus(
            args.src,
            args.dst,
            layout=args.layout,
            split=args.split,
            clip_seconds=args.clip_seconds,
            sample_rate=args.rate,
        )
    print_json(summary.to_json())
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from swansphere_training.corpus.stats import corpus_stats

    print_json(corpus_stats(args.root, args.out or args.root / "stats"))
    return 0
