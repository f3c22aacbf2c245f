"""The main job of ``make demo``: a procedural panoramic clip streamed through the shipped
generator, patch by patch, with a listener who turns their head.

A clip from the procedural corpus (panoramic video at 4 fps, its reference FOA and an
automatic spatial caption) is fed to a generator session as an engine would: each
frame when its capture time comes, the caption first. Each FOA chunk is resampled and
rendered to head-tracked binaural block by block while the head turns 90 degrees to
the left. Written: generated FOA, head-tracked binaural, the reference FOA, a plot of
the generated and reference DoA trajectories, and a JSON summary with TTFC and RTF.
TTFC is timed on the second session after loading (``ttfc_ms``), the first one's is
reported as ``ttfc_cold_ms``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from swansphere.foa.doa import angular_error, clip_direction, doa_trajectory
from swansphere.foa.formats import build_decoder
from swansphere.foa.io import read_foa, resample, write_audio, write_foa
from swansphere.foa.renderer import BlockRenderer
from swansphere.foa.rotation import ypr_to_quat

if TYPE_CHECKING:
    from swansphere.generation import GeneratorSession


def procedural_clip(seed: int) -> tuple[np.ndarray, float, np.ndarray, int, str]:
    """(frames (N, H, W, 3), fps, reference FOA (4, n), its rate, caption) of one clip of
    the procedural corpus (written to a temporary folder and read back)."""
    from swansphere.generation.video import read_video
    from swansphere_training.corpus.captioning import (
        CLASS_PHRASES,
        TemplateCaptioner,
        caption_clip,
    )
    from swansphere_training.corpus.scene import PRESETS
    from swansphere_training.corpus.synth import make_clip
    from swansphere_training.data.clip import AUDIO_FILE, VIDEO_FILE

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_clip(Path(tmp), "test", seed, 0, PRESETS["small"], n_sources=1)
        record, _ = caption_clip(
            folder, TemplateCaptioner(phrases=CLASS_PHRASES), np.random.default_rng(seed)
        )
        frames, fps = read_video(folder / VIDEO_FILE)
        foa, rate = read_foa(folder / AUDIO_FILE)
    return frames, fps, foa, rate, record["caption"]


def stream_clip(
    out_dir: Path,
    model: str = "default",
    seed: int = 11,
    rate: int = 48000,
    block: int = 256,
    seconds: float | None = None,
    threads: int = 1,
    accel: str = "eager",
) -> dict:
    """Stream one procedural clip through the generator; write files, return the summary.

    threads: torch threads. One is fastest for the tiny model's small matrices on a busy
    2-core machine (measured: 2 threads stall for seconds when another process runs).
    accel: the runtime's acceleration (:mod:`swansphere.generation.accel`).
    """
    import torch

    from swansphere.generation import GeneratorRuntime, SessionConfig

    torch.set_num_threads(threads)

    out_dir.mkdir(parents=True, exist_ok=True)
    frames, fps, reference, ref_rate, caption = procedural_clip(seed)
    if seconds is not None:
        frames = frames[: max(1, int(round(seconds * fps)))]
    duration = len(frames) / fps
    runtime = GeneratorRuntime.load(model, accel=accel)
    session = runtime.session(SessionConfig(seed=seed))
    decoder = build_decoder("binaural", rate)
    renderer = BlockRenderer(decoder, block, listeners=1)

    # The first session after loading pays one-off costs (allocator growth, kernel
    # selection); a running server has paid them before a client connects, so TTFC is
    # timed on a second session, as in ``bench stream``. The cold figure is kept too.
    ttfc_cold_ms = _first_chunk_ms(runtime.session(SessionConfig(seed=seed)), frames[0], caption)

    session.set_caption(caption)
    session.end_video(duration)
    foa_chunks, compute, pending = [], [], list(enumerate(frames))
    first_frame_at = ttfc_ms = None
    while not session.finished:
        # Frames whose capture time has come by the middle of the next patch.
        horizon = session.time_s + 0.5 * session.patch_seconds
        started = time.perf_counter()
        while pending and pending[0][0] / fps <= horizon:
            i, frame = pending.pop(0)
            session.set_panorama(frame, i / fps)
            first_frame_at = first_frame_at or started
        chunk = session.next_chunk()
        now = time.perf_counter()
        compute.append(now - started)
        if ttfc_ms is None:
            ttfc_ms = 1e3 * (now - first_frame_at)
        foa_chunks.append(chunk)
    foa = np.concatenate(foa_chunks, axis=1)

    # Head-tracked binaural: the head turns from the front to 90 degrees left.
    out48 = resample(foa, runtime.sample_rate, rate)
    n_blocks = out48.shape[1] // block
    yaws = 90.0 * np.arange(n_blocks) / max(1, n_blocks - 1)
    binaural = np.zeros((2, n_blocks * block))
    for b in range(n_blocks):
        renderer.set_orientations(ypr_to_quat(yaws[b], 0, 0))
        binaural[:, b * block : (b + 1) * block] = renderer.process(
            out48[:, b * block : (b + 1) * block]
        )[0]

    files = {
        "generated_foa": str(write_foa(out_dir / "generated_foa.wav", foa, runtime.sample_rate)),
        "binaural_headtracked": str(
            write_audio(out_dir / "generated_binaural_headtracked.wav", binaural, rate)
        ),
        "reference_foa": str(write_foa(out_dir / "reference_foa.wav", reference, ref_rate)),
    }
    ref = resample(reference, ref_rate, runtime.sample_rate)[:, : foa.shape[1]]
    gen_dir, ref_dir = clip_direction(foa), clip_direction(ref)
    clip_error = float(np.rad2deg(angular_error(*gen_dir, *ref_dir)))
    gen_traj, ref_traj = (
        doa_trajectory(foa, runtime.sample_rate),
        doa_trajectory(ref, runtime.sample_rate),
    )
    n = min(len(gen_traj.azimuth), len(ref_traj.azimuth))
    seg_errors = np.rad2deg(
        angular_error(
            gen_traj.azimuth[:n],
            gen_traj.elevation[:n],
            ref_traj.azimuth[:n],
            ref_traj.elevation[:n],
        )
    )
    files["doa_plot"] = str(_plot(out_dir / "generated_doa.png", gen_traj, ref_traj, caption))
    audio_s = foa.shape[1] / runtime.sample_rate
    return {
        "files": files,
        "model": runtime.name,
        "accel": runtime.accel.mode,
        "caption": caption,
        "audio_seconds": round(audio_s, 3),
        "video_fps": fps,
        "patches": len(foa_chunks),
        "ttfc_ms": round(ttfc_ms, 1),
        "ttfc_cold_ms": round(ttfc_cold_ms, 1),
        "rtf": round(float(np.sum(compute)) / audio_s, 3),
        "patch_ms_median": round(1e3 * float(np.median(compute)), 1),
        "clip_direction_error_deg": round(clip_error, 1),
        "segment_direction_error_deg_mean": round(float(np.mean(seg_errors)), 1),
        "generated_direction_deg": [round(float(np.rad2deg(a)), 1) for a in gen_dir],
        "reference_direction_deg": [round(float(np.rad2deg(a)), 1) for a in ref_dir],
        "head_turn_deg": [0.0, 90.0],
    }


def _first_chunk_ms(session: GeneratorSession, frame: np.ndarray, caption: str) -> float:
    """Milliseconds from ``frame`` in to the first FOA chunk out of a fresh ``session``
    (the caption arrives first, as the engine sends it), then close the session."""
    session.set_caption(caption)
    started = time.perf_counter()
    session.set_panorama(frame, 0.0)
    session.next_chunk()
    elapsed = 1e3 * (time.perf_counter() - started)
    session.close()
    return elapsed


def _plot(path: Path, generated, reference, caption: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for traj, style, name in ((reference, "k--", "reference"), (generated, "o-", "generated")):
        mid = (traj.start_s + traj.end_s) / 2
        ax.plot(mid, np.rad2deg(traj.azimuth), style, label=f"{name} azimuth")
        ax.plot(mid, np.rad2deg(traj.elevation), style.replace("o", "s"), alpha=0.6,
                label=f"{name} elevation")  # fmt: skip
    ax.set_xlabel("time (s)")
    ax.set_ylabel("degrees")
    ax.set_ylim(-190, 190)
    ax.legend(loc="lower left", fontsize=7)
    ax.set_title(caption[:90] + ("..." if len(caption) > 90 else ""), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["procedural_clip", "stream_clip"]
