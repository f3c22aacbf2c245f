"""``swansphere train vae|svac|generator|direction`` and ``swansphere bundle``: training stages and
model bundles.

The work lives in the training package; this module parses arguments.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from swansphere.errors import InputError

from .common import print_json


def _override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set takes NAME=VALUE, got {text!r}")
    name, value = text.split("=", 1)
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def _tuned_field(text: str) -> tuple[str, str, Any]:
    """COMPONENT.FIELD=VALUE -> (component, field, value), VALUE as JSON when it parses."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"--tune takes COMPONENT.FIELD=VALUE, got {text!r}")
    name, value = _override(text)
    component, field = name.split(".", 1)
    return component, field, value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model stage (MLflow-tracked, resumable)")
    p.add_argument("stage", choices=["vae", "svac", "generator", "direction"])
    p.add_argument("--data", type=Path, required=True, help="corpus root (train/ and test/ splits)")
    p.add_argument(
        "--preset", default="tiny", help="network preset: tiny or paper (generator: tiny, S, M, L)"
    )
    p.add_argument("--steps", type=int, default=3000, help="total optimisation steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="run folder (default runs/STAGE-PRESET)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--eval-every", type=int, default=0, help="0: evaluate at the end only")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when available)")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    p.add_argument(
        "--set",
        type=_override,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a stage setting, e.g. --set batch_size=4",
    )
    p.set_defaults(run=run_train)

    b = sub.add_parser("bundle", help="write (and register) a model bundle from training runs")
    b.add_argument("out", type=Path, help="bundle folder to write")
    b.add_argument("--vae", type=Path, help="VAE run folder")
    b.add_argument("--svac", type=Path, help="SVAC run folder")
    b.add_argument("--generator", type=Path, help="generator run folder")
    b.add_argument("--direction", type=Path, help="video direction cue run folder")
    b.add_argument(
        "--base",
        metavar="BUNDLE",
        help="copy the components without a run from this bundle (default | PATH | "
        "models:/NAME@ALIAS), e.g. --generator RUN --base default",
    )
    b.add_argument(
        "--keep",
        action="append",
        choices=["vae", "svac", "generator", "direction"],
        metavar="COMPONENT",
        help="with --base, copy only this of its components (repeatable), e.g. "
        "`bundle cue --base default --keep direction`: the shipped video direction cue alone",
    )
    b.add_argument(
        "--generator-dtype",
        choices=["float16", "float32"],
        default="float16",
        help="storage type of the generator weights (float16 keeps the bundle small)",
    )
    b.add_argument(
        "--tune",
        type=_tuned_field,
        action="append",
        default=[],
        metavar="COMPONENT.FIELD=VALUE",
        help="a setting chosen after training (recorded), e.g. --tune generator.guidance_video=5"
        " or --tune svac.activity_weight=0.45; the generator's sampler (steps, guidance,"
        " lm_history, direction_lock, direction_source, level_lock), SVAC's part weights"
        " and the share its spatial code takes from a direction cue (cue_share; an SVAC"
        " trained without one takes the bundle's) and the patches the direction cue's lock sums"
        " (direction.smoothing) can be tuned",
    )
    b.add_argument(
        "--weighing",
        type=Path,
        metavar="JSON",
        help="weigh SVAC's parts as chosen by `eval svac --weighings --json` (its 'chosen' "
        "spatial_weight and activity_weight, as --tune; the file is recorded as "
        "metrics['weighing'])",
    )
    b.add_argument("--data", type=Path, help="the corpus the runs trained on (recorded)")
    b.add_argument(
        "--metrics",
        type=Path,
        action="append",
        default=[],
        help="JSON files of eval results to record (name.json -> metrics[name])",
    )
    b.add_argument("--register", metavar="NAME@ALIAS", help="register in the MLflow registry")
    b.set_defaults(run=run_bundle)


def run_train(args: argparse.Namespace) -> int:
    from swansphere_training.pipeline import stage_config, train_stage

    if args.steps < 1:
        raise InputError(f"--steps must be at least 1, got {args.steps}")
    if not (args.data / "train").is_dir():
        raise InputError(
            f"no training split at {args.data / 'train'} (make one with 'swansphere data synth')"
        )
    config = stage_config(args.stage, str(args.data), args.preset, args.seed, dict(args.set))
    out = args.out or Path("runs") / f"{args.stage}-{args.preset}"
    options = {
        "checkpoint_every": args.checkpoint_every,
        "eval_every": args.eval_every,
        "track": not args.no_track,
        "device": args.device,
    }
    result = train_stage(args.stage, config, out, args.steps, args.resume, options)
    print_json(
        {
            "stage": args.stage,
            "out": str(out),
            "step": result.step,
            "checkpoint": str(result.checkpoint),
            "mlflow_run": result.run_id,
            "metrics": result.metrics,
            "eval": result.eval_metrics,
        }
    )
    return 0


def chosen_weighing(
    weighing: dict, path: Path, tune: list[tuple[str, str, Any]]
) -> list[tuple[str, str, Any]]:
    """The --tune entries of the weighing ``eval svac --weighings --json`` chose."""
    chosen = weighing.get("chosen") if isinstance(weighing, dict) else None
    fields = ("spatial_weight", "activity_weight")
    if not isinstance(chosen, dict) or not all(
        isinstance(chosen.get(f), (int, float)) for f in fields
    ):
        raise InputError(
            f"{path}: no 'chosen' spatial_weight and activity_weight "
            "(write it with `swansphere eval svac --weighings --json`)"
        )
    for component, field, _ in tune:
        if component == "svac" and field in fields:
            raise InputError(f"--weighing sets svac.{field}: do not also --tune it")
    return [("svac", f, float(chosen[f])) for f in fields]


def run_bundle(args: argparse.Namespace) -> int:
    from swansphere_training.pipeline import export_bundle, read_json

    runs = {
        name: path
        for name, path in (
            ("vae", args.vae),
            ("svac", args.svac),
            ("generator", args.generator),
            ("direction", args.direction),
        )
        if path
    }
    if args.keep and not args.base:
        raise InputError("--keep names components of the --base bundle: give --base")
    if not runs and not (args.base and (args.tune or args.metrics or args.weighing or args.keep)):
        raise InputError(
            "give at least one of --vae, --svac, --generator and --direction "
            "(or --base with --keep, --tune, --weighing or --metrics)"
        )
    metrics = {Path(m).stem: read_json(m) for m in args.metrics}
    tuned = list(args.tune)
    if args.weighing:
        weighing = read_json(args.weighing)
        metrics["weighing"] = weighing
        tuned += chosen_weighing(weighing, args.weighing, args.tune)
    data = {"corpus": str(args.data) if args.data else None}
    if args.data and (args.data / "train").is_dir():
        data["train_clips"] = sum(1 for _ in (args.data / "train").iterdir())
    tune: dict[str, dict[str, Any]] = {}
    for component, field, value in tuned:
        tune.setdefault(component, {})[field] = value
    path = export_bundle(
        args.out,
        runs,
        data,
        metrics,
        base=args.base,
        generator_dtype=args.generator_dtype,
        tune=tune,
        keep=args.keep,
    )
    result = {"bundle": str(path)}
    if args.register:
        from swansphere_training import tracking

        if "@" not in args.register:
            raise InputError(f"--register takes NAME@ALIAS, got {args.register!r}")
        name, alias = args.register.split("@", 1)
        result["registered_version"] = tracking.register_model(path, name, alias)
        result["uri"] = f"models:/{name}@{alias}"
    print_json(result)
    return 0
