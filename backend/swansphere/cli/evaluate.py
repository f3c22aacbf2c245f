"""``swansphere eval ...``: accuracy evaluations that print JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import parse_floats, print_json


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="accuracy evaluations (JSON output)")
    what = ev.add_subparsers(dest="eval", required=True, metavar="WHAT")
    p = what.add_parser(
        "binaural", help="binaural decoder vs direct HRIR convolution (ILD, ITD, spectrum)"
    )
    p.add_argument("--rate", type=int, default=48000, help="sample rate in Hz")
    p.add_argument("--hrtf", type=Path, help="SimpleFreeFieldHRIR SOFA file (default: MIT KEMAR)")
    p.add_argument("--method", help="decoder design (default: the shipped default)")
    p.add_argument("--json", action="store_true", help="print JSON (always on; kept for scripts)")
    p.set_defaults(run=run_binaural)

    p = what.add_parser(
        "doa", help="DoA accuracy on random directions, clean and with a diffuse field"
    )
    p.add_argument("--directions", type=int, default=20)
    p.add_argument("--drr", type=float, default=10.0, help="direct-to-diffuse ratio in dB")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON (always on; kept for scripts)")
    p.set_defaults(run=run_doa)

    p = what.add_parser("vae", help="FOA-VAE: direction preservation, MR-STFT, streaming decode")
    _model_args(p)
    p.set_defaults(run=run_vae)
    p = what.add_parser("svac", help="SVAC: retrieval, rotation and time-shift discrimination")
    _model_args(p)
    p.add_argument(
        "--oracles",
        action="store_true",
        help="also score the parts with video sides that know clip.json's sounding sources "
        "(procedural clips), with their drawn loudness and (video_*) with only their "
        "classes' typical one: how much of a miss is the video side's",
    )
    p.add_argument(
        "--weighings",
        action="store_true",
        help="also score every candidate share of the parts (content, spatial code, activity "
        "map) from the same embeddings, and name the one with the best worst margin to the "
        "targets (r_at_1 0.5, rotation 0.9, shift 0.8); `bundle OUT --base B --weighing "
        "FILE` applies this JSON's choice",
    )
    p.set_defaults(run=run_svac)
    p = what.add_parser(
        "generator",
        help="generator: angular error vs the reference (video-conditioned), trajectory "
        "error, text region accuracy (caption only), beside baselines",
    )
    _model_args(p)
    p.add_argument("--seed", type=int, default=0, help="generation seed of the first clip")
    p.add_argument("--steps", type=int, help="Euler steps of the sampler (default: the model's)")
    p.add_argument(
        "--guidance",
        metavar="TEXT,VIDEO",
        help="three-way guidance scales g_text,g_video (default: the model's)",
    )
    p.add_argument(
        "--video-text",
        action="store_true",
        help="also generate from video and caption together (reported as video_text)",
    )
    p.set_defaults(run=run_generator)
    p = what.add_parser(
        "direction",
        help="the video direction cue alone: clip-level angle of its estimate from the "
        "reference's intensity, from video only and (captioned clips) with the caption",
    )
    _model_args(p)
    p.add_argument(
        "--per-clip",
        action="store_true",
        help="also list each clip's error in degrees (per_clip, caption_per_clip)",
    )
    p.set_defaults(run=run_direction)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default="default", help="default, a bundle folder, or models:/NAME@ALIAS"
    )
    p.add_argument("--data", type=Path, required=True, help="corpus root")
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=64, help="clips to evaluate at most")
    p.add_argument("--json", action="store_true", help="print JSON (always on; kept for scripts)")


def run_vae(args: argparse.Namespace) -> int:
    import torch

    from swansphere.models.bundle import load_bundle
    from swansphere_training.evaluation.vae import evaluate_vae

    torch.set_num_threads(1)
    vae = load_bundle(args.model).build("vae")
    result = evaluate_vae(vae, args.data, args.split, args.clips)
    result.pop("example")  # audio arrays: the training stage logs them, JSON does not
    print_json({"model": args.model, **result})
    return 0


def run_svac(args: argparse.Namespace) -> int:
    import torch

    from swansphere.models.bundle import load_bundle
    from swansphere_training.evaluation.svac import evaluate_svac

    torch.set_num_threads(1)
    svac = load_bundle(args.model).build("svac")
    result = evaluate_svac(
        svac,
        args.data,
        args.split,
        max(args.clips, 64),
        oracles=args.oracles,
        weighings=args.weighings,
    )
    result.pop("similarity")  # (N, N) matrix: the training stage plots it
    result.pop("saliency", None)  # example maps: likewise
    print_json({"model": args.model, **result})
    return 0


def run_generator(args: argparse.Namespace) -> int:
    import torch

    from swansphere.generation.session import GeneratorRuntime
    from swansphere_training.evaluation.generator import evaluate_generator

    guidance = parse_floats(args.guidance, 2, "--guidance") if args.guidance else None
    torch.set_num_threads(1)
    runtime = GeneratorRuntime.load(args.model)
    result = evaluate_generator(
        runtime,
        args.data,
        args.split,
        args.clips,
        seed=args.seed,
        steps=args.steps,
        video_text=args.video_text,
        guidance=guidance,
        progress=True,  # a bar on stderr: 64 clips take a quarter of an hour on one core
    )
    print_json({"model": args.model, **result})
    return 0


def run_direction(args: argparse.Namespace) -> int:
    import torch

    from swansphere.errors import InputError
    from swansphere.models.bundle import load_bundle
    from swansphere_training.stages.direction import evaluate_cue

    torch.set_num_threads(1)
    bundle = load_bundle(args.model)
    if "direction" not in bundle.components:
        raise InputError(f"--model {args.model!r}: the bundle has no direction cue")
    result = evaluate_cue(bundle.build("direction"), args.data, args.split, args.clips)
    # evaluate_cue's "clips" / "caption_clips" are per-clip errors; "clips" here counts them
    # as in the other evaluations, and the errors come along only when asked for.
    per_clip = {k: result.pop(k) for k in ("clips", "caption_clips") if k in result}
    result["clips"] = len(per_clip["clips"])
    if args.per_clip:
        result |= {k.replace("clips", "per_clip"): v for k, v in per_clip.items()}
    print_json({"model": args.model, "data": str(args.data / args.split), **result})
    return 0


def run_binaural(args: argparse.Namespace) -> int:
    from swansphere.foa.binaural import design_binaural_decoder, evaluate_binaural
    from swansphere.foa.hrtf import load_default_hrirs, load_sofa

    hrirs = (
        load_default_hrirs(args.rate)
        if args.hrtf is None
        else load_sofa(args.hrtf).resampled(args.rate)
    )
    kwargs = {} if args.method is None else {"method": args.method}
    decoder = design_binaural_decoder(hrirs, args.rate, **kwargs)
    result = evaluate_binaural(decoder, hrirs)
    summary = {
        "decoder": decoder.name,
        "sample_rate": args.rate,
        "hrtf": hrirs.source,
        "ild_error_db": result["ild_error_db"],
        "itd_error_us": result["itd_error_us"],
        "lsd_db": result["lsd_db"],
        "directions": len(result["directions"]),
    }
    print_json(summary)
    return 0


def run_doa(args: argparse.Namespace) -> int:
    from swansphere.foa.doa import evaluate_doa

    clean = evaluate_doa(
        n_directions=args.directions, drr_db=None, seconds=args.seconds, seed=args.seed
    )
    diffuse = evaluate_doa(
        n_directions=args.directions, drr_db=args.drr, seconds=args.seconds, seed=args.seed
    )
    print_json({"clean": clean, f"diffuse_{args.drr:g}dB": diffuse})
    return 0
