"""Tests of backend/swansphere/models/vae.py: shapes, causality, streaming, KL, checkpoints, SAO."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.nn.utils import parametrize

from swansphere.errors import InputError
from swansphere.foa.doa import angular_error, clip_direction
from swansphere.foa.encode import encode_mono
from swansphere.models.vae import (
    FOAVAE,
    LEVEL_FADE,
    VAE_PRESETS,
    CausalConv1d,
    CausalConvTranspose1d,
    StreamingDecoder,
    VAEConfig,
    count_parameters,
    decorrelate_frames,
    frame_intensity,
    frame_level,
    kl_divergence,
    load_stable_audio_open,
    pad_to_stride,
)

TINY = VAE_PRESETS["tiny"]
# A plain Oobleck VAE, as Stable Audio Open's: no measured (level, direction) channels.
NOT_MEASURED = {"direct_path": False, "level_path": False}


@pytest.fixture(autouse=True)
def one_thread():
    """Run single-threaded: on the 2 shared cores, spinning OpenMP threads make a contended
    2-thread run up to 10x slower than one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturb every parameter (Snake alpha/beta start at 0) so no path is trivially inert."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model


@pytest.fixture(scope="module")
def tiny() -> FOAVAE:
    torch.manual_seed(0)
    return randomise(FOAVAE.from_config("tiny")).eval()


# --------------------------------------------------------------------------------------
# Presets, shapes, parameter counts
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_presets_give_21_53_frames_per_second(name: str) -> None:
    config = VAE_PRESETS[name]
    assert config.frame_rate == pytest.approx(44100 / 2048, abs=1e-12)
    assert round(config.frame_rate, 2) == 21.53


def test_preset_values_match_the_design() -> None:
    paper = VAE_PRESETS["paper"]
    assert (paper.sample_rate, paper.hop_length, paper.channels) == (44100, 2048, 128)
    assert paper.multipliers == (1, 2, 4, 8, 16) and paper.strides == (2, 4, 4, 8, 8)
    assert paper.latent_dim == 128 and paper.in_channels == 4
    assert (TINY.sample_rate, TINY.hop_length, TINY.in_channels) == (22050, 1024, 4)


def test_tiny_shapes_and_size(tiny: FOAVAE) -> None:
    x = 0.1 * torch.randn(2, 4, 3 * 1024)
    mean, logvar = tiny.encode(x)
    assert mean.shape == logvar.shape == (2, TINY.latent_dim, 3)
    recon, m2, lv2 = tiny(x)
    assert recon.shape == x.shape
    assert torch.equal(m2, mean) and torch.equal(lv2, logvar)
    assert tiny.decode(mean).shape == (2, 4, 3 * 1024)
    assert 1_000_000 <= count_parameters(tiny) <= 3_000_000


def test_paper_preset_on_meta_device() -> None:
    with torch.device("meta"):
        model = FOAVAE.from_config("paper")
        mean, logvar = model.encode(torch.empty(1, 4, 2 * 2048))
        audio = model.decode(mean)
    assert mean.shape == logvar.shape == (1, 128, 2) and audio.shape == (1, 4, 4096)
    # Stable Audio Open's Oobleck VAE has about 157 M parameters; ours differs only in
    # the 4-channel ends and the 128-dim latent.
    assert 150e6 < count_parameters(model) < 165e6


# --------------------------------------------------------------------------------------
# Causal layers
# --------------------------------------------------------------------------------------


def test_causal_transposed_conv_equals_cropped_conv_transpose() -> None:
    torch.manual_seed(1)
    layer = CausalConvTranspose1d(3, 5, stride=4)
    x = torch.randn(2, 3, 7)
    reference = F.conv_transpose1d(x, layer.weight, layer.bias, stride=4)[..., : 7 * 4]
    torch.testing.assert_close(layer(x), reference, atol=1e-6, rtol=1e-6)


def test_causal_conv_is_left_padded_and_strided() -> None:
    torch.manual_seed(2)
    layer = CausalConv1d(2, 3, kernel_size=8, stride=4)
    x = torch.randn(1, 2, 32)
    y = layer(x)
    assert y.shape == (1, 3, 8)
    reference = F.conv1d(F.pad(x, (4, 0)), layer.weight, layer.bias, stride=4)
    torch.testing.assert_close(y, reference)


def test_decoder_is_causal(tiny: FOAVAE) -> None:
    torch.manual_seed(3)
    z = torch.randn(1, TINY.latent_dim, 8)
    z2 = z.clone()
    z2[..., 5:] += torch.randn(1, TINY.latent_dim, 3)
    with torch.no_grad():
        a, b = tiny.decode(z), tiny.decode(z2)
    cut = 5 * TINY.hop_length
    assert torch.equal(a[..., :cut], b[..., :cut])
    assert (a[..., cut:] - b[..., cut:]).abs().max() > 1e-3


def test_encoder_is_causal(tiny: FOAVAE) -> None:
    torch.manual_seed(4)
    x = 0.1 * torch.randn(1, 4, 6 * 1024)
    x2 = x.clone()
    x2[..., 4 * 1024 :] = 0.3 * torch.randn(1, 4, 2 * 1024)
    with torch.no_grad():
        (a, _), (b, _) = tiny.encode(x), tiny.encode(x2)
    assert torch.equal(a[..., :4], b[..., :4])
    assert (a[..., 4:] - b[..., 4:]).abs().max() > 1e-4


# --------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------


def test_streaming_decode_equals_offline(tiny: FOAVAE) -> None:
    torch.manual_seed(5)
    z = torch.randn(2, TINY.latent_dim, 20)
    with torch.no_grad():
        offline = tiny.decode(z)
    stream = StreamingDecoder(tiny)
    chunks = [stream.decode_chunk(z[..., i : i + 4]) for i in range(0, 20, 4)]
    assert all(c.shape == (2, 4, 4 * TINY.hop_length) for c in chunks)
    streamed = torch.cat(chunks, dim=-1)
    max_diff = (streamed - offline).abs().max().item()
    print(f"streaming vs offline max abs diff (tiny, float32, 5 x 4 frames): {max_diff:.3e}")
    # Relative: random level channels make samples of size e^2.
    assert max_diff <= 1e-5 * max(1.0, offline.abs().max().item())
    assert offline.abs().max() > 1e-2  # the comparison is not between two silences
    assert stream.frames == 20
    # The carried state matters: chunks decoded from a fresh state do not join up.
    fresh = []
    for i in range(0, 20, 4):
        stream.reset()
        fresh.append(stream.decode_chunk(z[..., i : i + 4]))
    assert (torch.cat(fresh, dim=-1) - offline).abs().max() > 1e-3


def test_streaming_reset_and_uneven_chunks(tiny: FOAVAE) -> None:
    torch.manual_seed(6)
    z = torch.randn(1, TINY.latent_dim, 9)
    with torch.no_grad():
        offline = tiny.decode(z)
    stream = StreamingDecoder(tiny)
    stream.decode_chunk(torch.randn(1, TINY.latent_dim, 4))  # some other stream
    stream.reset()
    parts = [stream.decode_chunk(z[..., a:b]) for a, b in ((0, 1), (1, 4), (4, 9))]
    assert (torch.cat(parts, -1) - offline).abs().max() <= 1e-5 * max(1.0, offline.abs().max())


def test_streaming_bad_input(tiny: FOAVAE) -> None:
    stream = StreamingDecoder(tiny)
    with pytest.raises(InputError, match=r"\(B, 32, F>0\)"):
        stream.decode_chunk(torch.zeros(1, 16, 4))
    stream.decode_chunk(torch.zeros(2, TINY.latent_dim, 4))
    with pytest.raises(InputError, match="batch size changed from 2 to 1"):
        stream.decode_chunk(torch.zeros(1, TINY.latent_dim, 4))


def test_fold_weight_norm_keeps_every_output(tiny: FOAVAE) -> None:
    """fold_weight_norm (what a serving runtime does) leaves no weight norm to recompute
    and freezes the polyphase weights, and the folded model encodes, decodes and streams
    bit for bit as before; training mode ignores a frozen polyphase weight."""
    folded = FOAVAE(tiny.config)
    folded.load_state_dict(tiny.state_dict())
    folded.eval().fold_weight_norm().fold_weight_norm()  # idempotent
    assert not any(parametrize.is_parametrized(m) for m in folded.modules())
    transposed = [m for m in folded.modules() if isinstance(m, CausalConvTranspose1d)]
    assert transposed and all(m.frozen_polyphase is not None for m in transposed)
    assert not any("frozen_polyphase" in k for k in folded.state_dict())
    torch.manual_seed(7)
    z = torch.randn(1, TINY.latent_dim, 12)
    x = 0.1 * torch.randn(1, 4, 8 * TINY.hop_length)
    with torch.no_grad():
        assert torch.equal(folded.decode(z), tiny.decode(z))
        assert all(torch.equal(a, b) for a, b in zip(folded.encode(x), tiny.encode(x), strict=True))
    streams = [StreamingDecoder(tiny), StreamingDecoder(folded)]
    for i in range(0, 12, 4):
        chunk, folded_chunk = (s.decode_chunk(z[..., i : i + 4]) for s in streams)
        assert torch.equal(folded_chunk, chunk)
    layer = transposed[0]
    with torch.no_grad():
        layer.weight.add_(1.0)
    layer.train()
    assert not torch.equal(layer.polyphase_weight(), layer.frozen_polyphase)
    layer.eval()
    assert torch.equal(layer.polyphase_weight(), layer.frozen_polyphase)


# --------------------------------------------------------------------------------------
# Reparameterisation and KL
# --------------------------------------------------------------------------------------


def test_sample_statistics_and_gradients() -> None:
    mean = torch.full((4, 8, 2000), 1.5, requires_grad=True)
    logvar = torch.full((4, 8, 2000), math.log(0.25), requires_grad=True)
    z = FOAVAE.sample(mean, logvar, generator=torch.Generator().manual_seed(0))
    assert z.mean().item() == pytest.approx(1.5, abs=0.01)
    assert z.std().item() == pytest.approx(0.5, abs=0.01)
    z.sum().backward()
    assert mean.grad is not None and torch.all(mean.grad == 1)
    assert logvar.grad is not None and logvar.grad.abs().sum() > 0
    again = FOAVAE.sample(mean, logvar, generator=torch.Generator().manual_seed(0))
    assert torch.equal(z, again)


def test_kl_matches_torch_distributions() -> None:
    torch.manual_seed(7)
    mean, logvar = torch.randn(3, 5, 7), torch.randn(3, 5, 7)
    posterior = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(torch.zeros(()), torch.ones(()))
    expected = torch.distributions.kl_divergence(posterior, prior).sum(1).mean()
    torch.testing.assert_close(kl_divergence(mean, logvar), expected)
    assert kl_divergence(torch.zeros(2, 5, 3), torch.zeros(2, 5, 3)).item() == 0.0
    with pytest.raises(InputError, match="differ"):
        kl_divergence(mean, logvar[..., :3])


def test_encoder_logvar_is_softplus_floor(tiny: FOAVAE) -> None:
    with torch.no_grad():
        _, logvar = tiny.encode(torch.randn(1, 4, 1024))
    assert torch.all(logvar >= 2 * math.log(1e-4) - 1e-4)


# --------------------------------------------------------------------------------------
# Checkpoints and configs
# --------------------------------------------------------------------------------------


def test_checkpoint_round_trip(tiny: FOAVAE, tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(tiny.config.to_dict()))
    save_file(tiny.state_dict(), str(tmp_path / "model.safetensors"))
    config = json.loads((tmp_path / "config.json").read_text())
    rebuilt = FOAVAE.from_config(config)
    rebuilt.load_state_dict(load_file(str(tmp_path / "model.safetensors")))
    rebuilt.eval()
    assert rebuilt.config == tiny.config
    x = 0.1 * torch.randn(1, 4, 2048)
    with torch.no_grad():
        assert torch.equal(rebuilt(x)[0], tiny(x)[0])


def test_config_errors() -> None:
    with pytest.raises(InputError, match="one multiplier per stride"):
        VAEConfig(16, (1, 2), (2, 4, 8), 32, 22050)
    with pytest.raises(InputError, match="latent_dim must be a positive integer"):
        VAEConfig(16, (1,), (2,), 0, 22050)
    with pytest.raises(InputError, match="strides must name at least one level"):
        VAEConfig(16, (), (), 8, 22050)
    with pytest.raises(InputError, match="unknown VAEConfig field"):
        VAEConfig.from_dict({**TINY.to_dict(), "dropout": 0.1})
    with pytest.raises(InputError, match="unknown VAE preset 'huge'"):
        FOAVAE.from_config("huge")


# --------------------------------------------------------------------------------------
# Bad input and padding
# --------------------------------------------------------------------------------------


def test_bad_audio_and_latents(tiny: FOAVAE) -> None:
    with pytest.raises(InputError, match="multiple of the total stride 1024"):
        tiny.encode(torch.zeros(1, 4, 1500))
    with pytest.raises(InputError, match=re.escape("(B, 4, T)")):
        tiny.encode(torch.zeros(1, 2, 1024))
    with pytest.raises(InputError, match=re.escape("(B, 4, T)")):
        tiny.encode(torch.zeros(4, 1024))
    with pytest.raises(InputError, match="positive multiple"):
        tiny.encode(torch.zeros(1, 4, 0))
    with pytest.raises(InputError, match=re.escape("(B, 32, F>0)")):
        tiny.decode(torch.zeros(1, 31, 2))


def test_pad_to_stride() -> None:
    x = torch.ones(2, 4, 1500)
    padded = pad_to_stride(x, 1024)
    assert padded.shape == (2, 4, 2048)
    assert torch.equal(padded[..., :1500], x) and torch.all(padded[..., 1500:] == 0)
    assert pad_to_stride(torch.ones(1, 4, 2048), 1024).shape[-1] == 2048
    with pytest.raises(InputError, match="stride"):
        pad_to_stride(x, 0)


# --------------------------------------------------------------------------------------
# Stable Audio Open initialisation
# --------------------------------------------------------------------------------------


def sao_style_state_dict(model: FOAVAE) -> dict[str, torch.Tensor]:
    """A 2-channel model's weights named like a stable-audio-tools checkpoint.

    Weight norm as ``weight_g`` / ``weight_v``, the ``pretransform.model.`` prefix of a full
    Stable Audio Open checkpoint, and one unrelated DiT tensor.
    """
    out = {}
    for key, value in model.state_dict().items():
        key = key.replace(".parametrizations.weight.original0", ".weight_g")
        key = key.replace(".parametrizations.weight.original1", ".weight_v")
        out[f"pretransform.model.{key}"] = value.clone()
    out["model.model.transformer.layers.0.self_attn.to_qkv.weight"] = torch.zeros(3, 3)
    return out


def test_load_stable_audio_open_adapts_stereo_to_foa() -> None:
    torch.manual_seed(8)
    stereo = randomise(
        FOAVAE(VAEConfig(**{**TINY.to_dict(), "in_channels": 2, **NOT_MEASURED})), seed=1
    ).eval()
    # The adaptation itself, on an FOA model without the direct path (whose latent
    # convolution has fewer learned channels than SAO's, see the next test).
    foa = FOAVAE(VAEConfig(**{**TINY.to_dict(), **NOT_MEASURED})).eval()
    report = load_stable_audio_open(foa, sao_style_state_dict(stereo))

    last = f"decoder.layers.{len(foa.decoder.layers) - 1}.weight"
    assert sorted(report.adapted) == sorted(["encoder.layers.0.weight", last])
    assert report.missing == []
    assert list(report.skipped) == ["model.model.transformer.layers.0.self_attn.to_qkv.weight"]
    assert len(report.loaded) + len(report.adapted) == sum(
        1 for k in foa.state_dict() if not k.endswith("original1")
    )

    # Pseudo-FOA W = L + R, Y = L - R (Z = X = 0) gives exactly the stereo model's latents.
    stereo_audio = 0.2 * torch.randn(1, 2, 4 * 1024)
    left, right = stereo_audio[:, 0], stereo_audio[:, 1]
    zeros = torch.zeros_like(left)
    pseudo = torch.stack([left + right, left - right, zeros, zeros], dim=1)
    with torch.no_grad():
        mean_stereo, logvar_stereo = stereo.encode(stereo_audio)
        mean_foa, logvar_foa = foa.encode(pseudo)
        torch.testing.assert_close(mean_foa, mean_stereo, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(logvar_foa, logvar_stereo, atol=1e-5, rtol=1e-4)

        # The decoder's W and Y outputs are L + R and L - R of the stereo decoder.
        z = torch.randn(1, TINY.latent_dim, 3)
        out_stereo, out_foa = stereo.decode(z), foa.decode(z)
    torch.testing.assert_close(out_foa[:, 0], out_stereo[:, 0] + out_stereo[:, 1])
    torch.testing.assert_close(out_foa[:, 1], out_stereo[:, 0] - out_stereo[:, 1])
    # Z and X get only small random weights.
    assert out_foa[:, 2:].abs().max() < 0.05 * out_foa[:, :2].abs().max()


def test_load_stable_audio_open_skips_mismatched_latent_and_plain_weights() -> None:
    # A SAO-like source with a 64-dim latent (encoder emits 128) and plain (not
    # weight-normalised) weights, loaded into a 32-dim model: the latent convs are skipped.
    source = FOAVAE(
        VAEConfig(**{**TINY.to_dict(), "in_channels": 2, "latent_dim": 64, **NOT_MEASURED})
    )
    plain = {}
    for name, module in source.named_modules():
        if isinstance(module, CausalConv1d | CausalConvTranspose1d):
            plain[f"{name}.weight"] = module.weight.detach().clone()
            if module.bias is not None:
                plain[f"{name}.bias"] = module.bias.detach().clone()
    target = FOAVAE.from_config("tiny")
    report = load_stable_audio_open(target, plain)
    latent_out = f"encoder.layers.{len(target.encoder.layers) - 1}"
    assert "shape (128, 128, 3) != FOAVAE (56, 128, 3)" in report.skipped[f"{latent_out}.weight"]
    assert "decoder.layers.0.weight" in report.skipped
    assert f"{latent_out}.weight" in report.missing and "decoder.layers.0.weight" in report.missing
    torch.testing.assert_close(
        target.encoder.layers[1].layers[0].layers[1].weight,
        source.encoder.layers[1].layers[0].layers[1].weight,
    )


def test_transposed_weight_norm_layout_matches_sao() -> None:
    # stable-audio-tools' WNConvTranspose1d normalises over dim 0 (input channels).
    model = FOAVAE.from_config("tiny")
    g = model.state_dict()["decoder.layers.1.layers.1.parametrizations.weight.original0"]
    w = model.decoder.layers[1].layers[1].weight
    assert g.shape == (w.shape[0], 1, 1)
    np.testing.assert_allclose(
        g.flatten().numpy(), w.detach().flatten(1).norm(dim=1).numpy(), rtol=1e-5
    )


def test_sao_warm_start_with_the_direct_path_keeps_the_latent_conv_fresh() -> None:
    stereo = FOAVAE(VAEConfig(**{**TINY.to_dict(), "in_channels": 2, **NOT_MEASURED}))
    foa = FOAVAE.from_config("tiny")
    report = load_stable_audio_open(foa, sao_style_state_dict(stereo))
    latent_conv = f"encoder.layers.{len(foa.encoder.layers) - 1}"
    assert report.missing == [f"{latent_conv}.weight", f"{latent_conv}.bias"]
    assert "shape" in report.skipped[f"{latent_conv}.weight"]


def test_frame_intensity_is_the_direction_of_a_plane_wave() -> None:
    hop = 256
    rng = np.random.default_rng(4)
    mono = rng.standard_normal(4 * hop)
    az, el = np.deg2rad(130.0), np.deg2rad(-25.0)
    wave = torch.tensor(encode_mono(mono, az, el), dtype=torch.float32)[None]
    gains = frame_intensity(wave, hop)  # (1, 3, 4): Y, Z, X
    unit = torch.tensor(
        [np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)], dtype=torch.float32
    )
    torch.testing.assert_close(gains[0].T, unit.expand(4, 3), atol=1e-5, rtol=1e-5)
    # A diffuse field (independent channels) gives short vectors; silence gives zeros.
    noise = torch.from_numpy(rng.standard_normal((1, 4, 64 * hop)).astype(np.float32))
    assert frame_intensity(noise, hop).norm(dim=1).mean() < 0.15
    assert frame_intensity(torch.zeros(1, 4, hop), hop).abs().max() == 0


def test_direct_path_latents_decode_a_plane_wave_from_w_and_stream_exactly() -> None:
    torch.manual_seed(3)
    vae = FOAVAE.from_config("tiny").eval()
    hop = vae.hop_length
    assert vae.config.learned_dim == vae.config.latent_dim - 4  # level + 3 directions
    mono = np.random.default_rng(5).standard_normal(6 * hop)
    wave = torch.tensor(encode_mono(mono, 0.7, 0.3), dtype=torch.float32)[None]
    with torch.no_grad():
        mean, logvar = vae.encode(wave)
        assert mean.shape == (1, vae.config.latent_dim, 6)
        torch.testing.assert_close(mean[:, -3:], frame_intensity(wave, hop))
        assert float(vae.kl(mean, logvar)) == pytest.approx(
            float(kl_divergence(mean[:, :-4], logvar[:, :-4]))
        )
        gains = vae.direct_path(mean[:, -3:])
        assert gains.shape == (1, 3, 6 * hop)
        # Ramps: frame k ends on its own gains; the first frame starts from zero.
        torch.testing.assert_close(gains[..., hop - 1 :: hop], mean[:, -3:])
        assert (gains[..., 1:] - gains[..., :-1]).abs().max() <= 1.0 / hop + 1e-6
        # With the convolutional dipole outputs silenced, the dipoles are exactly gains * W.
        vae.decoder.layers[-1].parametrizations.weight.original0[1:] = 0.0  # magnitudes
        audio = vae.decode(mean)
        torch.testing.assert_close(audio[:, 1:], gains * audio[:, :1], atol=1e-6, rtol=1e-5)
        # Causal and streamable: chunks give the offline decode.
        stream = StreamingDecoder(vae)
        chunks = torch.cat([stream.decode_chunk(mean[..., k : k + 2]) for k in (0, 2, 4)], -1)
        assert (chunks - audio).abs().max() < 1e-5
    with pytest.raises(InputError, match="4-channel"):
        VAEConfig(**{**TINY.to_dict(), "in_channels": 2})


def test_level_path_sets_each_frames_w_level_and_streams_exactly() -> None:
    torch.manual_seed(4)
    vae = FOAVAE.from_config("tiny").eval()  # untrained: its own W level is arbitrary
    hop, d = vae.hop_length, vae.config.learned_dim
    envelope = np.array([0.0, 0.5, 0.02, 1.0, 0.2, 0.2])
    mono = np.random.default_rng(6).standard_normal(6 * hop) * np.repeat(envelope, hop)
    wave = torch.tensor(encode_mono(mono, 0.3, 0.0), dtype=torch.float32)[None]
    with torch.no_grad():
        mean, _ = vae.encode(wave)
        torch.testing.assert_close(mean[:, d : d + 1], frame_level(wave, hop))
        audio = vae.decode(mean)
        stream = StreamingDecoder(vae)
        chunks = torch.cat([stream.decode_chunk(mean[..., k : k + 2]) for k in (0, 2, 4)], -1)
    assert (chunks - audio).abs().max() < 1e-5
    # Past each frame's fade, W's RMS is the input frame's; the silent frame stays silent.
    frames = audio[0, 0].reshape(6, hop)
    assert frames[0].abs().max() < 1e-3
    out_rms = frames[1:, LEVEL_FADE:].pow(2).mean(-1).sqrt()
    in_rms = wave[0, 0].reshape(6, hop)[1:].pow(2).mean(-1).sqrt()
    torch.testing.assert_close(out_rms, in_rms, rtol=0.2, atol=1e-4)


def test_learned_dipoles_never_move_a_frames_broadband_direction() -> None:
    rng = np.random.default_rng(9)
    hop = 256
    w = torch.from_numpy(rng.standard_normal((2, 1, 5 * hop)).astype(np.float32))
    dipoles = 0.7 * w + torch.from_numpy(rng.standard_normal((2, 3, 5 * hop)).astype(np.float32))
    out = decorrelate_frames(dipoles, w, hop)
    per_frame = (out * w).reshape(2, 3, 5, hop).sum(-1)
    assert per_frame.abs().max() < 1e-3
    # What is uncorrelated with W is kept.
    noise = dipoles - 0.7 * w
    assert (out - noise).pow(2).mean() < 0.05 * noise.pow(2).mean()
    # So with the direct path a decoded frame's broadband intensity is gains * W only.
    vae = FOAVAE.from_config("tiny").eval()
    wave = torch.tensor(encode_mono(rng.standard_normal(6 * 1024), 2.0, -0.4), dtype=torch.float32)
    with torch.no_grad():
        audio = vae.decode(vae.encode(wave[None])[0])[0].double().numpy()
    assert (
        np.rad2deg(angular_error(*clip_direction(wave.double().numpy()), *clip_direction(audio)))
        < 3.0
    )  # an untrained VAE gets the direction


def test_the_shipped_vae_decodes_what_it_encodes() -> None:
    """Guards against posterior collapse (a decoder that ignores its latent and plays one
    fixed texture): two different sounds must decode to different W signals, each closer
    to its own input's level envelope than to the other's."""
    from swansphere.models.bundle import load_bundle

    vae = load_bundle("default").build("vae")
    hop = vae.hop_length
    rng = np.random.default_rng(8)
    n = 24 * hop
    envelope = np.repeat(rng.uniform(0.0, 1.0, (2, n // hop)) ** 3, hop, axis=1)
    mono = rng.standard_normal((2, n)) * envelope * 0.2
    foa = np.stack([encode_mono(m, 0.5, 0.1) for m in mono]).astype(np.float32)
    with torch.no_grad():
        mean, _ = vae.encode(torch.from_numpy(foa))
        recon = vae.decode(mean).numpy()

    def frame_db(w: np.ndarray) -> np.ndarray:
        return 10 * np.log10((w.reshape(-1, hop) ** 2).mean(axis=1) + 1e-8)

    own = [np.corrcoef(frame_db(recon[i, 0]), frame_db(foa[i, 0]))[0, 1] for i in (0, 1)]
    other = [np.corrcoef(frame_db(recon[i, 0]), frame_db(foa[1 - i, 0]))[0, 1] for i in (0, 1)]
    assert min(own) > 0.7 and max(other) < min(own), (own, other)
