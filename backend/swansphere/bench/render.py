"""Renderer benchmark: our batched block renderer against the textbook NumPy approach.

Both run in one process on one thread (BLAS and FFT thread pools limited to 1), on
the same decoder, signal, block size and head-pose stream, so the ratio is fair.
"""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

from swansphere.bench.machine import cpu_description
from swansphere.foa.decoder import Decoder
from swansphere.foa.formats import build_decoder
from swansphere.foa.renderer import BlockRenderer
from swansphere.foa.rotation import foa_rotation_matrix, quat_to_matrix


class TextbookRenderer:
    """Per-listener rendering as usually written: rotate each block by a 4x4 matrix,
    then a uniformly partitioned overlap-save FFT convolution per listener.

    The rotation switches at block edges (no smoothing), which only makes it cheaper.
    """

    def __init__(self, decoder: Decoder, block_size: int, listeners: int) -> None:
        b = block_size
        partitions = -(-decoder.taps // b)
        padded = np.zeros((decoder.outputs, 4, partitions * b))
        padded[:, :, : decoder.taps] = decoder.filters
        parts = padded.reshape(decoder.outputs, 4, partitions, b).transpose(2, 0, 1, 3)
        self.spectra = np.fft.rfft(parts, n=2 * b, axis=-1)  # (P, outputs, 4, b + 1)
        self.block_size = b
        self.history = [
            np.zeros((partitions, 4, b + 1), dtype=np.complex128) for _ in range(listeners)
        ]
        self.previous = [np.zeros((4, b)) for _ in range(listeners)]
        self.rotations = np.tile(np.eye(4), (listeners, 1, 1))

    def set_orientations(self, quats: np.ndarray) -> None:
        self.rotations = foa_rotation_matrix(np.swapaxes(quat_to_matrix(quats), -1, -2))

    def process(self, block: np.ndarray) -> np.ndarray:
        b = self.block_size
        outs = []
        for i, rotation in enumerate(self.rotations):
            x = rotation @ block
            spectrum = np.fft.rfft(np.concatenate([self.previous[i], x], axis=1), axis=1)
            self.previous[i] = x
            history = np.roll(self.history[i], 1, axis=0)
            history[0] = spectrum
            self.history[i] = history
            y = np.einsum("pkf,pokf->of", history, self.spectra)
            outs.append(np.fft.irfft(y, n=2 * b, axis=-1)[:, b:])
        return np.stack(outs)


def _head_poses(rng: np.random.Generator, blocks: int, listeners: int) -> np.ndarray:
    """Smooth random head motion per listener: (blocks, listeners, 4) unit quaternions."""
    yaw = np.cumsum(rng.normal(0, 2.0, (blocks, listeners)), axis=0)
    pitch = 20 * np.sin(np.linspace(0, 6, blocks))[:, None] + rng.normal(0, 1, listeners)
    half_yaw, half_pitch = np.deg2rad(yaw) / 2, np.deg2rad(pitch) / 2
    # q = qz(yaw) * qy(pitch)
    return np.stack(
        [
            np.cos(half_yaw) * np.cos(half_pitch),
            -np.sin(half_yaw) * np.sin(half_pitch),
            np.cos(half_yaw) * np.sin(half_pitch),
            np.sin(half_yaw) * np.cos(half_pitch),
        ],
        -1,
    )


def _time_renderer(renderer, foa: np.ndarray, poses: np.ndarray, block: int) -> float:
    started = time.perf_counter()
    for i in range(poses.shape[0]):
        renderer.set_orientations(poses[i])
        renderer.process(foa[:, i * block : (i + 1) * block])
    return time.perf_counter() - started


def bench_render(
    block: int = 128,
    streams: int = 64,
    sample_rate: int = 48000,
    seconds: float = 2.0,
    output_format: str = "binaural",
    seed: int = 0,
) -> dict:
    """Time both renderers on ``streams`` head-tracked listeners; returns the JSON summary."""
    rng = np.random.default_rng(seed)
    decoder = build_decoder(output_format, sample_rate)
    blocks = max(1, int(seconds * sample_rate / block))
    foa = rng.standard_normal((4, blocks * block)) * 0.1
    poses = _head_poses(rng, blocks, streams)
    audio_seconds = blocks * block / sample_rate
    with threadpool_limits(limits=1):
        # Agreement check at fixed orientations: both must produce the same signal.
        ours = BlockRenderer(decoder, block, listeners=streams, transition_ms=0.001)
        ref = TextbookRenderer(decoder, block, streams)
        for r in (ours, ref):
            r.set_orientations(poses[0])
        ours.process(np.zeros((4, block)))  # completes the (instant) transition
        ref.process(np.zeros((4, block)))
        diff = max(
            float(
                np.max(
                    np.abs(
                        ours.process(foa[:, i * block : (i + 1) * block])
                        - ref.process(foa[:, i * block : (i + 1) * block])
                    )
                )
            )
            for i in range(min(blocks, 8))
        )
        ours_s = _time_renderer(BlockRenderer(decoder, block, listeners=streams), foa, poses, block)
        base_s = _time_renderer(TextbookRenderer(decoder, block, streams), foa, poses, block)
    ours_x = streams * audio_seconds / ours_s
    base_x = streams * audio_seconds / base_s
    return {
        "block": block,
        "streams": streams,
        "sample_rate": sample_rate,
        "format": output_format,
        "decoder": decoder.name,
        "decoder_taps": decoder.taps,
        "audio_seconds_per_stream": round(audio_seconds, 3),
        "threads": 1,
        "ours_seconds": round(ours_s, 4),
        "baseline_seconds": round(base_s, 4),
        "ours_x_realtime_per_core": round(ours_x, 1),
        "baseline_x_realtime_per_core": round(base_x, 1),
        "speedup": round(ours_x / base_x, 2),
        "ours_block_ms": round(1e3 * ours_s / blocks, 4),
        "max_abs_diff_at_fixed_pose": diff,
        "cpu": cpu_description(),
    }
