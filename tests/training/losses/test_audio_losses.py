"""Tests of training/swansphere_training/losses/audio.py, plus a 30-step FOA-VAE overfit run."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from swansphere.errors import InputError
from swansphere.foa.encode import encode_mono
from swansphere.models.vae import FOAVAE, kl_divergence, pad_to_stride
from swansphere_training.losses.audio import (
    IntensityLoss,
    MultiResolutionSTFTLoss,
    MultiScaleSTFTDiscriminator,
    VAELossWeights,
    default_fft_sizes,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)

RATE = 22050


@pytest.fixture(autouse=True)
def one_thread():
    """Run single-threaded: on the 2 shared cores, spinning OpenMP threads make a contended
    2-thread run up to 10x slower than one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def mrstft() -> MultiResolutionSTFTLoss:
    return MultiResolutionSTFTLoss(default_fft_sizes(RATE))


def test_default_fft_sizes_scale_with_rate() -> None:
    assert default_fft_sizes(44100) == (2048, 1024, 512, 256, 128)
    assert default_fft_sizes(22050) == (1024, 512, 256, 128, 64)
    assert default_fft_sizes(48000) == (2048, 1024, 512, 256, 128)
    with pytest.raises(InputError, match="sample_rate"):
        default_fft_sizes(0)


# --------------------------------------------------------------------------------------
# Multi-resolution STFT
# --------------------------------------------------------------------------------------


def test_mrstft_is_zero_for_identical_signals(mrstft: MultiResolutionSTFTLoss) -> None:
    x = noise((2, 4, 4096), 0)
    result = mrstft(x, x)
    assert result.total.item() == 0.0
    assert torch.all(result.per_channel == 0)


def test_mrstft_reference_value_for_half_amplitude(mrstft: MultiResolutionSTFTLoss) -> None:
    # STFT is linear, so |S_hat| = |S| / 2 in every bin: spectral convergence 1/2 and
    # log-magnitude distance ln 2, for every channel and resolution.
    x = noise((2, 4, 4096), 1)
    result = mrstft(0.5 * x, x)
    expected = 0.5 + math.log(2.0)
    torch.testing.assert_close(result.per_channel, torch.full((4,), expected), rtol=1e-4, atol=0)
    assert result.total.item() == pytest.approx(expected, rel=1e-4)


def test_mrstft_decreases_as_signals_get_closer(mrstft: MultiResolutionSTFTLoss) -> None:
    x = noise((1, 4, 4096), 2)
    error = noise((1, 4, 4096), 3)
    losses = [mrstft(x + a * error, x).total.item() for a in (1.0, 0.3, 0.1, 0.03, 0.0)]
    assert all(a > b for a, b in itertools.pairwise(losses))


def test_mrstft_channel_weights(mrstft: MultiResolutionSTFTLoss) -> None:
    x = noise((1, 4, 4096), 4)
    pred = x.clone()
    pred[:, 2] += 0.2 * noise((1, 4096), 5)  # error in Z only
    result = mrstft(pred, x)
    assert torch.all(result.per_channel[[0, 1, 3]] == 0) and result.per_channel[2] > 0
    assert result.total.item() == pytest.approx(0.25 * result.per_channel[2].item(), rel=1e-6)
    w_only = MultiResolutionSTFTLoss(default_fft_sizes(RATE), channel_weights=(1, 0, 0, 0))
    assert w_only(pred, x).total.item() == 0.0


def test_mrstft_silent_dipole_stays_bounded(mrstft: MultiResolutionSTFTLoss) -> None:
    # Pseudo-FOA has silent dipoles; an error at -40 dB there must not explode the loss.
    x = noise((1, 4, 4096), 6)
    x[:, 2:] = 0
    pred = x.clone()
    pred[:, 2] = 0.01 * noise((1, 4096), 7)
    per_channel = mrstft(pred, x).per_channel
    assert per_channel[3] == 0 and 0 < per_channel[2] < 20


def test_mrstft_bad_input(mrstft: MultiResolutionSTFTLoss) -> None:
    x = torch.zeros(1, 4, 4096)
    with pytest.raises(InputError, match="differ"):
        mrstft(x, torch.zeros(1, 4, 8192))
    with pytest.raises(InputError, match=r"\(B, 4, T\)"):
        mrstft(torch.zeros(1, 2, 4096), torch.zeros(1, 2, 4096))
    with pytest.raises(InputError, match="at least 1024"):
        mrstft(torch.zeros(1, 4, 512), torch.zeros(1, 4, 512))
    with pytest.raises(InputError, match="channel_weights"):
        MultiResolutionSTFTLoss(channel_weights=(1, -1, 0, 0))


# --------------------------------------------------------------------------------------
# Discriminator and adversarial losses
# --------------------------------------------------------------------------------------


def halve(bins: int) -> int:
    """Frequency bins after a (.., 9) conv with stride 2 and padding 4."""
    return (bins - 1) // 2 + 1


def _plane_wave(azimuth: float, elevation: float, n: int = 8192) -> torch.Tensor:
    mono = np.random.default_rng(7).standard_normal(n)
    return torch.from_numpy(np.asarray(encode_mono(mono, azimuth, elevation), np.float32))[None]


def test_intensity_loss_reference_values() -> None:
    loss = IntensityLoss(default_fft_sizes(RATE)[:3])
    wave = _plane_wave(0.5, 0.2)
    assert float(loss(wave, wave)) < 1e-6
    # A plane wave from the opposite direction: |I_pred - I_true| = 2 |I_true| = 2 E per bin.
    opposite = _plane_wave(0.5 + math.pi, -0.2)
    assert float(loss(opposite, wave)) == pytest.approx(2.0, abs=1e-3)
    assert float(loss(torch.zeros_like(wave), wave)) == pytest.approx(1.0, abs=1e-3)
    # Per-channel magnitudes cannot tell a flipped dipole; the intensity loss can.
    flipped = wave.clone()
    flipped[:, 3] *= -1  # X
    mrstft = MultiResolutionSTFTLoss(default_fft_sizes(RATE))
    assert float(mrstft(flipped, wave).total) < 1e-5
    assert float(loss(flipped, wave)) > 0.5
    # Monotone in the angle between the directions.
    values = [float(loss(_plane_wave(0.5 + d, 0.2), wave)) for d in (0.05, 0.3, 1.0)]
    assert values == sorted(values)


def test_intensity_loss_gradient_and_bad_input() -> None:
    loss = IntensityLoss((256, 128))
    wave = _plane_wave(1.0, 0.0, 2048)
    pred = wave.clone().requires_grad_(True)
    loss(pred, wave).backward()  # zero distance: the gradient must stay finite
    assert torch.isfinite(pred.grad).all()
    with pytest.raises(InputError, match="shape"):
        loss(wave[:, :3], wave[:, :3])
    with pytest.raises(InputError, match="differ"):
        loss(wave, wave[..., :1024])


def test_discriminator_shapes() -> None:
    sizes = default_fft_sizes(RATE)
    disc = MultiScaleSTFTDiscriminator(in_channels=4, filters=8, fft_sizes=sizes)
    x = noise((2, 4, 8192), 8)
    logits, features = disc(x)
    assert len(logits) == len(features) == len(sizes)
    for n, logit, feats in zip(sizes, logits, features, strict=True):
        frames = (8192 - n) // (n // 4) + 1
        bins = halve(halve(halve(n // 2 + 1)))
        assert logit.shape == (2, 1, frames, bins)
        assert len(feats) == 5 and all(f.shape[:3] == (2, 8, frames) for f in feats)
    with pytest.raises(InputError, match=r"\(B, 4, T\)"):
        disc(torch.zeros(2, 2, 8192))


def test_discriminator_sees_inter_channel_phase() -> None:
    # Flipping the sign of Y (mirroring the scene left-right) keeps every channel's
    # magnitude spectrum but must change what the discriminator sees.
    torch.manual_seed(9)
    disc = MultiScaleSTFTDiscriminator(in_channels=4, filters=8, fft_sizes=(256, 128))
    x = noise((1, 4, 2048), 10)
    mirrored = x * torch.tensor([1.0, -1.0, 1.0, 1.0])[None, :, None]
    (a, _), (b, _) = disc(x), disc(mirrored)
    assert (a[0] - b[0]).abs().max() > 1e-4


def test_hinge_losses_reference_values() -> None:
    real = [torch.tensor([2.0, 0.0]), torch.tensor([0.5])]
    fake = [torch.tensor([-2.0, 0.0]), torch.tensor([-0.5])]
    # scale 1: mean(relu(1 - [2, 0])) + mean(relu(1 + [-2, 0])) = 0.5 + 0.5
    # scale 2: relu(1 - 0.5) + relu(1 - 0.5) = 1.0
    assert discriminator_loss(real, fake).item() == pytest.approx(1.0)
    # generator: scale 1 mean(relu(1 - [-2, 0])) = 2, scale 2 relu(1.5) = 1.5
    assert generator_adversarial_loss(fake).item() == pytest.approx(1.75)
    with pytest.raises(InputError, match="scales"):
        discriminator_loss(real, fake[:1])


def test_feature_matching_loss() -> None:
    real = [[noise((1, 3, 4, 4), 11), noise((1, 3, 2, 2), 12)]]
    assert feature_matching_loss(real, real).item() == 0.0
    fake = [[(2 * f).requires_grad_() for f in real[0]]]
    real_leaf = [[f.clone().requires_grad_() for f in real[0]]]
    loss = feature_matching_loss(real_leaf, fake)
    assert loss.item() == pytest.approx(1.0, rel=1e-6)  # |2r - r| / |r| = 1 per layer
    loss.backward()
    assert all(f.grad is not None for f in fake[0])
    assert all(f.grad is None for f in real_leaf[0])  # real features are targets


def test_loss_weights() -> None:
    w = VAELossWeights()
    assert (w.mrstft, w.kl, w.adversarial, w.feature_matching, w.l1) == (1.0, 1e-5, 1.0, 5.0, 0.0)
    terms = {
        "mrstft": torch.tensor(2.0),
        "kl": torch.tensor(100.0),
        "adversarial": torch.tensor(0.5),
        "feature_matching": torch.tensor(0.1),
    }
    assert w.total(terms).item() == pytest.approx(2.0 + 1e-3 + 0.5 + 0.5)
    with pytest.raises(InputError, match="'kl' has weight"):
        w.total({k: v for k, v in terms.items() if k != "kl"})
    with pytest.raises(InputError, match="unknown loss term"):
        w.total({**terms, "mel": torch.tensor(1.0)})
    with pytest.raises(InputError, match="kl must be finite and >= 0"):
        VAELossWeights(kl=-1.0)


# --------------------------------------------------------------------------------------
# Overfit smoke test
# --------------------------------------------------------------------------------------


def test_tiny_vae_overfits_one_clip() -> None:
    # One 1-s FOA clip at 22.05 kHz: a decaying 440 Hz tone plus noise at azimuth 60 deg,
    # elevation 20 deg. 30 Adam steps on MR-STFT + KL must cut the loss clearly.
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    t = np.arange(RATE) / RATE
    mono = 0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t) + 0.05 * rng.standard_normal(RATE)
    foa = encode_mono(mono, np.deg2rad(60), np.deg2rad(20))
    x = pad_to_stride(torch.tensor(foa, dtype=torch.float32)[None], 1024)  # (1, 4, 22528)

    model = FOAVAE.from_config("tiny").train()
    mrstft = MultiResolutionSTFTLoss(default_fft_sizes(RATE))
    weights = VAELossWeights(adversarial=0.0, feature_matching=0.0)  # no discriminator here
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        recon, mean, logvar = model(x)
        terms = {"mrstft": mrstft(recon, x).total, "kl": kl_divergence(mean, logvar)}
        loss = weights.total(terms)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    print(f"overfit: first loss {losses[0]:.3f}, mean of last 5 {np.mean(losses[-5:]):.3f}")
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < 0.6 * losses[0]


def test_vae_stage_dc_error_measures_offset_relative_to_rms() -> None:
    from swansphere_training.stages.vae import VAEStage

    target = torch.sin(torch.linspace(0, 200, 4096)).expand(2, 4, -1) * 0.5
    assert float(VAEStage._dc_error(target, target)) == 0.0
    shifted = target + 0.1
    rms = 0.5 / math.sqrt(2)
    assert float(VAEStage._dc_error(shifted, target)) == pytest.approx(0.1 / rms, rel=0.02)
