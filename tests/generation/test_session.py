"""Generator sessions: streaming equals offline, captions take effect at the next patch,
stop conditions, and bad input gets a clear error (tiny preset, random generator weights:
the same code path as a trained one)."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
import torch

from swansphere.errors import InputError
from swansphere.generation import GeneratorRuntime, SessionConfig
from swansphere.generation.conditioning import FrameCues
from swansphere.generation.session import MAX_CAPTION_CHARS, PatchSampler, sample_patches
from swansphere.models.generator import SpatialGenerator


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (5, 48, 96, 3), dtype=np.uint8)


def stream(session, limit: int = 100) -> np.ndarray:
    chunks = []
    while (chunk := session.next_chunk()) is not None and len(chunks) < limit:
        chunks.append(chunk)
    return np.concatenate(chunks, axis=1)


def test_streaming_equals_offline(runtime, frames):
    fps, caption = 4.0, "a dog barks on the left"
    offline = runtime.generate(frames, fps, caption, config=SessionConfig(seed=7, steps=4))
    assert offline.shape == (4, round(len(frames) / fps * runtime.sample_rate))
    session = runtime.session(SessionConfig(seed=7, steps=4))
    session.set_caption(caption)
    for i, frame in enumerate(frames):
        session.set_panorama(frame, i / fps)
    session.end_video()
    streamed = stream(session)
    assert streamed.shape == offline.shape
    np.testing.assert_allclose(streamed, offline, atol=1e-5)
    assert np.abs(offline).max() > 0
    assert session.finished and session.next_chunk() is None
    assert {"lm_ms", "dit_ms", "decode_ms", "video_ms"} <= set(session.stats)


def test_rows_with_one_condition_run_once_and_give_the_three_row_audio(runtime, frames):
    """Without a caption (or without video) so far, two guidance rows have had the same
    inputs all along: the LocDiT runs them once (2 rows, not 3), and the audio is what
    all three rows give (the path of a TensorRT engine, built for three). A caption that
    has come and gone leaves the text row's LM history apart: 3 rows from then on."""
    from swansphere.generation.accel import Accelerated

    def generate(mode: str, video: bool, captions: list) -> tuple[np.ndarray, list]:
        saved, rows = runtime.accel, []

        def dit(x, *args):
            rows.append(x.shape[0])
            return saved.dit(x, *args)

        runtime.accel = Accelerated(saved.lm, dit, mode)
        session = runtime.session(SessionConfig(seed=2, steps=2))
        try:
            chunks = []
            for i, caption in enumerate(captions):
                session.set_caption(caption)
                if video:
                    session.set_panorama(frames[i % len(frames)], i * session.patch_seconds)
                chunks.append(session.next_chunk())
        finally:
            runtime.accel = saved
            session.close()
        return np.concatenate(chunks, axis=1), rows[::2]  # one entry per patch

    cases = (
        (True, [None] * 3, [2, 2, 2]),
        (False, ["rain"] * 3, [2, 2, 2]),
        (True, [None, "rain", "rain"], [2, 3, 3]),
        (True, ["rain", None, None], [3, 3, 3]),  # the caption went: histories differ
    )
    for video, captions, used in cases:
        deduplicated, rows = generate("eager", video, captions)
        assert rows == used
        three, rows = generate("tensorrt", video, captions)
        assert rows == [3, 3, 3]
        assert np.abs(three).max() > 0
        np.testing.assert_allclose(deduplicated, three, atol=1e-5)


def test_the_traced_direction_is_the_mean_of_the_lm_unit_estimates(runtime, frames):
    config = SessionConfig(seed=3, steps=2)
    estimates, lm = [], runtime.accel.lm

    def recording(*args):
        h = lm(*args)
        estimates.append(runtime.generator.direction(h[0, 0]))
        return h

    runtime.accel.lm = recording
    try:
        audio, direction = runtime.generate_traced(frames[:2], 4.0, None, config=config)
    finally:
        runtime.accel.lm = lm
    units = torch.stack([e / e.norm() for e in estimates])
    np.testing.assert_allclose(direction, units.mean(0).double().numpy(), atol=1e-6)
    assert len(estimates) > 1 and 0 < np.linalg.norm(direction) <= 1 + 1e-6
    np.testing.assert_array_equal(audio, runtime.generate(frames[:2], 4.0, None, config=config))


def test_seed_changes_the_output(runtime, frames):
    a = runtime.generate(frames[:2], 4.0, None, config=SessionConfig(seed=1, steps=2))
    b = runtime.generate(frames[:2], 4.0, None, config=SessionConfig(seed=2, steps=2))
    assert not np.allclose(a, b)


def test_caption_change_takes_effect_at_the_next_patch(runtime):
    def run(change_at: int | None) -> list[np.ndarray]:
        s = runtime.session(SessionConfig(seed=3, steps=4, duration_s=5 * runtime.patch_seconds))
        s.set_caption("rain on a tin roof")
        out = []
        for i in range(5):
            if i == change_at:
                s.set_caption("a helicopter passes overhead")
            out.append(s.next_chunk())
        return out

    same, changed = run(None), run(3)
    for i in range(3):
        np.testing.assert_array_equal(same[i], changed[i])
    assert not np.allclose(same[3], changed[3])


def test_text_only_generation_stops_at_the_duration(runtime):
    config = SessionConfig(steps=2)
    out = runtime.generate(None, None, "a bell rings behind you", duration_s=0.5, config=config)
    assert out.shape == (4, round(0.5 * runtime.sample_rate))
    s = runtime.session(SessionConfig(steps=2, duration_s=0.5))
    s.set_caption("a bell rings behind you")
    assert stream(s).shape == out.shape


def test_field_of_view_frames_condition_the_session(runtime, frames):
    s = runtime.session(SessionConfig(seed=0, steps=2, duration_s=0.4))
    s.set_view(frames[0], np.array([1.0, 0, 0, 0]), 90.0, 0.0)
    assert stream(s).shape[1] == round(0.4 * runtime.sample_rate)


def test_nothing_to_generate_from_is_an_error(runtime):
    with pytest.raises(InputError, match="nothing to generate from"):
        runtime.generate(None, None, None, duration_s=1.0)
    with pytest.raises(InputError, match="nothing to generate from"):
        runtime.generate(None, None, "   ", duration_s=1.0)  # empty caption = no caption
    s = runtime.session()
    with pytest.raises(InputError, match="send a frame or a caption"):
        s.next_chunk()
    s.set_caption("")
    with pytest.raises(InputError, match="send a frame or a caption"):
        s.next_chunk()
    with pytest.raises(InputError, match="needs a duration"):
        runtime.generate(None, None, "rain", duration_s=None)


def test_long_captions_truncate_with_a_warning_and_oversize_ones_are_refused(runtime):
    s = runtime.session(SessionConfig(steps=2, duration_s=0.2))
    s.set_caption("rain " * (MAX_CAPTION_CHARS // 5))  # 10,000 characters
    assert any("truncated" in w for w in s.warnings)
    assert s.next_chunk().shape[0] == 4
    with pytest.raises(InputError, match="characters; the limit"):
        s.set_caption("x" * (MAX_CAPTION_CHARS + 1))
    with pytest.raises(InputError, match="caption must be text"):
        s.set_caption(42)


def test_bad_frames_and_times_are_refused(runtime, frames):
    s = runtime.session(SessionConfig(steps=2))
    with pytest.raises(InputError, match=r"RGB image \(H, W, 3\)"):
        s.set_panorama(np.zeros((32, 64, 4), np.uint8))  # RGBA
    with pytest.raises(InputError, match="dtype"):
        s.set_panorama(np.zeros((32, 64, 3), np.int64))
    with pytest.raises(InputError, match="too small"):
        s.set_panorama(np.zeros((1, 64, 3), np.uint8))
    s.set_panorama(frames[0], 1.0)
    with pytest.raises(InputError, match="capture order"):
        s.set_panorama(frames[1], 0.5)
    with pytest.raises(InputError, match="frame time"):
        s.set_panorama(frames[1], float("nan"))
    # A video with a gap: the newest frame before each patch conditions it.
    s.set_panorama(frames[2], 3.0)
    assert s.next_chunk().shape == (4, runtime.patch_samples)
    s.close()
    with pytest.raises(InputError, match="closed"):
        s.set_caption("rain")
    assert s.next_chunk() is None


def test_offline_input_checks(runtime, frames):
    with pytest.raises(InputError, match="frame rate"):
        runtime.generate(frames, 0.0, None)
    with pytest.raises(InputError, match=r"frames \(N, H, W, 3\)"):
        runtime.generate(frames[0], 4.0, None)
    with pytest.raises(InputError, match="steps"):
        SessionConfig(steps=0)
    with pytest.raises(InputError, match="guidance_text"):
        SessionConfig(guidance_text=float("nan"))


def test_a_bundle_without_generator_is_named(tmp_path):
    from swansphere.models.bundle import load_bundle, write_bundle

    base = load_bundle("default")
    parts = {name: (*base.component(name), base.kind(name)) for name in ("vae", "svac")}
    path = write_bundle(tmp_path / "no-generator", parts)
    with pytest.raises(InputError, match="has no generator component"):
        GeneratorRuntime.load(path)


def test_the_shipped_bundle_generates(runtime, frames):
    shipped = GeneratorRuntime.load("default")
    # The tiny preset, with the lock aimed at the shipped video direction cue and the level
    # lock following its loudness.
    tiny = runtime.generator.config
    assert shipped.generator.config == replace(tiny, direction_source="video", level_lock=1.0)
    assert shipped.uses_direction_cue
    out = shipped.generate(None, None, "a bell rings behind you", 0.4, SessionConfig(steps=2))
    assert out.shape == (4, round(0.4 * shipped.sample_rate)) and np.isfinite(out).all()
    out = shipped.generate(frames[:2], 4.0, None, config=SessionConfig(steps=2))
    assert out.shape == (4, round(0.5 * shipped.sample_rate)) and np.isfinite(out).all()


def test_accel_fallbacks_are_logged_and_eager(runtime, caplog):
    from swansphere.generation.accel import accelerate

    with caplog.at_level("WARNING"):
        acc = accelerate(runtime, "tensorrt")  # CPU: TensorRT cannot run
    assert acc.mode == "eager"
    assert any("tensorrt" in r.message for r in caplog.records)
    with pytest.raises(InputError, match="unknown accel mode"):
        accelerate(runtime, "turbo")


@pytest.mark.parametrize("duration_s", [0.3, 1.7])
def test_a_requested_duration_outlasts_the_end_of_video(runtime, frames, duration_s):
    """duration_s is the session's length either side of the video's end (1.25 s here),
    the last frame holding after it, as offline generation does."""
    config = SessionConfig(steps=2, duration_s=duration_s)
    s = runtime.session(config)
    for i, frame in enumerate(frames):
        s.set_panorama(frame, i / 4.0)
    s.end_video()
    streamed = stream(s)
    assert streamed.shape[1] == round(duration_s * runtime.sample_rate)
    offline = runtime.generate(frames, 4.0, None, config=config)
    # Float rounding only (the offline pass encodes and decodes the clip in one batch), on
    # random weights whose output reaches +-12 by the end.
    np.testing.assert_allclose(streamed, offline, rtol=1e-5, atol=1e-5)


@contextmanager
def sampler_settings(runtime, **fields):
    """The runtime's generator with sampler fields set, restored afterwards."""
    old = runtime.generator.config
    runtime.generator.config = replace(old, **fields)
    try:
        yield
    finally:
        runtime.generator.config = old


def assert_turned_to(runtime, patch, direction) -> None:
    """Every lit frame of a sampled patch (1, f, D) has its intensity channels (the last
    three, y z x) along ``direction`` (x, y, z)."""
    g = runtime.generator
    yzx = (patch * g.latent_std + g.latent_mean)[0, :, -3:]
    unit = torch.nn.functional.normalize(direction, dim=0)[[1, 2, 0]]
    lit = yzx.norm(dim=-1) > 1e-6
    assert lit.any()
    cos = torch.nn.functional.cosine_similarity(yzx[lit], unit.expand_as(yzx[lit]), dim=-1)
    assert torch.all(cos > 1 - 1e-5)


def assert_streaming_equals_offline(runtime, frames, config, caption=None) -> np.ndarray:
    """A session fed the frames at 4 fps (and ``caption``) streams what offline generation
    makes; returns it."""
    offline = runtime.generate(frames, 4.0, caption, config=config)
    session = runtime.session(config)
    session.set_caption(caption)
    for i, frame in enumerate(frames):
        session.set_panorama(frame, i / 4.0)
    session.end_video()
    np.testing.assert_allclose(stream(session), offline, atol=1e-5)
    return offline


def test_direction_lock_points_each_patch_where_the_lm_means_it(runtime, frames):
    g = runtime.generator
    with sampler_settings(runtime, direction_lock=1.0):
        sampler = PatchSampler(runtime, SessionConfig(seed=5, steps=2))
        text = runtime.caption_tokens(None)
        cues = runtime.video_cues(frames[:2], 4.0, 2)
        estimates, lm = [], runtime.accel.lm

        def recording(*args):
            h = lm(*args)
            estimates.append(g.direction(h[0, 0]))
            return h

        runtime.accel.lm = recording
        try:
            patches = [sampler.step(cues[t : t + 1], text[0], text[1]) for t in range(2)]
        finally:
            runtime.accel.lm = lm
        for patch, estimate in zip(patches, estimates, strict=True):
            assert_turned_to(runtime, patch, estimate)
        torch.testing.assert_close(sampler.history[-1], patches[-1])  # the steered patch
        # Streaming decodes what offline decodes, steered the same way.
        offline = assert_streaming_equals_offline(runtime, frames, SessionConfig(seed=7, steps=3))
    with sampler_settings(runtime, direction_lock=0.0):
        unlocked = runtime.generate(frames, 4.0, None, config=SessionConfig(seed=7, steps=3))
    assert not np.allclose(unlocked, offline, atol=1e-4)


def test_without_lm_history_the_lm_does_not_read_the_generated_patches(runtime, frames):
    text = runtime.caption_tokens(None)
    cues = runtime.video_cues(frames[:3], 4.0, 3)

    def lm_outputs(seed: int) -> list[torch.Tensor]:
        sampler = PatchSampler(runtime, SessionConfig(seed=seed, steps=2))
        out = []
        for t in range(3):
            request = sampler.prepare(cues[t : t + 1], text[0], text[1])
            out.append(request.h)
            sampler.finish(sample_patches(runtime, [request])[0])
        return out

    with sampler_settings(runtime, lm_history=True):
        a, b = lm_outputs(1), lm_outputs(2)  # different noise: different patches
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[2], b[2])  # the LM reads the patches it generated
    with sampler_settings(runtime, lm_history=False):
        a, b = lm_outputs(1), lm_outputs(2)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)


def test_direction_lock_needs_the_vaes_direct_path(runtime):
    from swansphere.models.vae import FOAVAE

    vae = FOAVAE.from_config(replace(runtime.vae.config, direct_path=False))
    generator = SpatialGenerator(replace(runtime.generator.config, direction_lock=0.5))
    with pytest.raises(InputError, match="direct path"):
        GeneratorRuntime(vae, runtime.svac, generator, "test")


@contextmanager
def direction_cue(runtime, seed: int = 0, text_dim: int = 0):
    """The runtime with a random video direction cue (small windows; with ``text_dim``,
    random caption layers too) and the lock aimed at it, restored afterwards."""
    from swansphere.models.direction import VideoDirectionConfig, VideoDirectionCue

    torch.manual_seed(seed)
    seconds = runtime.patch_seconds
    config = VideoDirectionConfig(
        window=3, taps=2, smoothing=2, patch_seconds=seconds, text_dim=text_dim
    )
    runtime.direction = VideoDirectionCue(config).eval()
    if text_dim:
        torch.nn.init.normal_(runtime.direction.caption.weight, std=0.5)
        torch.nn.init.normal_(runtime.direction.null_caption, std=0.5)
    try:
        with sampler_settings(runtime, direction_lock=1.0, direction_source="video"):
            yield runtime.direction
    finally:
        runtime.direction = None


def test_direction_source_video_turns_each_patch_to_the_cue(runtime, frames):
    from swansphere.models.direction import DirectionTracker

    with direction_cue(runtime) as cue:
        cues = runtime.video_cues(frames[:3], 4.0, 4)
        assert cues.canvases is not None and cues.canvases.shape[1:] == (3, 64, 128)
        sampler = PatchSampler(runtime, SessionConfig(seed=5, steps=2), trace_direction=True)
        text = runtime.caption_tokens(None)
        tracker = DirectionTracker(cue)
        for t in range(4):
            patch = sampler.step(cues[t : t + 1], text[0], text[1])
            tracker.push(cues.canvases[t])
            assert_turned_to(runtime, patch, tracker.direction)
        # The LM's own estimates are still what the trace reports.
        assert 0 < sampler.lm_direction.norm() <= 4 + 1e-5
        # A patch given up after its LM step leaves the cue's window as it was.
        before = sampler.tracker.direction.clone()
        sampler.prepare(cues[3:4], text[0], text[1])
        assert not torch.equal(sampler.tracker.direction, before)
        sampler.abort()
        torch.testing.assert_close(sampler.tracker.direction, before, rtol=0, atol=0)
        with pytest.raises(InputError, match="canvas"):
            sampler.prepare(FrameCues(cues.tokens[:1], cues.patch_embeddings[:1]), *text[:2])
        # A stream computes the cue patch by patch as offline generation does.
        offline = assert_streaming_equals_offline(runtime, frames, SessionConfig(seed=7, steps=3))
        # Text only: no frame, so the lock keeps the LM's estimate (no error).
        spoken = runtime.generate(None, None, "rain", 0.5, SessionConfig(seed=1, steps=2))
        assert np.isfinite(spoken).all() and np.abs(spoken).max() > 0
        # With a caption too: the LM reads it and the cue does not, so the LM's estimate.
        dog = (frames, 4.0, "a dog on the left", None, SessionConfig(seed=2, steps=3))
        captioned = runtime.generate(*dog)
    with sampler_settings(runtime, direction_lock=1.0):
        by_lm = runtime.generate(frames, 4.0, None, config=SessionConfig(seed=7, steps=3))
        captioned_lm = runtime.generate(*dog)
    np.testing.assert_allclose(captioned, captioned_lm, atol=1e-6)
    assert not np.allclose(by_lm, offline, atol=1e-4)


def test_level_lock_makes_each_patch_as_loud_as_the_cue_estimates(runtime, frames):
    from swansphere.models.direction import DirectionTracker
    from swansphere.models.generator import level_lock_gain, patch_flux

    channel = runtime.vae.config.learned_dim  # the level channel, before Y, Z, X
    g, text, config = runtime.generator, runtime.caption_tokens(None), SessionConfig(seed=5)

    def fluxes(patches) -> list[float]:
        return [
            float(patch_flux((p * g.latent_std + g.latent_mean)[0], channel).norm())
            for p in patches
        ]

    with direction_cue(runtime) as cue:
        cues = runtime.video_cues(frames[:2], 4.0, 2)

        def sample(level_lock: float) -> list[torch.Tensor]:
            with sampler_settings(runtime, level_lock=level_lock):
                sampler = PatchSampler(runtime, replace(config, steps=2))
                return [sampler.step(cues[t : t + 1], text[0], text[1]) for t in range(2)]

        (free0, free1), (locked0, locked1) = sample(0.0), sample(1.0)
        tracker = DirectionTracker(cue)
        loudness = [float(tracker.push(cues.canvases[t]).norm()) for t in range(2)]
        f0, f1 = fluxes([free0, free1])
        # The first patch sets the ratio of generated flux to the cue's estimates: as it was.
        torch.testing.assert_close(locked0, free0)
        # The second is scaled to the cue's estimate in the units that ratio gives (the
        # unlocked patch is what the sampler drew before the lock scaled it).
        gain = level_lock_gain(f1, loudness[1], (f0 + f1) / (loudness[0] + loudness[1]), 1.0)
        assert abs(gain) > 0.01
        assert fluxes([locked1])[0] == pytest.approx(f1 * math.exp(2 * gain), rel=1e-4)
        keep = [i for i in range(g.config.latent_dim) if i != channel]
        torch.testing.assert_close(locked1[..., keep], free1[..., keep])
        # A stream locks the level as offline generation does; and the lock changes the audio.
        with sampler_settings(runtime, level_lock=1.0):
            locked = assert_streaming_equals_offline(runtime, frames, replace(config, steps=3))
        free = runtime.generate(frames, 4.0, None, config=replace(config, steps=3))
    assert not np.allclose(locked, free, atol=1e-4)


def test_level_lock_needs_the_vaes_level_path(runtime):
    from swansphere.models.direction import VideoDirectionConfig, VideoDirectionCue
    from swansphere.models.vae import FOAVAE

    vae = FOAVAE.from_config(replace(runtime.vae.config, level_path=False))
    cfg = replace(runtime.generator.config, direction_lock=1.0, direction_source="video")
    cue = VideoDirectionCue(VideoDirectionConfig(patch_seconds=runtime.patch_seconds))
    generator = SpatialGenerator(replace(cfg, level_lock=1.0))
    with pytest.raises(InputError, match="level path"):
        GeneratorRuntime(vae, runtime.svac, generator, "test", direction=cue)


def test_a_cue_that_reads_captions_turns_captioned_patches_too(runtime, frames):
    from swansphere.models.direction import DirectionTracker
    from swansphere.models.text import pooled_caption

    dog, silent = runtime.caption_tokens("a dog on the left"), runtime.caption_tokens(None)
    with direction_cue(runtime, text_dim=runtime.generator.config.text_dim) as cue:
        assert runtime.cue_reads_captions
        cues = runtime.video_cues(frames[:3], 4.0, 4)
        sampler = PatchSampler(runtime, SessionConfig(seed=5, steps=2))
        tracker, blind = DirectionTracker(cue), DirectionTracker(cue)
        for t, text in enumerate([dog, dog, silent, dog]):  # a caption change mid-stream
            patch = sampler.step(cues[t : t + 1], text[0], text[1])
            caption = pooled_caption(text[0], text[1])[0] if text[1].any() else None
            tracker.push(cues.canvases[t], caption)
            blind.push(cues.canvases[t])
            assert_turned_to(runtime, patch, tracker.direction)
        assert not torch.allclose(tracker.direction, blind.direction)  # the caption counts
        config = SessionConfig(seed=7, steps=3)
        captioned = assert_streaming_equals_offline(runtime, frames, config, "a dog on the left")
        # An LM reading another encoder's captions: the cue reads none (MiniLM's it learnt).
        with sampler_settings(runtime, text_encoder="/elsewhere"):
            assert not runtime.cue_reads_captions
    with direction_cue(runtime) as cue:  # the same network, without caption layers
        assert not runtime.cue_reads_captions
        uncaptioned = runtime.generate(frames, 4.0, "a dog on the left", config=config)
    assert not np.allclose(captioned, uncaptioned, atol=1e-4)


def test_direction_source_video_needs_a_cue_for_this_patch_length(runtime):
    from swansphere.models.direction import VideoDirectionConfig, VideoDirectionCue

    generator = SpatialGenerator(
        replace(runtime.generator.config, direction_lock=1.0, direction_source="video")
    )
    with pytest.raises(InputError, match="swansphere train direction"):
        GeneratorRuntime(runtime.vae, runtime.svac, generator, "test")
    other = VideoDirectionCue(VideoDirectionConfig(patch_seconds=0.25))
    with pytest.raises(InputError, match=r"patches of 0\.2500 s"):
        GeneratorRuntime(runtime.vae, runtime.svac, generator, "test", direction=other)
    with pytest.raises(InputError, match="direction_source"):
        replace(runtime.generator.config, direction_source="caption")
