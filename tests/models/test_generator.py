"""The generator network: preset sizes, KV-cached LM steps vs the full causal pass, the
LocDiT context path, the flow-matching pieces."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from swansphere.errors import InputError
from swansphere.models.generator import (
    GENERATOR_PRESETS,
    Conditioning,
    GeneratorConfig,
    KVCache,
    SpatialGenerator,
    cosine_schedule,
    count_parameters,
    flow_interpolate,
    guidance_rows,
    guided_velocity,
    level_lock_gain,
    patch_flux,
    scale_level,
    steer_intensity,
    timestep_embedding,
)
from swansphere.models.vae import LEVEL_FLOOR

PAPER_SIZES = {"S": 0.43e9, "M": 0.62e9, "L": 1.09e9}


@pytest.mark.parametrize("preset", sorted(PAPER_SIZES))
def test_paper_presets_match_the_paper_parameter_counts(preset):
    with torch.device("meta"):
        model = SpatialGenerator(GENERATOR_PRESETS[preset])
    n = count_parameters(model)
    assert abs(n - PAPER_SIZES[preset]) / PAPER_SIZES[preset] < 0.03, n


def small_config(**kw) -> GeneratorConfig:
    base = dict(
        latent_dim=8, video_dim=16, video_grid=(2, 4), text_dim=12, max_text_tokens=5,
        lm_dim=32, lm_layers=2, lm_heads=4, history_layers=1, dit_dim=32, dit_layers=2,
        dit_heads=4, lm_window=64,
    )  # fmt: skip
    base.update(kw)
    return GeneratorConfig(**base)


def conditioning(b: int, p: int, cfg: GeneratorConfig, gen: torch.Generator) -> Conditioning:
    return Conditioning(
        video=torch.randn(b, p, cfg.video_tokens, cfg.video_dim, generator=gen),
        video_present=torch.tensor([True, False][:b] + [True] * max(0, b - 2)),
        text=torch.randn(b, cfg.max_text_tokens, cfg.text_dim, generator=gen),
        text_mask=torch.ones(b, cfg.max_text_tokens, dtype=torch.bool),
        text_present=torch.tensor([True] * b),
    )


@pytest.mark.parametrize("window", [64, 3])
def test_cached_lm_steps_equal_the_full_causal_pass(window):
    torch.manual_seed(0)
    cfg = small_config(lm_window=window)
    model = SpatialGenerator(cfg).eval()
    gen = torch.Generator().manual_seed(1)
    b, p = 2, 7
    cond = conditioning(b, p, cfg, gen)
    history = torch.randn(b, p, cfg.patch_frames, cfg.latent_dim, generator=gen)
    with torch.no_grad():
        x = model.lm.inputs(history, cond.video, cond.video_present, 0)
        text, mask = model.lm.text_context(cond)
        full = model.lm(x, text, mask)
        cache = KVCache(cfg.lm_layers)
        kv = model.lm.text_kv(text)
        steps = [model.lm(x[:, t : t + 1], text, mask, cache, kv) for t in range(p)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == min(p, window)


def test_the_lm_is_causal():
    torch.manual_seed(0)
    cfg = small_config()
    model = SpatialGenerator(cfg).eval()
    gen = torch.Generator().manual_seed(2)
    cond = conditioning(1, 5, cfg, gen)
    history = torch.randn(1, 5, cfg.patch_frames, cfg.latent_dim, generator=gen)
    text, mask = model.lm.text_context(cond)
    with torch.no_grad():
        a = model.lm(model.lm.inputs(history, cond.video, cond.video_present, 0), text, mask)
        history[:, 3:] += 1.0  # change the future
        b = model.lm(model.lm.inputs(history, cond.video, cond.video_present, 0), text, mask)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_missing_caption_attends_only_to_the_null_token():
    torch.manual_seed(0)
    cfg = small_config()
    model = SpatialGenerator(cfg).eval()
    gen = torch.Generator().manual_seed(3)
    cond = conditioning(2, 1, cfg, gen)
    cond.text_present = torch.tensor([False, False])
    cond.text[1] = torch.randn(cfg.max_text_tokens, cfg.text_dim, generator=gen)  # ignored
    cond.video_present = torch.tensor([False, False])
    history = torch.zeros(2, 1, cfg.patch_frames, cfg.latent_dim)
    with torch.no_grad():
        h = model.lm(
            model.lm.inputs(history, None, cond.video_present, 0), *model.lm.text_context(cond)
        )
    torch.testing.assert_close(h[0], h[1])


def test_locdit_context_path_and_zero_init():
    torch.manual_seed(0)
    cfg = small_config()
    model = SpatialGenerator(cfg).eval()
    x = torch.randn(3, cfg.patch_frames, cfg.latent_dim)
    ctx = torch.randn(3, cfg.context_patches * cfg.patch_frames, cfg.latent_dim)
    valid = torch.ones(3, ctx.shape[1], dtype=torch.bool)
    tau, h = torch.rand(3), torch.randn(3, cfg.lm_dim)
    with torch.no_grad():
        # Zero-initialised output layer: a fresh LocDiT predicts zero velocity.
        assert model.dit(x, tau, h, ctx, valid).abs().max() == 0
        for p in model.dit.parameters():
            p.add_(0.05 * torch.randn_like(p))
        a = model.dit(x, tau, h, ctx, valid)
        b = model.dit.velocity(x, tau, h, *model.dit.context_kv(ctx, valid))
        torch.testing.assert_close(a, b)
        valid[:, :4] = False  # context before the clip: the values there do not matter
        c = model.dit(x, tau, h, ctx, valid)
        ctx[:, :4] = 99.0
        torch.testing.assert_close(c, model.dit(x, tau, h, ctx, valid))


def test_locdit_precomputed_modulation_is_the_adaln_formula():
    """The sampler computes every step's modulations in one call (modulation_of with a
    leading steps dim) and runs velocity_modulated per step: the same velocity as the
    plain adaLN-Zero formula, written out here."""
    torch.manual_seed(0)
    cfg = small_config()
    dit = SpatialGenerator(cfg).eval().dit
    with torch.no_grad():
        for p in dit.parameters():
            p.add_(0.05 * torch.randn_like(p))
    steps, rows = 5, 3
    x = torch.randn(rows, cfg.patch_frames, cfg.latent_dim)
    ctx = torch.randn(rows, cfg.context_patches * cfg.patch_frames, cfg.latent_dim)
    k, v = dit.context_kv(ctx, torch.ones(rows, ctx.shape[1], dtype=torch.bool))
    h, taus = torch.randn(rows, cfg.lm_dim), torch.rand(steps)

    def reference(tau: torch.Tensor) -> torch.Tensor:
        cond = F.silu(dit.cond(h) + dit.time(timestep_embedding(tau, cfg.dit_dim)))
        shared = dit.modulation(cond).unflatten(-1, (6, -1))
        tokens = dit.inp(x) + dit.pos[dit.context_frames :]
        for i, block in enumerate(dit.blocks):
            s1, b1, g1, s2, b2, g2 = (shared + block.offset)[:, :, None].unbind(1)
            attn = block.attn(block.norm1(tokens) * (1 + s1) + b1, prefix=(k[i], v[i]))
            tokens = tokens + g1 * attn
            tokens = tokens + g2 * block.mlp(block.norm2(tokens) * (1 + s2) + b2)
        shift, scale = dit.final_mod(cond)[:, None].chunk(2, dim=-1)
        return dit.final(dit.final_norm(tokens) * (1 + scale) + shift)

    with torch.no_grad():
        blocks, final = dit.modulation_of(h.expand(steps, -1, -1), taus[:, None].expand(-1, rows))
        assert blocks.shape == (steps, cfg.dit_layers, 6, rows, 1, cfg.dit_dim)
        assert final.shape == (steps, 2, rows, 1, cfg.dit_dim)
        for i in range(steps):
            tau = taus[i].expand(rows)
            expected = reference(tau)
            assert expected.abs().max() > 1e-3  # not the zero-init output
            torch.testing.assert_close(
                dit.velocity_modulated(x, blocks[i], final[i], k, v), expected
            )
            torch.testing.assert_close(dit.velocity(x, tau, h, k, v), expected)


def small_batch() -> tuple[SpatialGenerator, torch.Tensor, Conditioning]:
    """A small generator, latents of 2 clips x 3 patches and their conditioning."""
    torch.manual_seed(0)
    cfg = small_config()
    model = SpatialGenerator(cfg)
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(2, cfg.latent_dim, 3 * cfg.patch_frames, generator=gen)
    return model, z, conditioning(2, 3, cfg, gen)


def test_training_loss_backpropagates_to_both_networks():
    model, z, cond = small_batch()
    loss = model.training_loss(z, cond, torch.Generator().manual_seed(5))
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert model.dit.final.weight.grad.abs().sum() > 0
    with pytest.raises(InputError, match="multiple of the patch size"):
        model.training_loss(z[..., :-1], cond)


def test_direction_loss_and_training_without_a_past():
    model, z, cond = small_batch()
    x = model.patches(model.normalise(z))

    # A row without a past: its LM outputs do not depend on the earlier patches' latents.
    no_past = torch.tensor([False, True])
    h = model.teacher_forced_lm(x, cond, no_past)
    other = x.clone()
    other[:, :2] += 5.0  # patches 0 and 1 are the history of patches 1 and 2
    h2 = model.teacher_forced_lm(other, cond, no_past)
    torch.testing.assert_close(h[0], h2[0])
    assert not torch.allclose(h[1], h2[1])

    # The direction loss is zero where the head points along the intensity, grows as it
    # turns away, and ignores silent patches (weight = magnitude).
    with torch.no_grad():
        est = model.direction(model.teacher_forced_lm(x, cond))
    loss = model.losses(z, cond, torch.Generator().manual_seed(5), est.clone())
    assert float(loss["direction"].detach()) < 1e-6
    flipped = -est
    flipped[:, 0] = 0.0  # silent patches: no weight
    loss = model.losses(z, cond, torch.Generator().manual_seed(5), flipped, no_past)
    assert set(loss) == {"flow", "direction"}
    # Antiparallel (1 - cos = 2) on 4 of 6 patches, the weights averaging 1 over all 6.
    assert float(loss["direction"].detach()) > 1.0
    loss["direction"].backward()
    assert model.direction_head.weight.grad.abs().sum() > 0
    assert model.lm.video.inp.weight.grad.abs().sum() > 0  # it reaches the video path


def test_rows_without_an_lm_past_keep_the_locdit_boundary_context():
    model, z, cond = small_batch()
    seen: dict[str, torch.Tensor] = {}
    lm, dit = model.teacher_forced_lm, model.dit.forward

    def spy_lm(x, c, history_present=None):
        seen["lm_past"] = history_present
        return lm(x, c, history_present)

    def spy_dit(x, tau, h, context, valid):
        seen["valid"] = valid.reshape(2, 3, -1)  # (rows, patches, context frames)
        return dit(x, tau, h, context, valid)

    model.teacher_forced_lm, model.dit.forward = spy_lm, spy_dit
    gen = torch.Generator().manual_seed(5)
    model.losses(z, cond, gen, lm_history_present=torch.tensor([False, True]))
    assert seen["lm_past"].tolist() == [False, True]
    # Both rows' LocDiTs see the preceding patches (patch 2 has two before it).
    assert seen["valid"][:, 2].all() and not seen["valid"][:, 0].any()
    model.losses(z, cond, gen, None, torch.tensor([True, False]), torch.tensor([False, True]))
    assert seen["lm_past"].tolist() == [False, False]
    assert seen["valid"][0, 2].all() and not seen["valid"][1].any()


def test_video_pooler_attends_to_the_cell_that_departs_from_its_mean():
    torch.manual_seed(0)
    cfg = small_config()
    pooler = SpatialGenerator(cfg).lm.video.eval()
    g, c = cfg.video_tokens, cfg.video_dim
    pooler.token_mean.copy_(torch.randn(g, c))
    departure = 3.0 * torch.randn(c)
    frames = pooler.token_mean.expand(3, g, c).clone()
    frames[:2, 1] += departure  # an object in cell 1 ...
    frames[1, 5] += 0.01 * torch.randn(c)  # ... with a barely changed empty cell
    frames[2, 6] += departure  # ... or the same object in cell 6
    with torch.no_grad():
        out = pooler(frames)
    assert pooler.saliency_scale.requires_grad
    empty, moved = (out[0] - out[1]).abs().max(), (out[0] - out[2]).abs().max()
    assert empty < 0.05 * moved, (empty, moved)  # an empty cell barely counts; the object does


def test_the_saliency_input_starts_neutral_then_steers_the_video_pooler():
    torch.manual_seed(0)
    plain = SpatialGenerator(small_config()).lm.video.eval()
    pooler = SpatialGenerator(small_config(video_saliency=True)).lm.video.eval()
    missing = pooler.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["prior_proj.bias", "prior_proj.weight", "prior_scale"]
    g, c = 8, 16
    tokens = torch.randn(2, g, c)
    at_1, at_6 = torch.full((2, g), 0.01), torch.full((2, g), 0.01)
    at_1[:, 1], at_6[:, 6] = 0.93, 0.93
    with torch.no_grad():
        # Zero-initialised: a generator trained without the saliency starts as it was.
        torch.testing.assert_close(pooler(tokens, at_1), plain(tokens))
        torch.testing.assert_close(pooler(tokens, at_6), plain(tokens))
        # Trained, it looks where SVAC saw the sound.
        pooler.prior_scale.fill_(3.0)
        pooler.prior_proj.weight.normal_(0.0, 0.1)
        assert (pooler(tokens, at_1) - pooler(tokens, at_6)).abs().max() > 1e-2
    with pytest.raises(InputError, match="saliency"):
        pooler(tokens)


def test_the_direction_loss_reaches_the_saliency_input():
    torch.manual_seed(0)
    cfg = small_config(video_saliency=True)
    model = SpatialGenerator(cfg)
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(2, cfg.latent_dim, 3 * cfg.patch_frames, generator=gen)
    cond = conditioning(2, 3, cfg, gen)
    cond.saliency = torch.rand(2, 3, cfg.video_tokens, generator=gen).softmax(dim=-1)
    loss = model.losses(z, cond, gen, torch.randn(2, 3, 3, generator=gen))["direction"]
    loss.backward()
    assert model.lm.video.prior_proj.weight.grad.abs().sum() > 0
    assert model.lm.video.prior_scale.grad is not None


def test_guidance_rows_sum_to_the_three_way_guidance():
    """The rows a patch runs and their weights give guided_velocity's result wherever a
    missing modality makes two of the three conditions one."""
    torch.manual_seed(1)
    v_full, v_text, v_none = torch.randn(3, 4, 8).unbind(0)
    g_text, g_video = 3.0, 5.0
    cases = {  # (video, text): the velocities of the (full, text, none) rows
        (True, True): (v_full, v_text, v_none),
        (True, False): (v_full, v_none, v_none),  # no caption: text row = none row
        (False, True): (v_text, v_text, v_none),  # no video: full row = text row
        (False, False): (v_none, v_none, v_none),
    }
    expected_rows = {(True, True): 3, (True, False): 2, (False, True): 2, (False, False): 1}
    for (video, text), velocities in cases.items():
        rows, weights = guidance_rows(video, text, g_text, g_video)
        assert len(rows) == len(weights) == expected_rows[video, text]
        assert sum(weights) == pytest.approx(1.0)
        got = sum(w * velocities[r] for r, w in zip(rows, weights, strict=True))
        torch.testing.assert_close(got, guided_velocity(*velocities, g_text, g_video))


def test_flow_pieces():
    s = cosine_schedule(20)
    assert s[0] == 0 and s[-1] == pytest.approx(1.0) and len(s) == 21
    assert torch.all(s[1:] > s[:-1])
    assert s[10] == pytest.approx(0.5 * (1 - math.cos(math.pi * 0.5)))
    x1, x0 = torch.ones(2, 3), torch.zeros(2, 3)
    xt, v = flow_interpolate(x1, x0, torch.tensor([0.25, 1.0]))
    torch.testing.assert_close(xt[:, 0], torch.tensor([0.25, 1.0]))
    torch.testing.assert_close(v, torch.ones(2, 3))
    vf, vt, vn = torch.tensor(3.0), torch.tensor(2.0), torch.tensor(1.0)
    assert guided_velocity(vf, vt, vn, 1.0, 1.0) == vf
    assert guided_velocity(vf, vt, vn, 2.0, 3.0) == 1.0 + 2.0 * 1.0 + 3.0 * 1.0
    with pytest.raises(InputError):
        cosine_schedule(0)


def test_config_validation_and_round_trip():
    cfg = GENERATOR_PRESETS["tiny"]
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match="unknown GeneratorConfig"):
        GeneratorConfig.from_dict({"bogus": 1})
    with pytest.raises(InputError, match="lm_dim must be a multiple"):
        GeneratorConfig(lm_dim=30, lm_heads=4)
    with pytest.raises(InputError, match="unknown generator preset"):
        SpatialGenerator.from_config("XL")
    with pytest.raises(InputError, match="video_saliency must be true or false"):
        GeneratorConfig(video_saliency="yes")
    with pytest.raises(InputError, match="lm_history must be true or false"):
        GeneratorConfig(lm_history=1)
    for lock in (-0.1, 1.5, True, "1"):
        with pytest.raises(InputError, match="direction_lock must be in"):
            GeneratorConfig(direction_lock=lock)
    # Bundles from before the sampler's history and lock settings behave as they did.
    older = {k: v for k, v in cfg.to_dict().items() if k not in ("lm_history", "direction_lock")}
    assert GeneratorConfig.from_dict(older).lm_history
    assert GeneratorConfig.from_dict(older).direction_lock == 0
    # Bundles from before the saliency input have no such field: they load without it.
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("video_saliency", "saliency_window")}
    assert not GeneratorConfig.from_dict(old).video_saliency and cfg.video_saliency


def test_steer_intensity_turns_the_direction_channels_and_keeps_their_length():
    torch.manual_seed(0)
    latents = torch.randn(2, 4, 8)
    latents[0, 1, -3:] = 0.0  # a silent frame stays silent
    x, y, z = 0.6, 0.0, 0.8
    direction = torch.tensor([x, y, z])
    assert steer_intensity(latents, direction, 0.0) is latents
    locked = steer_intensity(latents, direction, 1.0)
    torch.testing.assert_close(locked[..., :-3], latents[..., :-3])
    length = latents[..., -3:].norm(dim=-1, keepdim=True)
    torch.testing.assert_close(locked[..., -3:], length * torch.tensor([y, z, x]))  # Y, Z, X
    half = steer_intensity(latents, direction, 0.5)[..., -3:]
    torch.testing.assert_close(half.norm(dim=-1, keepdim=True), length)
    own = torch.nn.functional.normalize(latents[..., -3:], dim=-1)
    target = torch.tensor([y, z, x]).expand_as(own)
    cos = torch.nn.functional.cosine_similarity
    lit = length[..., 0] > 0
    # Half way: closer to the target than the frame's own direction, not yet on it.
    assert torch.all(cos(half, target, dim=-1)[lit] >= cos(own, target, dim=-1)[lit] - 1e-6)
    assert torch.all(cos(half, target, dim=-1)[lit] < 1 - 1e-4)


def test_patch_flux_is_the_mean_w_times_dipoles_the_level_and_direction_channels_say():
    # Two frames of a plane wave from x (front) at W RMS 0.5, two at RMS 0.25 from y.
    latents = torch.zeros(4, 8)
    latents[:, 4] = torch.log(torch.tensor([0.5, 0.5, 0.25, 0.25]) + LEVEL_FLOOR)
    latents[:2, -3:] = torch.tensor([0.0, 0.0, 1.0])  # Y, Z, X
    latents[2:, -3:] = torch.tensor([0.5, 0.0, 0.0])  # half diffuse, from the left
    flux = patch_flux(latents, level_channel=4)
    torch.testing.assert_close(flux, torch.tensor([0.25 / 2, 0.0625 * 0.5 / 2, 0.0]))
    batched = patch_flux(torch.stack([latents, latents.flip(0)]), level_channel=4)
    torch.testing.assert_close(batched, flux.expand(2, 3))  # frame order does not matter


def test_scale_level_makes_the_frames_that_much_louder():
    latents = torch.randn(4, 8)
    latents[:, 4] = torch.log(torch.tensor([0.5, 0.1, 0.0, 1e-3]) + LEVEL_FLOOR)
    assert scale_level(latents, 4, 0.0) is latents
    louder = scale_level(latents, 4, math.log(2.0))
    rms = louder[:, 4].exp() - LEVEL_FLOOR
    torch.testing.assert_close(rms, torch.tensor([1.0, 0.2, 0.0, 2e-3]))  # silence stays silent
    torch.testing.assert_close(louder[:, :4], latents[:, :4])
    torch.testing.assert_close(louder[:, 5:], latents[:, 5:])


def test_level_lock_gain_goes_share_of_the_way_to_the_cues_loudness_within_its_bounds():
    # Flux 0.01; the cue says 0.3 where the clip's ratio of flux to cue is 0.1: target 0.03.
    full = level_lock_gain(0.01, 0.3, 0.1, 1.0)
    assert math.isclose(0.01 * math.exp(2 * full), 0.03, rel_tol=1e-9)
    assert math.isclose(level_lock_gain(0.01, 0.3, 0.1, 0.5), full / 2, rel_tol=1e-9)
    assert level_lock_gain(0.01, 0.3, 0.1, 0.0) == 0.0
    assert level_lock_gain(0.0, 0.3, 0.1, 1.0) == 0.0  # a silent patch: nothing to scale
    # A cue that calls the patch silent quiets it by the floor, at most; a loud one, the
    # ceiling.
    assert math.isclose(level_lock_gain(0.01, 0.0, 0.1, 1.0), math.log(10 ** (-24 / 20)))
    assert math.isclose(level_lock_gain(1e-9, 1.0, 1.0, 1.0), math.log(10 ** (12 / 20)))
    assert math.isclose(level_lock_gain(0.01, 0.0, 0.1, 1.0, floor_db=-6), -6 * math.log(10) / 20)


def test_level_lock_needs_the_lock_aimed_at_the_video_cue():
    with pytest.raises(InputError, match="level_lock"):
        GeneratorConfig(level_lock=0.5)
    with pytest.raises(InputError, match="level_lock must be in"):
        GeneratorConfig(direction_lock=1.0, direction_source="video", level_lock=1.5)
    assert GeneratorConfig(direction_lock=1.0, direction_source="video", level_lock=1).level_lock


def test_the_history_encoder_is_skipped_when_no_row_reads_a_past():
    torch.manual_seed(0)
    cfg = small_config()
    model = SpatialGenerator(cfg).eval()
    gen = torch.Generator().manual_seed(3)
    cond = conditioning(2, 1, cfg, gen)
    history = torch.randn(2, 1, cfg.patch_frames, cfg.latent_dim, generator=gen)
    calls = []
    model.lm.history.register_forward_hook(lambda *_: calls.append(1))
    no_past = torch.zeros(2, dtype=torch.bool)
    with torch.no_grad():
        skipped = model.lm.inputs(history, cond.video, cond.video_present, 3, no_past)
        assert not calls
        read = model.lm.inputs(history, cond.video, cond.video_present, 3)
        assert calls
    with torch.enable_grad():  # training runs it, whatever it then discards
        trained = model.lm.inputs(history, cond.video, cond.video_present, 3, no_past)
    assert len(calls) == 2
    torch.testing.assert_close(skipped, trained.detach())
    assert not torch.allclose(skipped, read)
