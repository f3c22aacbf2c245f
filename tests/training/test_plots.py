"""Tests of training/swansphere_training/evaluation/plots.py."""

import numpy as np
import pytest

from swansphere.errors import InputError
from swansphere_training.evaluation.plots import (
    foa_spectrogram_figure,
    log_spectrogram_db,
    plt,
    saliency_figure,
    similarity_figure,
)


def test_log_spectrogram_peaks_at_the_tone():
    rate, n_fft = 8000, 256
    tone = np.sin(2 * np.pi * 1000 * np.arange(rate) / rate)
    spec = log_spectrogram_db(tone, n_fft)
    assert spec.shape[0] == n_fft // 2 + 1
    assert int(np.argmax(spec[:, 3])) == round(1000 * n_fft / rate)


def test_figures_draw_and_reject_bad_shapes(tmp_path):
    foa = np.random.default_rng(0).standard_normal((4, 4000))
    fig = foa_spectrogram_figure(foa, 0.5 * foa, 8000, "t")
    assert len(fig.axes) == 8
    fig.savefig(tmp_path / "spec.png")
    plt.close(fig)
    fig = similarity_figure(np.eye(40))
    assert fig.axes[0].images[0].get_array().shape == (32, 32)
    plt.close(fig)
    with pytest.raises(InputError, match="FOA"):
        foa_spectrogram_figure(foa[:3], foa[:3], 8000)
    with pytest.raises(InputError, match="square"):
        similarity_figure(np.zeros((3, 4)))
    frames = np.zeros((2, 64, 128, 3), dtype=np.uint8)
    fig = saliency_figure(
        frames, np.random.default_rng(1).dirichlet(np.ones(32), 2).reshape(2, 4, 8)
    )
    assert len(fig.axes) == 2 and fig.axes[0].images[1].get_array().shape == (4, 8)
    fig.savefig(tmp_path / "saliency.png")
    plt.close(fig)
    with pytest.raises(InputError, match="maps"):
        saliency_figure(frames, np.zeros((3, 4, 8)))
