"""``swansphere encode | render | doa``: the ambisonics toolbox on files."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from swansphere.errors import InputError
from swansphere.foa.doa import clip_direction, doa_trajectory
from swansphere.foa.encode import encode_mono, pseudo_foa
from swansphere.foa.formats import OUTPUT_FORMATS, build_decoder
from swansphere.foa.io import check_sample_rate, read_audio, read_foa, write_audio, write_foa
from swansphere.foa.rotation import head_compensation, rotate_foa

from .common import head_quaternion, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "encode", help="encode a mono file into AmbiX FOA at a fixed or moving direction"
    )
    p.add_argument("input", type=Path, help="mono WAV/FLAC (stereo only with --pseudo-foa)")
    p.add_argument("output", type=Path, help="4-channel AmbiX WAV to write")
    p.add_argument(
        "--az", type=float, default=0.0, help="azimuth in degrees (counter-clockwise, 0 = front)"
    )
    p.add_argument("--el", type=float, default=0.0, help="elevation in degrees (up)")
    p.add_argument("--to-az", type=float, help="move linearly to this azimuth (degrees) by the end")
    p.add_argument(
        "--to-el", type=float, help="move linearly to this elevation (degrees) by the end"
    )
    p.add_argument(
        "--trajectory",
        type=Path,
        help='JSON keyframes [{"t": s, "azimuth_deg": .., "elevation_deg": ..}], linear between',
    )
    p.add_argument(
        "--pseudo-foa", choices=["x", "y", "z"], help="curriculum pseudo-FOA on this dipole axis"
    )
    p.set_defaults(run=run_encode)

    p = sub.add_parser("render", help="render AmbiX FOA to binaural, stereo or speaker feeds")
    p.add_argument("input", type=Path, help="4-channel AmbiX WAV (ACN/SN3D)")
    p.add_argument("output", type=Path, help="WAV to write, at the input's sample rate")
    p.add_argument("--format", choices=OUTPUT_FORMATS, default="binaural")
    p.add_argument("--ypr", help="listener head yaw,pitch,roll in degrees (R = Rz Ry Rx)")
    p.add_argument("--quat", help="listener head orientation quaternion w,x,y,z")
    p.add_argument("--hrtf", type=Path, help="SimpleFreeFieldHRIR SOFA file (default: MIT KEMAR)")
    p.add_argument(
        "--subtype", default="FLOAT", help="WAV sample format: FLOAT or PCM_24 or PCM_16"
    )
    p.set_defaults(run=run_render)

    p = sub.add_parser("doa", help="estimate source directions in an AmbiX file")
    p.add_argument("input", type=Path)
    p.add_argument("--segment", type=float, default=1.0, help="segment length in seconds")
    p.add_argument("--json", action="store_true", help="print JSON (the default output is a table)")
    p.set_defaults(run=run_doa)


def _keyframe_path(args: argparse.Namespace, n: int, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample azimuth and elevation (radians) from the encode options."""
    t = np.arange(n) / rate
    if args.trajectory:
        try:
            frames = json.loads(Path(args.trajectory).read_text())
            times = np.array([float(f["t"]) for f in frames])
            az = np.unwrap(np.deg2rad([float(f["azimuth_deg"]) for f in frames]))
            el = np.deg2rad([float(f["elevation_deg"]) for f in frames])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"cannot read trajectory {args.trajectory}: {exc}") from exc
        if times.size == 0 or np.any(np.diff(times) <= 0):
            raise InputError(f"trajectory {args.trajectory} needs keyframes with increasing 't'")
        return np.interp(t, times, az), np.interp(t, times, el)
    start = np.deg2rad([args.az, args.el])
    end = np.deg2rad(
        [
            args.az if args.to_az is None else args.to_az,
            args.el if args.to_el is None else args.to_el,
        ]
    )
    frac = t / max(t[-1], 1e-9)
    return start[0] + frac * (end[0] - start[0]), start[1] + frac * (end[1] - start[1])


def run_encode(args: argparse.Namespace) -> int:
    audio, rate = read_audio(args.input)
    if args.pseudo_foa:
        if audio.shape[0] > 2:
            raise InputError(
                f"{args.input} has {audio.shape[0]} channels; pseudo-FOA takes mono or stereo"
            )
        foa = pseudo_foa(audio[0] if audio.shape[0] == 1 else audio, args.pseudo_foa)
    else:
        if audio.shape[0] != 1:
            raise InputError(
                f"{args.input} has {audio.shape[0]} channels; encode takes mono (or --pseudo-foa)"
            )
        az, el = _keyframe_path(args, audio.shape[1], rate)
        foa = encode_mono(audio[0], az, el)
    write_foa(args.output, foa, rate)
    print(f"wrote {args.output} (AmbiX FOA, {rate} Hz, {foa.shape[1] / rate:.2f} s)")
    return 0


def run_render(args: argparse.Namespace) -> int:
    foa, rate = read_foa(args.input)
    check_sample_rate(rate)
    head = head_quaternion(args.ypr, args.quat)
    started = time.perf_counter()
    decoder = build_decoder(args.format, rate, args.hrtf)
    out = decoder.apply(rotate_foa(foa, head_compensation(head)))
    write_audio(args.output, out, rate, subtype=args.subtype)
    elapsed = time.perf_counter() - started
    print(
        f"wrote {args.output} ({args.format}: {', '.join(decoder.labels)}; {rate} Hz; "
        f"{foa.shape[1] / rate:.2f} s of audio in {elapsed:.2f} s)"
    )
    return 0


def run_doa(args: argparse.Namespace) -> int:
    foa, rate = read_foa(args.input)
    az, el = clip_direction(foa)
    trajectory = doa_trajectory(foa, rate, segment_s=args.segment)
    result = {
        "clip": {"azimuth_deg": float(np.rad2deg(az)), "elevation_deg": float(np.rad2deg(el))},
        "segments": [
            {k: s[k] for k in ("start_s", "end_s", "azimuth_deg", "elevation_deg", "distance")}
            for s in trajectory.to_json()
        ],
    }
    if args.json:
        print_json(result)
        return 0
    clip = result["clip"]
    print(
        f"clip: azimuth {clip['azimuth_deg']:7.1f} deg  elevation {clip['elevation_deg']:6.1f} deg"
    )
    print("  start    end   azimuth  elevation  distance")
    for s in result["segments"]:
        print(
            f"{s['start_s']:7.2f} {s['end_s']:6.2f} {s['azimuth_deg']:9.1f} "
            f"{s['elevation_deg']:10.1f} {s['distance']:9.2f}"
        )
    return 0
