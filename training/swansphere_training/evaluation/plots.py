"""Figures the training stages log to MLflow: FOA spectrograms, similarity matrices and
SVAC saliency maps.

Figures use matplotlib's Agg backend (no display needed) and are returned open; the
caller logs and then closes them (``plt.close(fig)``).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from swansphere.errors import InputError

ACN_NAMES = ("W", "Y", "Z", "X")


def log_spectrogram_db(x: np.ndarray, n_fft: int = 512) -> np.ndarray:
    """Magnitude spectrogram in dB (freq, frames) of a mono signal: Hann, hop n_fft / 4."""
    hop = n_fft // 4
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    window = np.hanning(n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * window
    magnitude = np.abs(np.fft.rfft(frames, axis=-1)).T
    return 20 * np.log10(np.maximum(magnitude, 1e-6))


def foa_spectrogram_figure(
    original: np.ndarray, reconstruction: np.ndarray, sample_rate: int, title: str = ""
):
    """Spectrograms of each AmbiX channel (ACN W, Y, Z, X): original on top, reconstruction
    below, on one dB scale (the original's maximum down 80 dB)."""
    original, reconstruction = np.asarray(original), np.asarray(reconstruction)
    if original.ndim != 2 or original.shape[0] != 4 or original.shape != reconstruction.shape:
        raise InputError(
            f"need two FOA arrays (4, n) of one shape, got {original.shape} and "
            f"{reconstruction.shape}"
        )
    specs = [[log_spectrogram_db(row) for row in pair] for pair in (original, reconstruction)]
    top = max(s.max() for s in specs[0])
    duration = original.shape[1] / sample_rate
    fig, axes = plt.subplots(2, 4, figsize=(14, 5), sharex=True, sharey=True)
    for r, label in enumerate(("original", "reconstruction")):
        for c in range(4):
            ax = axes[r, c]
            ax.imshow(
                specs[r][c],
                origin="lower",
                aspect="auto",
                vmin=top - 80,
                vmax=top,
                extent=(0.0, duration, 0.0, sample_rate / 2000),
                cmap="magma",
            )
            ax.set_title(f"{label} {ACN_NAMES[c]}", fontsize=9)
            if c == 0:
                ax.set_ylabel("kHz")
            if r == 1:
                ax.set_xlabel("s")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def similarity_figure(similarity: np.ndarray, title: str = "", max_items: int = 32):
    """Heat map of a (video rows x audio columns) similarity matrix; the diagonal holds the
    true pairs. At most ``max_items`` rows and columns are drawn."""
    sim = np.asarray(similarity, dtype=float)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise InputError(f"similarity must be a square matrix, got shape {sim.shape}")
    sim = sim[:max_items, :max_items]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    image = ax.imshow(sim, cmap="viridis")
    ax.set_xlabel("audio clip")
    ax.set_ylabel("video clip")
    ax.set_title(title or "video-audio similarity (true pairs on the diagonal)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def saliency_figure(frames: np.ndarray, maps: np.ndarray, title: str = ""):
    """Panoramas (k, H, W, 3) uint8 with a saliency map (k, rows, cols) over each, one row
    per clip: where the video side of SVAC's spatial code looks."""
    frames, maps = np.asarray(frames), np.asarray(maps, dtype=float)
    if frames.ndim != 4 or frames.shape[-1] != 3 or maps.ndim != 3 or len(maps) != len(frames):
        raise InputError(
            f"need frames (k, H, W, 3) and maps (k, rows, cols), got {frames.shape} and "
            f"{maps.shape}"
        )
    k = len(frames)
    fig, axes = plt.subplots(k, 1, figsize=(7, 2.0 * k + 0.4), squeeze=False)
    for ax, frame, saliency in zip(axes[:, 0], frames, maps, strict=True):
        height, width = frame.shape[:2]
        ax.imshow(frame)
        ax.imshow(
            saliency,
            extent=(0, width, height, 0),
            cmap="magma",
            alpha=0.55,
            interpolation="nearest",
        )
        ax.set_xticks(
            [0, width / 4, width / 2, 3 * width / 4, width], ["180", "90", "0", "-90", "-180"]
        )
        ax.set_yticks([])
    axes[-1, 0].set_xlabel("azimuth (deg)")
    fig.suptitle(title or "SVAC video saliency (first step of each clip)", fontsize=9)
    fig.tight_layout()
    return fig
