"""``swansphere generate``: a video (panoramic, or field-of-view plus a camera
orientation) and/or a caption in, a rendered spatial audio file out."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from swansphere.errors import InputError
from swansphere.foa.formats import OUTPUT_FORMATS

from .common import ACCEL_CHOICES, parse_floats, print_json

log = logging.getLogger(__name__)


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model, --accel, --device, --steps, --seed, --guidance: shared with the benches."""
    p.add_argument("--model", default="default", help="bundle: default | PATH | models:/NAME@ALIAS")
    p.add_argument("--accel", choices=ACCEL_CHOICES, default="eager")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1")
    p.add_argument("--steps", type=int, help="LocDiT Euler steps (model default: 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--guidance",
        metavar="TEXT,VIDEO",
        help="three-way guidance scales g_text,g_video (model default)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate spatial audio from a video and/or a caption")
    p.add_argument("--video", type=Path, help="input video (equirectangular unless --fov)")
    p.add_argument("--caption", help="scene caption (text-only generation needs --duration)")
    p.add_argument("--duration", type=float, help="seconds of audio (default: the video's)")
    p.add_argument("--out", type=Path, required=True, help="output WAV")
    p.add_argument("--format", choices=OUTPUT_FORMATS, default="foa")
    p.add_argument("--rate", type=int, default=48000, help="output sample rate (Hz)")
    p.add_argument("--fov", type=float, help="the video is a field-of-view camera of this "
                   "horizontal FOV (degrees); see --camera-ypr")  # fmt: skip
    p.add_argument(
        "--camera-ypr", default="0,0,0", help="camera yaw,pitch,roll in degrees (with --fov)"
    )
    add_model_args(p)
    p.set_defaults(run=run_generate)


def session_config(args: argparse.Namespace, duration: float | None = None):
    from swansphere.generation import SessionConfig

    g_text = g_video = None
    if args.guidance:
        g_text, g_video = parse_floats(args.guidance, 2, "--guidance")
    return SessionConfig(
        seed=args.seed, steps=args.steps, guidance_text=g_text, guidance_video=g_video,
        duration_s=duration,
    )  # fmt: skip


def _fov_to_panoramas(runtime, frames: np.ndarray, fov: float, ypr: str) -> np.ndarray:
    from swansphere.foa.rotation import ypr_to_quat
    from swansphere.generation.conditioning import view_to_panorama

    quat = ypr_to_quat(*parse_floats(ypr, 3, "--camera-ypr"))
    h, w = runtime.canvas_size
    return np.stack([view_to_panorama(f, quat, fov, w, h)[0] for f in frames])


def run_generate(args: argparse.Namespace) -> int:
    from swansphere.foa.formats import build_decoder
    from swansphere.foa.io import check_sample_rate, resample, write_audio
    from swansphere.generation import GeneratorRuntime
    from swansphere.generation.video import read_video

    if args.video is None and not (args.caption and args.caption.strip()):
        raise InputError("give --video, --caption, or both")
    if args.video is None and args.duration is None:
        raise InputError("text-only generation needs --duration SECONDS")
    rate = check_sample_rate(args.rate)
    runtime = GeneratorRuntime.load(args.model, args.device, args.accel)
    frames = fps = None
    if args.video is not None:
        frames, fps = read_video(args.video)
        if args.fov is not None:
            frames = _fov_to_panoramas(runtime, frames, args.fov, args.camera_ypr)
    started = time.perf_counter()
    foa = runtime.generate(frames, fps, args.caption, args.duration, session_config(args))
    compute_s = time.perf_counter() - started
    audio = resample(foa, runtime.sample_rate, rate)
    if args.format != "foa":
        audio = build_decoder(args.format, rate).apply(audio)
    path = write_audio(args.out, audio, rate)
    seconds = foa.shape[1] / runtime.sample_rate
    print_json(
        {
            "out": str(path),
            "format": args.format,
            "sample_rate": rate,
            "channels": int(audio.shape[0]),
            "seconds": round(seconds, 3),
            "compute_s": round(compute_s, 3),
            "rtf": round(compute_s / seconds, 3),
            "model": runtime.name,
            "accel": runtime.accel.mode,
        }
    )
    return 0


__all__ = ["add_model_args", "register", "session_config"]
