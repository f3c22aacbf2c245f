"""SVAC contrastive loss and its negatives (swansphere_training.losses.svac)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from swansphere.errors import InputError
from swansphere.foa.doa import clip_direction
from swansphere.foa.encode import direction_to_vector, encode_mono
from swansphere.foa.panorama import direction_to_equirect, equirect_to_direction, roll_equirect
from swansphere.foa.rotation import rotate_foa, ypr_to_matrix
from swansphere.models.svac import SVAC, SVAC_PRESETS
from swansphere_training.losses.svac import (
    NegativeConfig,
    SVACBatchNegatives,
    aligned_similarity,
    build_negatives,
    part_shift_loss,
    roll_negatives,
    rotate_foa_batch,
    rotation_angle_deg,
    rotation_negatives,
    similarity_matrix,
    svac_loss,
    text_audio_loss,
    time_shift_negatives,
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


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def source_foa(azimuths_deg, elevations_deg, seconds: float = 0.5, seed: int = 0):
    """(B, 4, n) float64: white noise from one direction per clip."""
    rng = np.random.default_rng(seed)
    clips = [
        encode_mono(rng.standard_normal(int(seconds * SR)), math.radians(a), math.radians(e))
        for a, e in zip(azimuths_deg, elevations_deg, strict=True)
    ]
    return torch.from_numpy(np.stack(clips))


def great_circle_deg(a: tuple[float, float], b: tuple[float, float]) -> float:
    va, vb = direction_to_vector(*a), direction_to_vector(*b)
    return math.degrees(math.acos(float(np.clip(va @ vb, -1.0, 1.0))))


# ------------------------------------------------------------------------------ negatives


def test_time_shift_negatives_are_circular_shifts() -> None:
    foa = torch.randn(3, 4, 1000)
    out, shifts = time_shift_negatives(foa, 4, np.random.default_rng(0), min_fraction=0.2)
    assert out.shape == (3, 4, 4, 1000) and shifts.shape == (3, 4)
    assert shifts.min() >= 200 and shifts.max() <= 800
    for b in range(3):
        for j in range(4):
            assert torch.equal(out[b, j], torch.roll(foa[b], int(shifts[b, j]), dims=-1))
    with pytest.raises(InputError, match="cannot shift"):
        time_shift_negatives(foa[:, :, :1], 1, np.random.default_rng(0))
    with pytest.raises(InputError, match="positive integer"):
        time_shift_negatives(foa, 0, np.random.default_rng(0))


def test_rotate_foa_batch_matches_numpy_rotation_and_identity() -> None:
    foa = torch.randn(2, 4, 300, dtype=torch.float64)
    matrices = np.stack(
        [
            np.stack([np.eye(3), ypr_to_matrix(30, 20, -10)]),
            np.stack([ypr_to_matrix(-90, 0, 0), np.eye(3)]),
        ]
    )
    out = rotate_foa_batch(foa, matrices)
    assert torch.equal(out[0, 0], foa[0]) and torch.equal(out[1, 1], foa[1])  # identity
    expected = rotate_foa(foa[0].numpy(), ypr_to_matrix(30, 20, -10))
    assert np.allclose(out[0, 1].numpy(), expected, atol=1e-12)
    # Scene yaw +(-90): a front source moves to the right (azimuth -90).
    front = source_foa([0], [0])
    turned = rotate_foa_batch(front, ypr_to_matrix(-90, 0, 0)[None, None])[0, 0].numpy()
    assert great_circle_deg(clip_direction(turned), (-math.pi / 2, 0.0)) < 1.0


def test_rotation_negatives_really_move_the_source() -> None:
    foa = source_foa([0, 120, -60, 10], [0, 30, -20, 80])
    out, matrices = rotation_negatives(foa, 3, np.random.default_rng(1), min_angle_deg=45.0)
    assert out.shape == (4, 3, 4, foa.shape[-1]) and matrices.shape == (4, 3, 3, 3)
    assert np.allclose(matrices @ np.swapaxes(matrices, -1, -2), np.eye(3), atol=1e-12)
    assert rotation_angle_deg(matrices).min() >= 45.0
    for b in range(4):
        original = clip_direction(foa[b].numpy())
        for j in range(3):
            rotated = clip_direction(out[b, j].numpy())
            # The source moved where the rotation says, and by at least 45 degrees.
            expected = matrices[b, j] @ direction_to_vector(*original)
            assert (
                great_circle_deg(
                    rotated,
                    tuple(
                        float(x)
                        for x in (
                            math.atan2(expected[1], expected[0]),
                            math.asin(np.clip(expected[2], -1, 1)),
                        )
                    ),
                )
                < 0.5
            )
            assert great_circle_deg(rotated, original) >= 45.0 - 1e-6
            assert torch.allclose(out[b, j, 0], foa[b, 0])  # W (pressure) unchanged


def test_rotation_and_roll_negatives_keep_within_their_bounds() -> None:
    foa = source_foa([0, 120, -60, 10], [0, 30, -20, 80])
    rng = np.random.default_rng(3)
    out, matrices = rotation_negatives(foa, 8, rng, min_angle_deg=45.0, max_angle_deg=90.0)
    angles = rotation_angle_deg(matrices)
    assert angles.min() >= 45.0 and angles.max() <= 90.0
    for b in range(4):  # the source still moves by at least the minimum
        for j in range(8):
            turned = clip_direction(out[b, j].numpy())
            assert great_circle_deg(turned, clip_direction(foa[b].numpy())) >= 45.0 - 1e-6
    # At the default bound the draws are those of every run before the bound existed.
    _, unbounded = rotation_negatives(foa, 3, np.random.default_rng(1), 45.0)
    _, default = rotation_negatives(foa, 3, np.random.default_rng(1), 45.0, 180.0)
    assert np.array_equal(unbounded, default)
    assert rotation_angle_deg(unbounded).max() > 90.0  # so the bound above did something

    video = torch.randint(0, 256, (3, 2, 3, 8, 32), dtype=torch.uint8)
    rolled, yaw = roll_negatives(video, 40, np.random.default_rng(4), 45.0, max_roll_deg=90.0)
    near = np.minimum(yaw, 360.0 - yaw)  # how far from no roll, either way
    assert near.min() >= 45.0 and near.max() <= 90.0
    assert (yaw < 180).any() and (yaw > 180).any()  # both ways
    for b in range(3):
        for j in range(40):
            columns = round(yaw[b, j] / 360 * 32)
            assert torch.equal(rolled[b, j], torch.roll(video[b], -columns, dims=-1))
    with pytest.raises(InputError, match="no whole-pixel roll"):  # 11.25 deg a pixel
        roll_negatives(video, 1, np.random.default_rng(4), 46.0, max_roll_deg=50.0)
    for bad, field in (
        ({"max_rotation_deg": 45.0}, "max_rotation_deg"),
        ({"max_rotation_deg": 181.0}, "max_rotation_deg"),
        ({"max_roll_deg": 30.0}, "max_roll_deg"),
    ):
        with pytest.raises(InputError, match=field):
            NegativeConfig(**bad)


def test_roll_negatives_equal_torch_roll_and_roll_equirect() -> None:
    video = torch.randint(0, 256, (2, 3, 3, 8, 32), dtype=torch.uint8)
    out, yaw = roll_negatives(video, 5, np.random.default_rng(2), min_roll_deg=45.0)
    assert out.shape == (2, 5, 3, 3, 8, 32) and out.dtype == torch.uint8
    assert yaw.min() >= 45.0 and yaw.max() <= 315.0
    for b in range(2):
        for j in range(5):
            columns = round(yaw[b, j] / 360 * 32)
            assert torch.equal(out[b, j], torch.roll(video[b], -columns, dims=-1))
            for f in range(3):
                frame = video[b, f].permute(1, 2, 0).numpy()  # (H, W, C)
                reference = roll_equirect(frame, float(yaw[b, j]))
                assert np.array_equal(out[b, j, f].permute(1, 2, 0).numpy(), reference)


def test_roll_moves_the_scene_like_a_yaw_rotation() -> None:
    # A marker at azimuth az on a panorama rolled by yaw d sits at azimuth az + d.
    width, height = 64, 32
    frame = torch.zeros(1, 1, 1, height, width)
    frame[..., 16, 10] = 1.0
    out, yaw = roll_negatives(frame, 3, np.random.default_rng(5))
    az0, _ = equirect_to_direction(10.5, 16.5, width, height)
    for j in range(3):
        column = int(torch.nonzero(out[0, j, 0, 0, 16])[0])
        az1, _ = equirect_to_direction(column + 0.5, 16.5, width, height)
        assert (math.degrees(az1 - az0) - yaw[0, j]) % 360 == pytest.approx(0.0, abs=1e-9)


# ------------------------------------------------------------------------------ loss


def test_aligned_similarity_is_mean_dot_product_over_time() -> None:
    # The mean cosine for unit frames; other frames are not renormalised (an activity map
    # makes SVAC frames unit only on average over the clip).
    a, b = torch.randn(5, 7), torch.randn(5, 7)
    expected = sum(float(a[t] @ b[t]) for t in range(5)) / 5
    assert float(aligned_similarity(a, b)) == pytest.approx(expected, rel=1e-6)
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    expected = sum(float(F.cosine_similarity(a[t], b[t], dim=0)) for t in range(5)) / 5
    assert float(aligned_similarity(a, b)) == pytest.approx(expected, rel=1e-6)
    v, w = unit(3, 5, 7, seed=1), unit(3, 5, 7, seed=2)
    sims = similarity_matrix(v, w)
    for i in range(3):
        for j in range(3):
            assert float(sims[i, j]) == pytest.approx(float(aligned_similarity(v[i], w[j])))


def test_loss_matches_a_hand_computed_reference() -> None:
    b, t, e, tau = 3, 4, 6, 0.07
    v, a = unit(b, t, e, seed=1), unit(b, t, e, seed=2)
    neg = SVACBatchNegatives(
        unit(b, 2, t, e, seed=3), unit(b, 1, t, e, seed=4), unit(b, 2, t, e, seed=5)
    )
    loss, metrics = svac_loss(v, a, neg, temperature=tau)

    def sim(x, y):
        return sum(float(x[k] @ y[k]) for k in range(t)) / t

    def ce(logits, target):
        return -logits[target] + math.log(sum(math.exp(x) for x in logits))

    v2a = a2v = 0.0
    for i in range(b):
        row = [sim(v[i], a[j]) for j in range(b)]
        row += [sim(v[i], x) for x in neg.shifted_audio[i]] + [sim(v[i], neg.rotated_audio[i, 0])]
        v2a += ce([x / tau for x in row], i) / b
        col = [sim(v[j], a[i]) for j in range(b)] + [sim(x, a[i]) for x in neg.rolled_video[i]]
        a2v += ce([x / tau for x in col], i) / b
    assert float(loss) == pytest.approx((v2a + a2v) / 2, rel=1e-9)
    assert metrics["loss_v2a"] == pytest.approx(v2a) and metrics["loss_a2v"] == pytest.approx(a2v)
    assert metrics["v2a_n_logits"] == 3 + 2 + 1 and metrics["a2v_n_logits"] == 3 + 2


def test_part_shift_loss_reads_only_its_part_against_the_shifts() -> None:
    b, t, k, tau = 3, 4, 2, 0.07
    part, share = slice(0, 5), 0.3
    v, a, shifted = unit(b, t, 8, seed=1), unit(b, t, 8, seed=2), unit(b, k, t, 8, seed=3)
    loss, top1 = part_shift_loss(v, a, shifted, part, share, temperature=tau)

    def sim(x, y):  # the part's own aligned similarity, as the loss reads it
        return sum(float(x[n, part] @ y[n, part]) for n in range(t)) / t / share

    expected, wins = 0.0, 0
    for i in range(b):
        row = [sim(v[i], a[i])] + [sim(v[i], shifted[i, j]) for j in range(k)]
        expected += (math.log(sum(math.exp(x / tau) for x in row)) - row[0] / tau) / b
        wins += row[0] > max(row[1:])
    assert float(loss) == pytest.approx(expected, rel=1e-9)
    assert top1 == pytest.approx(wins / b)
    # The other dimensions (another part) change nothing.
    other = a.clone()
    other[..., 5:] = unit(b, t, 3, seed=9)
    assert float(part_shift_loss(v, other, shifted, part, share)[0]) == pytest.approx(
        float(part_shift_loss(v, a, shifted, part, share)[0])
    )
    with pytest.raises(InputError, match="shifted_audio must be"):
        part_shift_loss(v, a, shifted[0], part, share)
    with pytest.raises(InputError, match="share of the similarity must be positive"):
        part_shift_loss(v, a, shifted, part, 0.0)


def test_aligned_embeddings_give_a_lower_loss_than_shuffled() -> None:
    v = unit(8, 10, 16, seed=7)
    a = F.normalize(v + 0.3 * unit(8, 10, 16, seed=8), dim=-1)  # matching pairs
    aligned, m_aligned = svac_loss(v, a)
    shuffled, _ = svac_loss(v, a[torch.roll(torch.arange(8), 1)])
    assert float(aligned) < 0.1 * float(shuffled)
    assert m_aligned["v2a_top1"] == 1.0 and m_aligned["a2v_top1"] == 1.0
    # Time alignment matters too: the same frames in another order are a worse match.
    reversed_time, _ = svac_loss(v, a.flip(1))
    assert float(aligned) < float(reversed_time)


def test_each_switch_removes_its_negatives() -> None:
    b, t, e = 4, 3, 8
    v, a = unit(b, t, e, seed=1), unit(b, t, e, seed=2)
    neg = SVACBatchNegatives(
        unit(b, 2, t, e, seed=3), unit(b, 3, t, e, seed=4), unit(b, 5, t, e, seed=5)
    )
    full = NegativeConfig()
    cases = {
        full: (b + 2 + 3, b + 5),
        dataclasses.replace(full, batch=False): (1 + 2 + 3, 1 + 5),
        dataclasses.replace(full, time_shift=False): (b + 3, b + 5),
        dataclasses.replace(full, rotation=False): (b + 2, b + 5),
        dataclasses.replace(full, roll=False): (b + 2 + 3, b),
        full.without_physical(): (b, b),
    }
    losses = set()
    for config, (n_v2a, n_a2v) in cases.items():
        loss, metrics = svac_loss(v, a, neg, config=config)
        assert (metrics["v2a_n_logits"], metrics["a2v_n_logits"]) == (n_v2a, n_a2v), config
        losses.add(round(float(loss), 9))
    assert len(losses) == len(cases)
    _, metrics = svac_loss(v, a, neg)
    assert {"v2a_top1_time_shift", "v2a_top1_rotation", "a2v_top1_roll", "v2a_top1_batch"} <= set(
        metrics
    )
    with pytest.raises(InputError, match="no negatives"):
        svac_loss(
            v,
            a,
            neg,
            config=NegativeConfig(batch=False, time_shift=False, rotation=False, roll=False),
        )


def test_loss_is_symmetric_in_video_and_audio() -> None:
    v, a = unit(6, 5, 8, seed=1), unit(6, 5, 8, seed=2)
    batch_only = NegativeConfig().without_physical()
    forward, _ = svac_loss(v, a, config=batch_only)
    swapped, _ = svac_loss(a, v, config=batch_only)
    assert float(forward) == pytest.approx(float(swapped), rel=1e-12)
    # With one extra negative kind on each side, the two directions trade places too.
    shifted, rolled = unit(6, 2, 5, 8, seed=3), unit(6, 2, 5, 8, seed=4)
    one = svac_loss(v, a, SVACBatchNegatives(shifted_audio=shifted, rolled_video=rolled))[0]
    other = svac_loss(a, v, SVACBatchNegatives(shifted_audio=rolled, rolled_video=shifted))[0]
    assert float(one) == pytest.approx(float(other), rel=1e-12)


def test_valid_mask_leaves_clips_out() -> None:
    v, a = unit(5, 3, 8, seed=1), unit(5, 3, 8, seed=2)
    neg = SVACBatchNegatives(rotated_audio=unit(5, 2, 3, 8, seed=3))
    keep = torch.tensor([True, False, True, True, False])
    masked, metrics = svac_loss(v, a, neg, valid=keep)
    subset = SVACBatchNegatives(rotated_audio=neg.rotated_audio[keep])
    expected, _ = svac_loss(v[keep], a[keep], subset)
    assert float(masked) == pytest.approx(float(expected))
    assert metrics["a2v_n_logits"] == 3


def test_text_audio_loss() -> None:
    audio = unit(6, 8, 16, seed=1)
    text = F.normalize(audio.mean(1) + 0.1 * unit(6, 16, seed=2), dim=-1)
    aligned, metrics = text_audio_loss(text, audio)
    shuffled, _ = text_audio_loss(text.flip(0), audio)
    assert float(aligned) < float(shuffled)
    assert metrics["top1_t2a"] == 1.0 and metrics["top1_a2t"] == 1.0
    pooled = F.normalize(audio.mean(1), dim=-1)
    logits = text @ pooled.T / 0.07
    target = torch.arange(6)
    reference = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    assert float(aligned) == pytest.approx(float(reference))
    keep = torch.tensor([True, True, False, True, True, False])
    masked, _ = text_audio_loss(text, audio, valid=keep)
    assert float(masked) == pytest.approx(float(text_audio_loss(text[keep], audio[keep])[0]))


# ------------------------------------------------------------------------------ with the model


def synthetic_batch(n: int = 4, seconds: float = 1.0, frames: int = 4):
    """n clips: a noise source at azimuth k * 360 / n with its own bursts, and a panorama
    with a bright square at that azimuth, lit while its burst plays."""
    rng = np.random.default_rng(0)
    samples = int(seconds * SR)
    foa, video = [], torch.zeros(n, frames, 3, 64, 128, dtype=torch.uint8)
    for k in range(n):
        azimuth = 2 * math.pi * k / n - math.pi + 0.3
        gates = rng.random(frames) < 0.5
        gates[k % frames] = True
        envelope = np.repeat(gates.astype(float), samples // frames + 1)[:samples]
        foa.append(encode_mono(rng.standard_normal(samples) * (0.1 + envelope), azimuth, 0.0))
        u, v = direction_to_equirect(azimuth, 0.0, 128, 64)
        for f in range(frames):
            level = 255 if gates[f] else 90
            cols = torch.arange(int(u) - 6, int(u) + 6) % 128
            video[k, f, k % 3, int(v) - 6 : int(v) + 6][:, cols] = level
    return torch.from_numpy(np.stack(foa)).float(), video


def test_build_negatives_with_the_model() -> None:
    torch.manual_seed(0)
    model = SVAC(SVAC_PRESETS["tiny"]).eval()
    foa, video = synthetic_batch(n=2, seconds=0.5, frames=2)
    config = NegativeConfig(n_time_shift=1, n_rotation=2, n_roll=3)
    with torch.no_grad():
        video_emb, audio_emb = model(video, foa)
        neg = build_negatives(
            model, foa, video, config, np.random.default_rng(0), audio_emb.shape[1]
        )
        loss, metrics = svac_loss(video_emb, audio_emb, neg, config=config)
    ta = model.audio_frames(foa.shape[-1])
    assert neg.shifted_audio.shape == (2, 1, ta, 512)
    assert neg.rotated_audio.shape == (2, 2, ta, 512)
    assert neg.rolled_video.shape == (2, 3, ta, 512)
    assert metrics["v2a_n_logits"] == 2 + 1 + 2 and metrics["a2v_n_logits"] == 2 + 3
    assert math.isfinite(float(loss))
    off = build_negatives(
        model, foa, video, config.without_physical(), np.random.default_rng(0), ta
    )
    assert off.shifted_audio is None and off.rotated_audio is None and off.rolled_video is None


def test_overfit_smoke_tiny_model_learns_four_clips() -> None:
    torch.manual_seed(0)
    model = SVAC(SVAC_PRESETS["tiny"]).train()
    foa, video = synthetic_batch()
    config = NegativeConfig(n_time_shift=1, n_rotation=1, n_roll=1)
    rng = np.random.default_rng(0)
    # At temperature 0.07 a from-scratch model collapses (every embedding equal, loss
    # ln(candidates), vanishing gradients) with lr 1e-3; 1e-4 with clipping learns steadily.
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(40):
        video_emb, audio_emb = model(video, foa)
        neg = build_negatives(model, foa, video, config, rng, audio_emb.shape[1])
        loss, _ = svac_loss(
            video_emb, audio_emb, neg, config=config, temperature=model.config.temperature
        )
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        losses.append(float(loss.detach()))
    first, last = np.mean(losses[:3]), np.mean(losses[-5:])
    # At most chance (6 candidates) at the start: the measured activity map already
    # favours the aligned audio when the video pulses with it.
    assert first < math.log(4 + 1 + 1) + 0.2
    assert last < 0.7 * first, losses
