"""``--accel compile`` on CPU: the compiled LM step and LocDiT give eager's audio (to float
rounding), and after :meth:`GeneratorRuntime.warm_up` a live stream compiles nothing more
(no seconds-long stall mid-stream: the KV cache filling and trimming, captions coming and
going, two sessions batched). A small generator keeps the compiles short."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from swansphere.generation import GeneratorRuntime, SessionConfig
from swansphere.generation.session import PatchSampler, sample_patches
from swansphere.models.bundle import load_bundle
from swansphere.models.generator import GENERATOR_PRESETS, SpatialGenerator

pytest.importorskip("torch._inductor")


def small_runtime(accel: str) -> GeneratorRuntime:
    """The shipped VAE and SVAC with a one-layer generator (LM window of 4 patches) at
    seeded random weights, the same for every accel mode."""
    config = replace(
        GENERATOR_PRESETS["tiny"],
        lm_layers=1, dit_layers=1, history_layers=1, lm_window=4,
        direction_source="lm", direction_lock=1.0,
    )  # fmt: skip
    torch.manual_seed(0)
    generator = SpatialGenerator(config)
    with torch.no_grad():
        for p in generator.parameters():
            if p.ndim > 0 and not p.any():
                p.normal_(0.0, 0.02)  # zero-initialised output layers would hide a difference
    bundle = load_bundle("default")
    return GeneratorRuntime(
        bundle.build("vae"), bundle.build("svac"), generator, "small", accel=accel
    )


@pytest.fixture(scope="module")
def compiled() -> GeneratorRuntime:
    runtime = small_runtime("compile")
    assert runtime.accel.mode == "compile"
    runtime.warm_up()
    return runtime


def frames(n: int) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, 48, 96, 3), dtype=np.uint8)


def graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])  # +1 for every graph dynamo compiles


def test_compiled_generation_equals_eager(compiled):
    eager = small_runtime("eager")
    video, config = frames(4), SessionConfig(seed=3, steps=4)
    want = eager.generate(video, 4.0, "a bell rings on the right", config=config)
    got = compiled.generate(video, 4.0, "a bell rings on the right", config=config)
    assert got.shape == want.shape and np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, atol=2e-4 * np.abs(want).max())


def test_after_warm_up_a_live_stream_compiles_nothing(compiled):
    before = graphs()
    window = compiled.generator.config.lm_window
    session = compiled.session(SessionConfig(seed=1, steps=2))
    video = frames(3 * window)
    for i, frame in enumerate(video):  # past the LM window: the cache fills, then trims
        session.set_caption(None if i % 3 else f"a dog barks {i} metres away")
        session.set_panorama(frame, i * compiled.patch_seconds)
        assert session.next_chunk() is not None
    session.close()
    samplers = [PatchSampler(compiled, SessionConfig(steps=2)) for _ in range(3)]
    cues = compiled.frame_cues(compiled.frame_to_canvas(video[0])[None])
    text, mask, _ = compiled.caption_tokens("rain on a tin roof")
    for batch in (2, 3):  # the batcher's LocDiT calls: one graph for any number of sessions
        requests = [s.prepare(cues, text, mask) for s in samplers[:batch]]
        for sampler, x in zip(samplers, sample_patches(compiled, requests), strict=False):
            sampler.finish(x)
    assert graphs() == before


def test_a_machine_that_cannot_compile_falls_back_to_eager(monkeypatch, caplog):
    from swansphere.generation import accel

    def broken_compile(module, **options):
        def call(*args, **kwargs):
            raise RuntimeError("InductorError: no working C++ compiler found")

        return call

    monkeypatch.setattr(accel.torch, "compile", broken_compile)
    with caplog.at_level("WARNING"):
        runtime = small_runtime("compile")
    assert runtime.accel.mode == "eager"
    assert any("torch.compile unavailable" in r.message for r in caplog.records)
    out = runtime.generate(None, None, "rain", 0.4, SessionConfig(steps=2))
    assert np.isfinite(out).all() and np.abs(out).max() > 0
