"""The demo job: a moving source, rendered to AmbiX FOA and head-tracked binaural.

Until the generator lands this is the main job of ``make demo``: it synthesises a
source circling the listener, encodes it to FOA, renders it block by block for a
listener who turns their head, measures the trajectory back from the FOA, passes the
FOA through the shipped FOA-VAE (encode to latents, stream-decode 4 frames at a time,
as the generator will), and writes WAV files, a JSON summary and a DoA plot.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from swansphere.foa.doa import angular_error, doa_trajectory
from swansphere.foa.encode import encode_mono
from swansphere.foa.formats import build_decoder
from swansphere.foa.io import resample, write_audio, write_foa
from swansphere.foa.renderer import BlockRenderer
from swansphere.foa.rotation import ypr_to_quat


def demo_source(seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A bright, pulsed harmonic tone over soft noise: easy to localise by ear."""
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * 330 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 9))
    pulses = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * 3 * t))
    noise = rng.standard_normal(t.size) * 0.3
    signal = (tone * 0.2 + noise * 0.2) * (0.3 + 0.7 * pulses)
    return 0.5 * signal / np.max(np.abs(signal))


def demo_trajectory(seconds: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """One full counter-clockwise circle starting at the front, elevation swinging +-30 deg."""
    t = np.arange(int(seconds * rate)) / rate
    return 2 * np.pi * t / seconds, np.deg2rad(30) * np.sin(4 * np.pi * t / seconds)


def head_yaw_deg(t: np.ndarray) -> np.ndarray:
    """The listener looks around: yaw swings +-60 degrees twice."""
    return 60 * np.sin(2 * np.pi * t / t[-1] * 2)


def run_demo(out_dir: Path, seconds: float = 8.0, rate: int = 48000, block: int = 256) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    timings = {}

    started = time.perf_counter()
    az, el = demo_trajectory(seconds, rate)
    foa = encode_mono(demo_source(seconds, rate, rng), az, el)
    timings["encode_s"] = time.perf_counter() - started
    foa_path = write_foa(out_dir / "moving_source_foa.wav", foa, rate)

    started = time.perf_counter()
    decoder = build_decoder("binaural", rate)
    timings["hrtf_design_s"] = time.perf_counter() - started

    started = time.perf_counter()
    renderer = BlockRenderer(decoder, block, listeners=1)
    n_blocks = foa.shape[1] // block
    block_times = np.arange(n_blocks) * block / rate
    yaws = head_yaw_deg(block_times)
    out = np.zeros((2, n_blocks * block))
    for i in range(n_blocks):
        renderer.set_orientations(ypr_to_quat(yaws[i], 0, 0))
        out[:, i * block : (i + 1) * block] = renderer.process(foa[:, i * block : (i + 1) * block])[
            0
        ]
    timings["binaural_render_s"] = time.perf_counter() - started
    binaural_path = write_audio(out_dir / "moving_source_binaural_headtracked.wav", out, rate)

    stereo = build_decoder("stereo", rate).apply(foa)
    stereo_path = write_audio(out_dir / "moving_source_stereo.wav", stereo, rate)

    trajectory = doa_trajectory(foa, rate)
    seg_mid = (trajectory.start_s + trajectory.end_s) / 2
    true_az = np.rad2deg(np.angle(np.exp(1j * np.interp(seg_mid, np.arange(az.size) / rate, az))))
    plot_path = _plot_trajectory(
        out_dir / "doa_trajectory.png", trajectory, seg_mid, true_az, block_times, yaws
    )

    started = time.perf_counter()
    vae = vae_round_trip(foa, rate, out_dir / "moving_source_vae_roundtrip_foa.wav")
    timings["vae_round_trip_s"] = time.perf_counter() - started

    audio_s = n_blocks * block / rate
    summary = {
        "files": {
            "foa": str(foa_path),
            "binaural_headtracked": str(binaural_path),
            "stereo": str(stereo_path),
            "doa_plot": str(plot_path),
        },
        "sample_rate": rate,
        "audio_seconds": round(audio_s, 3),
        "block": block,
        "decoder": decoder.name,
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "binaural_x_realtime": round(audio_s / timings["binaural_render_s"], 1),
        "doa_segments": trajectory.to_json(),
        "vae_round_trip": vae,
    }
    summary["files"]["vae_round_trip"] = vae["file"]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def vae_round_trip(foa: np.ndarray, rate: int, path: Path, model: str = "default") -> dict:
    """Encode AmbiX FOA (4, n) at ``rate`` Hz with the bundle's FOA-VAE, decode it with the
    streaming decoder 4 latent frames (one generator patch) at a time, write the result
    at the VAE's rate, and compare the DoA trajectories (1 s segments, degrees) of the
    original and the round trip."""
    import torch

    from swansphere.models.bundle import load_bundle
    from swansphere.models.vae import StreamingDecoder, pad_to_stride

    vae = load_bundle(model).build("vae").eval()
    vae_rate = vae.config.sample_rate
    x = resample(foa, rate, vae_rate)
    x = pad_to_stride(torch.from_numpy(x.astype(np.float32))[None], vae.hop_length)
    with torch.no_grad():
        mean, _ = vae.encode(x)
        stream = StreamingDecoder(vae)
        chunks = [stream.decode_chunk(mean[..., k : k + 4]) for k in range(0, mean.shape[-1], 4)]
    recon = torch.cat(chunks, dim=-1)[0].double().numpy()
    original = x[0].double().numpy()
    a, b = doa_trajectory(original, vae_rate), doa_trajectory(recon, vae_rate)
    errors = np.rad2deg(angular_error(a.azimuth, a.elevation, b.azimuth, b.elevation))
    written = write_foa(path, recon, vae_rate)
    return {
        "file": str(written),
        "model": model,
        "sample_rate": vae_rate,
        "latent_frames": int(mean.shape[-1]),
        "doa_segment_error_deg_mean": round(float(np.mean(errors)), 2),
        "doa_segment_error_deg_max": round(float(np.max(errors)), 2),
    }


def _plot_trajectory(path, trajectory, seg_mid, true_az, block_times, yaws) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(seg_mid, true_az, "k--", label="true azimuth")
    ax.plot(seg_mid, np.rad2deg(trajectory.azimuth), "o-", label="estimated azimuth (from FOA)")
    ax.plot(seg_mid, np.rad2deg(trajectory.elevation), "s-", label="estimated elevation")
    ax.plot(block_times, yaws, color="tab:gray", alpha=0.6, label="listener head yaw")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("degrees")
    ax.set_ylim(-190, 190)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("SwanSphere demo: moving source DoA")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
