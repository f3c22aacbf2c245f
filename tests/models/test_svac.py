"""SVAC networks (swansphere.models.svac) and their FOA input features (models.features)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from transformers import VideoMAEConfig, VideoMAEModel

from swansphere.errors import InputError
from swansphere.foa.encode import direction_to_vector, encode_mono
from swansphere.foa.harmonics import real_spherical_harmonics
from swansphere.foa.panorama import grid_directions
from swansphere.foa.rotation import foa_rotation_matrix, ypr_to_matrix
from swansphere.models.direction import VideoDirectionConfig
from swansphere.models.features import (
    FOA_FEATURE_CHANNELS,
    _hz_to_mel,
    feature_frames,
    foa_features,
    latent_hop,
    mel_filterbank,
)
from swansphere.models.svac import (
    SVAC,
    SVAC_PRESETS,
    SVACConfig,
    VideoEncoder,
    count_parameters,
    pool_cell_map,
    replicate_to_audio_rate,
    standardise_over_time,
    svac_config_for_backbone,
    videomae_config,
)

SR = 22050


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # The build machine's 2 cores are shared: small matmuls on 2 contended threads run
    # about 10x slower than on one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny() -> SVAC:
    torch.manual_seed(0)
    return SVAC(SVAC_PRESETS["tiny"]).eval()


def plane_wave(azimuth: float, elevation: float, seconds: float = 1.0, seed: int = 0):
    """White noise from one direction as AmbiX FOA (1, 4, n) float64."""
    noise = np.random.default_rng(seed).standard_normal(int(seconds * SR))
    return torch.from_numpy(encode_mono(noise, azimuth, elevation))[None]


# ------------------------------------------------------------------------------ features


def test_latent_hop_gives_vae_frame_rate() -> None:
    assert latent_hop(22050) == 1024
    assert latent_hop(44100) == 2048
    assert feature_frames(44100, 1024) == 44  # ceil(43.07)
    assert feature_frames(2048, 1024) == 2


def test_slaney_mel_scale_reference_points() -> None:
    # Slaney: 200/3 Hz per mel below 1 kHz (1 kHz = 15 mel), 27 mels per factor 6.4 above.
    hz = torch.tensor([440.0, 1000.0, 6400.0], dtype=torch.float64)
    assert torch.allclose(_hz_to_mel(hz), torch.tensor([6.6, 15.0, 42.0], dtype=torch.float64))


def test_mel_filterbank_shape_and_flat_response() -> None:
    bank = mel_filterbank(2048, 44100, 128)
    assert bank.shape == (128, 1025)
    assert bool((bank >= 0).all())
    # Area normalisation: a flat unit power density gives ~1 in every band that spans
    # enough bins for the discrete sum to approximate the integral.
    df = 44100 / 2048
    bins_per_band = (bank > 0).sum(dim=1)
    wide = bins_per_band >= 8
    assert wide.sum() > 60
    assert torch.allclose(
        bank[wide].sum(dim=1) * df, torch.ones(int(wide.sum()), dtype=torch.float64), atol=0.1
    )


def test_mel_filterbank_refuses_empty_bands() -> None:
    with pytest.raises(InputError, match="hold no FFT bin"):
        mel_filterbank(256, 44100, 128)


def test_features_shape_and_tone_lands_in_its_band() -> None:
    t = np.arange(SR) / SR
    foa = torch.from_numpy(encode_mono(np.sin(2 * np.pi * 1500.0 * t), 0.0, 0.0))[None].float()
    feats = foa_features(foa, SR, n_mels=32, hop=512, n_fft=1024)
    assert feats.shape == (1, FOA_FEATURE_CHANNELS, 32, 44)
    assert feats.dtype == torch.float32
    # The loudest W band is the one whose triangle peaks nearest 1500 Hz.
    bank = mel_filterbank(1024, SR, 32)
    mel_edges = torch.linspace(0.0, float(_hz_to_mel(torch.tensor(SR / 2.0))), 34)
    centres = mel_edges[1:-1]
    expected = int(torch.argmin((centres - _hz_to_mel(torch.tensor(1500.0))).abs()))
    assert int(feats[0, 0].mean(dim=1).argmax()) == expected
    assert bank.shape == (32, 513)


@pytest.mark.parametrize(("az_deg", "el_deg"), [(0, 0), (90, 0), (-135, 30), (60, -45)])
def test_intensity_maps_of_a_plane_wave_are_its_direction(az_deg: float, el_deg: float) -> None:
    az, el = math.radians(az_deg), math.radians(el_deg)
    feats = foa_features(plane_wave(az, el), SR, n_mels=32, hop=1024)
    u_yzx = torch.tensor(
        [math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)],
        dtype=torch.float64,
    )
    assert torch.allclose(feats[0, 4:], u_yzx[:, None, None].expand_as(feats[0, 4:]), atol=1e-5)
    # Log-mel of the dipoles relative to W: 20 log10 |u_k| (where u_k is not ~0).
    for k, ch in enumerate((1, 2, 3)):
        if abs(float(u_yzx[k])) > 0.3:
            diff = feats[0, ch] - feats[0, 0]
            assert torch.allclose(
                diff, torch.full_like(diff, 20 * math.log10(abs(u_yzx[k]))), atol=1e-3
            )


def test_intensity_maps_rotate_with_the_foa_and_stay_bounded() -> None:
    rng = np.random.default_rng(3)
    foa = torch.from_numpy(rng.standard_normal((2, 4, SR)))  # incoherent: not a plane wave
    foa[:, 1:] *= 3.0  # dipoles stronger than W: |I| / |W|^2 would exceed 1
    mixing = torch.from_numpy(foa_rotation_matrix(ypr_to_matrix(70, -25, 40)))
    rotated = torch.einsum("ij,bjt->bit", mixing, foa)
    f0 = foa_features(foa, SR, n_mels=32, hop=1024)
    f1 = foa_features(rotated, SR, n_mels=32, hop=1024)
    assert float(f0[:, 4:].abs().max()) <= 1.0
    expected = torch.einsum("ij,bjmt->bimt", mixing[1:, 1:], f0[:, 4:])
    assert torch.allclose(f1[:, 4:], expected, atol=1e-9)
    assert torch.allclose(f1[:, 0], f0[:, 0], atol=1e-9)  # W untouched


def test_circular_shift_by_whole_hops_shifts_the_features() -> None:
    foa = torch.randn(1, 4, 40 * 512, dtype=torch.float64)
    f0 = foa_features(foa, SR, n_mels=32, hop=512, n_fft=1024)
    f1 = foa_features(torch.roll(foa, 7 * 512, dims=-1), SR, n_mels=32, hop=512, n_fft=1024)
    assert torch.allclose(f1, torch.roll(f0, 7, dims=-1), atol=1e-8)


def test_features_refuse_bad_input() -> None:
    with pytest.raises(InputError, match=r"\(B, 4, T\)"):
        foa_features(torch.zeros(4, 4096), SR)
    with pytest.raises(InputError, match="at least n_fft"):
        foa_features(torch.zeros(1, 4, 100), SR)
    bad = torch.zeros(1, 4, 4096)
    bad[0, 2, 5] = float("nan")
    with pytest.raises(InputError, match="non-finite"):
        foa_features(bad, SR)


# ------------------------------------------------------------------------------ config


def test_config_round_trip_and_validation() -> None:
    paper = SVAC_PRESETS["paper"]
    assert SVACConfig.from_dict(paper.to_dict()) == paper
    assert paper.time_patch == 4 and paper.freq_tokens == 8
    assert SVAC_PRESETS["tiny"].time_patch == 2
    for preset in SVAC_PRESETS.values():  # one audio frame per VAE latent frame
        assert preset.audio_rate_hz == pytest.approx(44100 / 2048)
        assert preset.embed_dim == 512 and preset.temperature == 0.07
    with pytest.raises(InputError, match="unknown SVACConfig field"):
        SVACConfig.from_dict({**paper.to_dict(), "bogus": 1})
    with pytest.raises(InputError, match="multiple of feature_hop"):
        SVACConfig(latent_hop=1000)
    with pytest.raises(InputError, match="must be positive: audio_layers"):
        SVACConfig(audio_layers=0)


# ------------------------------------------------------------------------------ networks


def test_tiny_shapes_and_unit_embeddings(tiny: SVAC) -> None:
    video = torch.randint(0, 256, (2, 8, 3, 64, 128), dtype=torch.uint8)
    foa = torch.randn(2, 4, 2 * SR) * 0.1
    with torch.no_grad():
        video_emb, audio_emb = tiny(video, foa)
        tokens = tiny.video_tokens(video)
        audio_tokens = tiny.audio_encoder.tokens(foa)
    assert video_emb.shape == audio_emb.shape == (2, 44, 512)  # ceil(44100 / 1024) frames
    # Unit frames on average over the clip (the activity map is standardised over it).
    for emb in (video_emb, audio_emb):
        assert torch.allclose(emb.square().sum(-1).mean(-1), torch.ones(2), atol=1e-5)
    assert tokens.shape == (2, 4, 4 * 8, 128)  # 8 frames / tubelet 2; 64x128 / 16 px patches
    assert tiny.video_encoder.grid == (4, 8)
    assert audio_tokens.shape == (2, 44, 4, 128)  # 32 mels / 8 per patch
    assert tiny.embed_text(torch.randn(3, 384)).shape == (3, 512)
    # Content and spatial code are per video step (repeated at the audio rate); the
    # activity map per frame. Without an audio length the embedding is per frame.
    parts = tiny.config.parts()
    with torch.no_grad():
        frames = tiny.embed_video(video)
    assert frames.shape == (2, 8, 512)
    for name in ("content", "spatial"):
        per_step = frames[:, ::2, parts[name]]
        assert torch.equal(frames[:, 1::2, parts[name]], per_step)
        expected = replicate_to_audio_rate(per_step, 44, tubelet=2)  # frames are instants
        assert torch.equal(video_emb[..., parts[name]], expected)
    content_only = SVAC(dataclasses.replace(SVAC_PRESETS["tiny"], activity_weight=0.0)).eval()
    with torch.no_grad():
        video_emb, audio_emb = content_only(video, foa)
        steps = content_only.embed_video(video)
    assert torch.allclose(video_emb.norm(dim=-1), torch.ones(2, 44), atol=1e-5)
    assert torch.allclose(audio_emb.norm(dim=-1), torch.ones(2, 44), atol=1e-5)
    assert steps.shape == (2, 4, 512)
    assert torch.equal(video_emb, replicate_to_audio_rate(steps, 44, tubelet=2))
    # Bundles from before frame_timestamps keep the interval convention.
    old = dataclasses.replace(content_only.config, frame_timestamps=False)
    content_only.config = old
    with torch.no_grad():
        assert torch.equal(content_only.embed_video(video, 44), replicate_to_audio_rate(steps, 44))


def test_video_windows_resizing_and_odd_lengths(tiny: SVAC) -> None:
    encoder = tiny.video_encoder
    video = torch.rand(1, 19, 3, 64, 128)
    with torch.no_grad():
        long = encoder.tokens(video)  # 3 windows of 8 frames, the last padded
        first = encoder.tokens(video[:, :8])
        odd = encoder(video[:, :5])
        big = encoder(torch.rand(1, 8, 3, 128, 256))  # resized to 64x128
    assert long.shape == (1, 10, 32, 128)  # ceil(19 / 2)
    assert torch.allclose(long[:, :4], first, atol=1e-5)  # windows are independent
    assert odd.shape == (1, 3, 128)
    assert big.shape == (1, 4, 128)
    with pytest.raises(InputError, match=r"\(B, F, 3, H, W\)"):
        encoder(torch.rand(8, 3, 64, 128))


def test_audio_length_not_a_whole_number_of_frames(tiny: SVAC) -> None:
    with torch.no_grad():
        emb = tiny.embed_audio(torch.randn(1, 4, 1024 * 10 + 300))
    assert emb.shape == (1, 11, 512)
    assert tiny.audio_frames(1024 * 10 + 300) == 11
    with pytest.raises(InputError, match=r"\(B, 4, T\)"):
        tiny.embed_audio(torch.randn(1, 2, 4096))


def test_replicate_to_audio_rate_is_nearest_neighbour() -> None:
    feats = torch.arange(4.0)[None, :, None]  # (1, 4, 1): step j holds value j
    out = replicate_to_audio_rate(feats, 10)
    # Audio frame centres (i + 0.5) / 10 against step centres (j + 0.5) / 4; frames 2 and 7
    # (centres 0.25, 0.75) are equally near two steps and take the later one.
    assert out[0, :, 0].tolist() == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    for tv, ta in [(4, 44), (5, 43), (20, 215), (3, 7)]:
        x = torch.randn(2, tv, 6)
        got = replicate_to_audio_rate(x, ta)
        audio_centres = (np.arange(ta) + 0.5) / ta
        video_centres = (np.arange(tv) + 0.5) / tv
        distance = np.abs(audio_centres[:, None] - video_centres[None, :])
        # argmin of the reversed steps: ties go to the later step (20 -> 215 has some).
        nearest = tv - 1 - np.round(distance[:, ::-1], 12).argmin(axis=1)
        assert torch.equal(got, x[:, torch.from_numpy(nearest)])
    same = torch.randn(1, 9, 3)
    assert torch.equal(replicate_to_audio_rate(same, 9), same)


def test_replicate_to_audio_rate_with_frames_as_instants() -> None:
    # 1 s window: 4 frames at 0, 0.25, 0.5, 0.75 s; 8 audio frames centred at 1/16 + i/8 s.
    frames = torch.arange(4.0)[None, :, None]
    nearest_frame = replicate_to_audio_rate(frames, 8, tubelet=1)[0, :, 0]
    assert nearest_frame.tolist() == [0, 1, 1, 2, 2, 3, 3, 3]
    # Tubelets of 2 frames are centred at 0.125 and 0.625 s.
    steps = torch.arange(2.0)[None, :, None]
    nearest_step = replicate_to_audio_rate(steps, 8, tubelet=2)[0, :, 0]
    assert nearest_step.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    for fps, tub, tv, ta in [(4, 2, 8, 86), (4, 1, 16, 86), (8, 4, 5, 37), (3, 3, 7, 100)]:
        x = torch.randn(1, tv, 2)
        got = replicate_to_audio_rate(x, ta, tubelet=tub)
        seconds = tv * tub / fps
        audio_times = (np.arange(ta) + 0.5) / ta * seconds
        step_times = (np.arange(tv) * tub + (tub - 1) / 2) / fps
        distance = np.abs(audio_times[:, None] - step_times[None, :])
        nearest = tv - 1 - np.round(distance[:, ::-1], 12).argmin(axis=1)
        assert torch.equal(got, x[:, torch.from_numpy(nearest)])
    with pytest.raises(InputError, match="tubelet must be >= 1"):
        replicate_to_audio_rate(frames, 8, tubelet=0)


def test_frozen_video_backbone() -> None:
    model = SVAC(dataclasses.replace(SVAC_PRESETS["tiny"], freeze_video=True)).train()
    backbone = model.video_encoder.backbone
    assert not any(p.requires_grad for p in backbone.parameters())
    assert not backbone.training
    assert model.video_head.net[1].weight.requires_grad
    assert count_parameters(model, trainable_only=True) == (
        count_parameters(model) - count_parameters(backbone)
    )
    video_emb, audio_emb = model(torch.rand(2, 4, 3, 64, 128), torch.randn(2, 4, 8192))
    (video_emb * audio_emb).sum().backward()
    assert all(p.grad is None for p in backbone.parameters())
    assert model.video_head.net[1].weight.grad is not None


# ------------------------------------------------------------------------------ spatial code


def expected_code(azimuth: float, elevation: float) -> torch.Tensor:
    """The spatial code of one direction with the initial (unit) order gains."""
    d = torch.from_numpy(direction_to_vector(azimuth, elevation)).float()
    return torch.nn.functional.normalize(real_spherical_harmonics(d, 3)[1:], dim=0)


def test_the_audio_code_of_a_plane_wave_is_its_direction(tiny: SVAC) -> None:
    with torch.no_grad():
        for az, el in [(0.0, 0.0), (2.0, 0.5), (-1.2, -0.6)]:
            code = tiny.spatial.audio(tiny.audio_encoder.features(plane_wave(az, el).float()))
            assert code.shape == (1, 22, 15)  # 1 s = 22 audio frames; orders 1..3
            cosine = code[0] @ expected_code(az, el)
            assert float(cosine.min()) > 0.999, (az, el)


def test_rotating_the_foa_rotates_the_audio_code(tiny: SVAC) -> None:
    foa = plane_wave(0.4, 0.2).float()
    mixing = torch.from_numpy(foa_rotation_matrix(ypr_to_matrix(90.0, 0, 0))).float()
    with torch.no_grad():
        code = tiny.spatial.audio(tiny.audio_encoder.features((mixing @ foa[0])[None]))
        before = tiny.spatial.audio(tiny.audio_encoder.features(foa))
    assert float((code[0] @ expected_code(0.4 + math.pi / 2, 0.2)).min()) > 0.999
    # Orders 1-3 of directions 90 deg apart on the horizon are far from alike.
    assert float((code[0] * before[0]).sum(-1).max()) < 0.2


def test_the_video_code_follows_the_saliency(tiny: SVAC) -> None:
    cells = torch.from_numpy(grid_directions(4, 8))
    assert torch.allclose(cells.norm(dim=-1), torch.ones(32))
    # Raster order from azimuth +180 (column 0) through the front (centre) to the right.
    front_top_row = cells[3]  # row 0, column 3: azimuth 22.5 deg, elevation 67.5 deg
    assert torch.allclose(
        front_top_row,
        torch.from_numpy(direction_to_vector(math.radians(22.5), math.radians(67.5))).float(),
        atol=1e-6,
    )
    saliency = torch.zeros(1, 1, 32)
    saliency[0, 0, 19] = 1.0  # row 2 (elevation -22.5), column 3 (azimuth 22.5)
    code = tiny.spatial.video(saliency)
    assert torch.allclose(
        code[0, 0], expected_code(math.radians(22.5), math.radians(-22.5)), atol=1e-5
    )


def test_joint_similarity_splits_into_content_space_and_activity(tiny: SVAC) -> None:
    video = torch.randint(0, 256, (2, 8, 3, 64, 128), dtype=torch.uint8)
    foa = torch.randn(2, 4, 8192) * torch.linspace(0.01, 1.0, 8192)
    with torch.no_grad():
        video_emb, audio_emb = tiny(video, foa)
    w, u = tiny.config.spatial_weight, tiny.config.activity_weight
    parts = tiny.config.parts()
    assert [(p.start, p.stop) for p in parts.values()] == [(0, 481), (481, 496), (496, 512)]
    content, space, activity = parts.values()
    for emb in (video_emb, audio_emb):
        assert torch.allclose(
            emb[..., content].norm(dim=-1), torch.full((2, 8), math.sqrt(1 - w - u))
        )
        assert torch.allclose(emb[..., space].norm(dim=-1), torch.full((2, 8), math.sqrt(w)))
        # The activity map: zero mean over time, mean squared norm u.
        assert torch.allclose(emb[..., activity].mean(1), torch.zeros(2, 16), atol=1e-5)
        assert torch.allclose(emb[..., activity].square().sum(-1).mean(-1), torch.full((2,), u))

    def part(sl: slice) -> torch.Tensor:
        return (video_emb[..., sl] * audio_emb[..., sl]).sum(-1).mean(-1)

    similarity = (video_emb * audio_emb).sum(-1).mean(-1)
    correlation = part(activity) / u
    assert bool((correlation.abs() <= 1 + 1e-5).all())
    expected = part(content) + part(space) + u * correlation
    assert torch.allclose(similarity, expected, atol=1e-6)
    assert tiny.video_saliency(video).sum(-1).allclose(torch.ones(2, 4))


def test_without_spatial_weight_the_layout_is_content_only() -> None:
    # Bundles from before the spatial code have no spatial_weight in their config.
    plain = SVAC(SVACConfig())
    assert plain.spatial is None and plain.config.content_dim == 512
    assert not any(k.startswith("spatial.") for k in plain.state_dict())
    with torch.no_grad():
        emb = plain.embed_audio(torch.randn(1, 4, 4096))
    assert emb.shape == (1, 4, 512)
    with pytest.raises(InputError, match="no spatial code"):
        plain.video_saliency(torch.rand(1, 2, 3, 64, 128))
    with pytest.raises(InputError, match=r"spatial_weight must be in \[0, 1\)"):
        SVACConfig(spatial_weight=1.0)


# ------------------------------------------------------------------------------ activity map


def test_standardise_over_time_gives_unit_mean_square_and_keeps_silence_silent() -> None:
    maps = torch.randn(3, 20, 16) + 5.0
    out = standardise_over_time(maps)
    assert torch.allclose(out.mean(1), torch.zeros(3, 16), atol=1e-5)
    assert torch.allclose(out.square().sum(-1).mean(-1), torch.ones(3), atol=1e-5)
    assert torch.equal(standardise_over_time(torch.ones(1, 5, 16)), torch.zeros(1, 5, 16))


def bursts(azimuth: float, elevation: float, on: list[tuple[float, float]], seconds: float = 2.0):
    """Noise from one direction, sounding only in the ``on`` (start, end) seconds."""
    foa = plane_wave(azimuth, elevation, seconds).float()
    t = torch.arange(foa.shape[-1]) / SR
    gate = torch.zeros_like(t) + 1e-3
    for start, end in on:
        gate[(t >= start) & (t < end)] = 1.0
    return foa * gate


def test_the_audio_activity_map_points_at_a_burst_when_it_sounds(tiny: SVAC) -> None:
    az, el = 1.0, 0.3
    foa = bursts(az, el, [(0.5, 1.0)])
    with torch.no_grad():
        maps = tiny.activity.audio(tiny.audio_encoder.features(foa))[0]  # (Ta, 16)
    assert maps.shape == (44, 16)
    frame_s = 1024 / SR
    loud = [i for i in range(44) if 0.5 + frame_s < i * frame_s < 1.0 - 2 * frame_s]
    quiet = [i for i in range(44) if i * frame_s > 1.2]
    assert float(maps[quiet].abs().max()) < 1e-3 * float(maps[loud, 0].min())
    d = torch.from_numpy(direction_to_vector(az, el)).float()
    expected = torch.nn.functional.normalize(real_spherical_harmonics(d, 3), dim=0)
    cosine = torch.nn.functional.normalize(maps[loud], dim=-1) @ expected
    assert float(cosine.min()) > 0.99


def test_the_audio_activity_map_rotates_and_shifts_with_the_foa(tiny: SVAC) -> None:
    foa = bursts(0.4, 0.0, [(0.2, 0.6), (1.1, 1.3)])
    mixing = torch.from_numpy(foa_rotation_matrix(ypr_to_matrix(90.0, 0, 0))).float()
    hop = 1024
    with torch.no_grad():
        maps = tiny.activity.audio(tiny.audio_encoder.features(foa))
        turned = tiny.activity.audio(tiny.audio_encoder.features((mixing @ foa[0])[None]))
        shifted = tiny.activity.audio(tiny.audio_encoder.features(torch.roll(foa, 5 * hop, -1)))
    orders = torch.tensor([0] + [1] * 3 + [2] * 5 + [3] * 7)
    for order in range(4):
        # A rotation mixes harmonics of one order among themselves only.
        energy = maps[..., orders == order].norm(dim=-1)
        assert torch.allclose(
            turned[..., orders == order].norm(dim=-1), energy, rtol=1e-3, atol=1e-3
        )
    assert float((turned[0, :, 1:] * maps[0, :, 1:]).sum(-1).max()) < 0.3 * float(
        maps[0].square().sum(-1).max()
    )
    assert torch.allclose(
        shifted[0, 6:-2], maps[0, 1:-7], rtol=1e-3, atol=1e-3 * float(maps.abs().max())
    )


def test_a_still_video_has_no_activity(tiny: SVAC) -> None:
    still = torch.randint(0, 256, (1, 1, 3, 64, 128), dtype=torch.uint8).expand(1, 8, 3, 64, 128)
    moving = torch.randint(0, 256, (1, 8, 3, 64, 128), dtype=torch.uint8)
    activity = tiny.config.parts()["activity"]
    with torch.no_grad():
        assert float(tiny.embed_video(still)[..., activity].abs().max()) < 1e-5
        maps = tiny.activity.video(tiny.video_encoder.pixels(moving))
    assert maps.shape == (1, 8, 16)
    assert float(maps.std(dim=1).min()) > 0


def test_an_activity_map_reading_tokens_starts_as_the_one_without(tiny: SVAC) -> None:
    """activity_tokens adds a layer that starts at zero: the same weights give the same
    maps until it trains, and then the tokens (what each object is) move the pulses."""
    reading = SVAC(dataclasses.replace(tiny.config, activity_tokens=True)).eval()
    missing, unexpected = reading.load_state_dict(tiny.state_dict(), strict=False)
    assert missing == ["activity.token_pulse.weight"] and not unexpected
    assert all(k.startswith(SVAC.ZERO_START_WEIGHTS) for k in missing)
    video = torch.randint(0, 256, (1, 8, 3, 64, 128), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(reading.embed_video(video), tiny.embed_video(video))
        before = reading.activity_video_map(video)
        torch.nn.init.normal_(reading.activity.token_pulse.weight, std=0.1)
        after = reading.activity_video_map(video)
    assert before.shape == (1, 8, 16) and float((after - before).abs().max()) > 1e-3
    with pytest.raises(InputError, match="reads the VideoMAE tokens"):
        reading.activity.video_map(reading.video_encoder.pixels(video))


def test_a_refined_saliency_moves_the_code_and_never_the_generators_saliency(
    tiny: SVAC,
) -> None:
    """saliency_refine adds a layer of the spatial code's own that starts at zero: the same
    weights embed the same until it trains; then the code's saliency and the embedding move
    while the saliency the generator is conditioned on (video_saliency) stays bitwise."""
    refined = SVAC(dataclasses.replace(tiny.config, saliency_refine=True)).eval()
    missing, unexpected = refined.load_state_dict(tiny.state_dict(), strict=False)
    assert missing and all(k.startswith("spatial.refine.") for k in missing) and not unexpected
    assert all(k.startswith(SVAC.ZERO_START_WEIGHTS) for k in missing)
    video = torch.randint(0, 256, (1, 8, 3, 64, 128), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(refined.embed_video(video), tiny.embed_video(video))
        assert torch.equal(refined.code_saliency(video), tiny.video_saliency(video))
        torch.nn.init.normal_(refined.spatial.refine[-1].weight, std=0.5)
        code = refined.code_saliency(video)
        plain = refined.video_saliency(video)
        moved = refined.embed_video(video)
    assert torch.equal(plain, tiny.video_saliency(video))
    assert code.shape == (1, 4, 32) and torch.allclose(code.sum(-1), torch.ones(1, 4))
    assert float((code - plain).abs().max()) > 1e-3
    spatial = tiny.config.parts()["spatial"]
    with torch.no_grad():
        expected = math.sqrt(tiny.config.spatial_weight) * refined.spatial.video(code)
    torch.testing.assert_close(moved[0, ::2, spatial], expected[0, :4])
    with pytest.raises(InputError, match="no spatial code"):
        SVAC(SVACConfig()).code_saliency(video)


def _content_grads(model: SVAC, video: torch.Tensor) -> dict[str, float]:
    """The largest gradient on each saliency MLP of the content part of the video embedding."""
    model.zero_grad()
    part = model.config.parts()["content"]
    model.embed_video(video)[..., part].square().sum().backward()
    mlps = {"code": model.spatial.saliency, "content": model.content_saliency}
    return {
        name: max(float(p.grad.abs().max()) for p in mlp.parameters() if p.grad is not None)
        if mlp is not None and any(p.grad is not None for p in mlp.parameters())
        else 0.0
        for name, mlp in mlps.items()
    }


def test_content_pooling_decides_which_saliency_the_content_moves(tiny: SVAC) -> None:
    """ "shared" and "detached" embed the same with the same weights, but only "shared"
    lets the content's loss reach the code's saliency MLP; "own" pools the content with an
    MLP of its own (the code part is unchanged, bitwise) and moves only that one."""
    video = torch.randint(0, 256, (1, 8, 3, 64, 128), dtype=torch.uint8)
    models = {}
    for pooling in ("shared", "detached", "own"):
        model = SVAC(dataclasses.replace(tiny.config, content_pooling=pooling)).eval()
        missing, unexpected = model.load_state_dict(tiny.state_dict(), strict=False)
        assert not unexpected
        assert all(k.startswith("content_saliency.") for k in missing)
        assert bool(missing) == (pooling == "own")
        models[pooling] = model
    with torch.no_grad():
        shared, detached, own = (models[p].embed_video(video) for p in models)
    assert torch.equal(shared, detached)
    parts = tiny.config.parts()
    for name in ("spatial", "activity"):
        assert torch.equal(own[..., parts[name]], shared[..., parts[name]])
    assert float((own[..., parts["content"]] - shared[..., parts["content"]]).abs().max()) > 1e-4
    assert _content_grads(models["shared"], video)["code"] > 0
    assert _content_grads(models["detached"], video)["code"] == 0
    grads = _content_grads(models["own"], video)
    assert grads["code"] == 0 and grads["content"] > 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"content_pooling": "max"}, "content_pooling must be one of"),
        ({"content_pooling": "own", "spatial_weight": 0.0}, "needs a spatial code"),
    ],
)
def test_content_pooling_settings_that_cannot_work_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        dataclasses.replace(SVAC_PRESETS["tiny"], **fields)


def test_pool_cell_map_sums_blocks_averages_tubelets_and_normalises() -> None:
    """A 2 x 4 grid onto 1 x 2 (blocks of 2 x 2 cells), tubelet 2, three frames:
    the last tubelet repeats its frame; an all-zero step is uniform."""
    power = torch.zeros(1, 3, 8)
    power[0, 0, 0] = 1.0  # row 0, col 0: the left block
    power[0, 1, 7] = 3.0  # row 1, col 3: the right block
    power[0, 2, 2] = 2.0  # row 0, col 2: the right block
    out = pool_cell_map(power, (2, 4), (1, 2), 2)
    # Step 0: frames 0 and 1 -> block sums (1, 0) and (0, 3), averaged (0.5, 1.5) -> 1/4, 3/4.
    # Step 1: frame 2 twice -> (0, 2) -> 0, 1.
    torch.testing.assert_close(out, torch.tensor([[[0.25, 0.75], [0.0, 1.0]]]))
    silent = pool_cell_map(torch.zeros(2, 4, 8), (2, 4), (1, 2), 2)
    torch.testing.assert_close(silent, torch.full((2, 2, 2), 0.5))
    with pytest.raises(InputError, match="cannot pool"):
        pool_cell_map(torch.zeros(1, 2, 8), (2, 4), (1, 3), 1)
    with pytest.raises(InputError, match="cannot pool"):
        pool_cell_map(torch.zeros(1, 2, 9), (2, 4), (1, 2), 1)


def cue_carrier(tiny: SVAC, share: float) -> SVAC:
    """The tiny SVAC carrying a direction cue (its own random weights) at ``share``."""
    torch.manual_seed(1)
    config = dataclasses.replace(
        tiny.config, cue_share=share, cue=VideoDirectionConfig(dim=8, window=4, taps=3).to_dict()
    )
    model = SVAC(config).eval()
    missing, unexpected = model.load_state_dict(tiny.state_dict(), strict=False)
    assert missing and all(k.startswith("cue.") for k in missing) and not unexpected
    return model


def test_a_carried_cue_mixes_into_the_codes_saliency_only(tiny: SVAC) -> None:
    """The spatial code reads (1 - share) x its own saliency + share x the cue's map pooled
    onto the token grid; the content and the generator's saliency are those without the
    cue, and the cue never trains."""
    carrier = cue_carrier(tiny, 0.5)
    assert carrier.cue.config.grid == (8, 16)
    assert not any(p.requires_grad for p in carrier.cue.parameters())
    video = torch.randint(0, 256, (1, 8, 3, 64, 128), dtype=torch.uint8)
    with torch.no_grad():
        cue_map = carrier.cue_saliency(video)
        expected_map = pool_cell_map(carrier.cue.cell_powers(video), (8, 16), (4, 8), 2)
        code = carrier.code_saliency(video)
        plain = tiny.video_saliency(video)
        mixed = carrier.embed_video(video)
        before = tiny.embed_video(video)
    torch.testing.assert_close(cue_map, expected_map)
    assert cue_map.shape == (1, 4, 32) and float((cue_map - plain).abs().max()) > 1e-3
    torch.testing.assert_close(code, 0.5 * plain + 0.5 * cue_map)
    assert torch.equal(carrier.video_saliency(video), plain)
    parts = tiny.config.parts()
    torch.testing.assert_close(mixed[..., parts["content"]], before[..., parts["content"]])
    torch.testing.assert_close(mixed[..., parts["activity"]], before[..., parts["activity"]])
    with torch.no_grad():
        expected = math.sqrt(tiny.config.spatial_weight) * carrier.spatial.video(code)
    torch.testing.assert_close(mixed[0, ::2, parts["spatial"]], expected[0])
    # The whole code from the cue: the embedding's code is the cue's map's.
    only_cue = cue_carrier(tiny, 1.0)
    with torch.no_grad():
        torch.testing.assert_close(only_cue.code_saliency(video), cue_map)
    with pytest.raises(InputError, match="carries no direction cue"):
        tiny.cue_saliency(video)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cue_share": 1.5}, "cue_share must be in"),
        ({"cue_share": -0.1}, "cue_share must be in"),
        ({"cue_share": 0.5, "spatial_weight": 0.0}, "cue_share needs a spatial code"),
        ({"cue": {"dim": 8}}, "goes with cue_share > 0"),
        ({"cue_share": 0.5, "cue": {"frame_height": 8, "frame_width": 24}}, "do not tile"),
        ({"cue_share": 0.5, "cue": {"depth": 3}}, "unknown VideoDirectionConfig field"),
    ],
)
def test_cue_settings_that_cannot_work_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        dataclasses.replace(SVAC_PRESETS["tiny"], **fields)


def test_activity_weight_is_checked() -> None:
    with pytest.raises(InputError, match="activity_weight must be >= 0"):
        SVACConfig(spatial_weight=0.5, activity_weight=0.5)
    with pytest.raises(InputError, match="activity_weight must be >= 0"):
        SVACConfig(activity_weight=-0.1)
    # The activity map works without the spatial code too.
    model = SVAC(SVACConfig(activity_weight=0.3))
    assert model.spatial is None and model.config.parts()["activity"] == slice(496, 512)
    with torch.no_grad():
        video_emb, audio_emb = model(torch.rand(1, 4, 3, 64, 128), torch.randn(1, 4, 4096))
    assert video_emb.shape == audio_emb.shape == (1, 4, 512)


def test_frozen_video_tokens_do_not_move(tiny: SVAC) -> None:
    model = SVAC(SVAC_PRESETS["tiny"]).train()
    model.freeze_video_tokens()
    video_emb, audio_emb = model(torch.rand(2, 4, 3, 64, 128), torch.randn(2, 4, 8192))
    (video_emb * audio_emb).sum().backward()
    assert all(p.grad is None for p in model.video_encoder.parameters())
    assert model.spatial.saliency[1].weight.grad is not None
    assert model.spatial.band_bias.grad is not None
    assert model.activity.pulse[0].weight.grad is not None
    assert model.activity.band_gain.grad is not None


def test_paper_preset_parameter_count_on_meta_device() -> None:
    paper = SVAC_PRESETS["paper"]
    with torch.device("meta"):
        model = SVAC(paper)

    def vit_layer(d: int, mlp: int, k_bias: bool) -> int:  # attention + MLP + 2 LayerNorms
        return 4 * d * d + (4 if k_bias else 3) * d + 2 * d * mlp + mlp + d + 4 * d

    d = 768
    video = (3 * 2 * 16 * 16 * d + d) + 12 * vit_layer(d, 3072, k_bias=False) + 2 * d
    audio = (7 * 16 * 4 * d + d) + 8 * d + 12 * vit_layer(d, 3072, k_bias=True) + 2 * d

    def head(n: int, out: int) -> int:
        return 2 * n + n * 1024 + 1024 + 1024 * out + out

    # Spatial code: a patch embedding, the saliency MLP over [token, patch embedding and
    # both departures], 128 band biases, level scale and 3 order gains; the content heads
    # give 15 of the 512 dimensions to it.
    pixel_embed = 3 * 2 * 16 * 16 * d + d
    spatial = pixel_embed + 2 * 4 * d + (4 * d * d + d) + (d + 1) + 128 + 1 + 3
    # Activity map: a per-frame 32-d patch embedding, the pulse MLP, 128 band gains and 4
    # order gains; 16 more dimensions (orders 0-3) leave 481 to the content heads.
    a = 32
    activity = (3 * 16 * 16 * a + a) + (a * a + a) + (a + 1) + 128 + 4
    assert count_parameters(model.video_encoder) == video == 86_227_200
    assert count_parameters(model.audio_encoder) == audio == 85_406_976
    assert count_parameters(model.spatial) == spatial
    assert count_parameters(model.activity) == activity
    # The video content head takes [pooled token, pooled patch-embedding departure].
    heads = head(2 * 768, 481) + head(768, 481) + head(384, 512)
    total = video + audio + heads + spatial + activity
    assert count_parameters(model) == total == 179_479_340


def test_videomae_save_and_load_round_trip(tmp_path) -> None:
    torch.manual_seed(1)
    hf_config = VideoMAEConfig(
        image_size=[32, 64],
        patch_size=16,
        num_frames=4,
        tubelet_size=2,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        use_mean_pooling=True,
    )
    reference = VideoMAEModel(hf_config).eval()
    reference.save_pretrained(tmp_path)

    encoder = VideoEncoder.from_pretrained(tmp_path)  # frozen by default
    assert encoder.frozen and not any(p.requires_grad for p in encoder.backbone.parameters())
    video = torch.rand(2, 4, 3, 32, 64)
    pixels = (video - torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 1, 3, 1, 1)
    with torch.no_grad():
        expected = reference(pixel_values=pixels).last_hidden_state.reshape(2, 2, 2 * 4, 64)
        got = encoder.tokens(video)
    assert torch.allclose(got, encoder.norm(expected), atol=1e-5)

    # Into a whole SVAC whose config is derived from the checkpoint.
    config = svac_config_for_backbone(tmp_path, SVAC_PRESETS["tiny"])
    assert (config.video_dim, config.video_layers, config.freeze_video) == (64, 2, True)
    model = SVAC(config)
    model.load_video_backbone(tmp_path)
    for name, value in reference.state_dict().items():
        assert torch.equal(model.video_encoder.backbone.state_dict()[name], value), name
    assert not any(p.requires_grad for p in model.video_encoder.backbone.parameters())
    assert videomae_config(config).hidden_size == 64

    with pytest.raises(InputError, match="does not fit"):
        SVAC(SVAC_PRESETS["tiny"]).load_video_backbone(tmp_path)
    with pytest.raises(InputError, match=r"config\.json missing"):
        VideoEncoder.from_pretrained(tmp_path / "nowhere")
