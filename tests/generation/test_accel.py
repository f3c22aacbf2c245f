"""Acceleration paths. ``--accel compile`` on CPU: the compiled LM step and LocDiT give
eager's audio (to float rounding), and after :meth:`GeneratorRuntime.warm_up` a live
stream compiles nothing more (no seconds-long stall mid-stream: the KV cache filling and
trimming, captions coming and going, two sessions batched). ``--accel aot``: the
AOTInductor packages give eager's audio, alone and batched, a second start loads them
without compiling, their keys follow what they are built from, and a machine that cannot
build them falls back to eager. The LM step with a static KV
cache (what ``--accel tensorrt`` compiles): a session whose LM runs through
:class:`FixedWindowLM` and :class:`LMStep` streams what the plain LM streams, past the
window's trim too, the engines get exactly the shapes they are compiled for (on the CPU,
with the eager modules in the engines' place), and the engine cache compiles each module
once and loads the saved program after (``torch.export`` standing in for TensorRT). A
small generator keeps it short."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from swansphere.generation import GeneratorRuntime, SessionConfig
from swansphere.generation.accel import (
    ACCEL_MODES,
    EULER_CHUNK,
    Accelerated,
    AOTPackage,
    ChunkedEuler,
    FixedWindowLM,
    _aot_key,
    _dit_example,
    _euler_example,
    _lm_example,
    _tensorrt_engine,
)
from swansphere.generation.session import PatchSampler, sample_patches
from swansphere.models.bundle import load_bundle
from swansphere.models.generator import (
    GENERATOR_PRESETS,
    EulerSteps,
    KVCache,
    LMStep,
    LocDiTStep,
    SpatialGenerator,
    WindowKVCache,
)

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
    # 5 steps: one compiled chunk of EULER_CHUNK, then one step through the compiled step
    session = compiled.session(SessionConfig(seed=1, steps=EULER_CHUNK + 1))
    video = frames(3 * window)
    for i, frame in enumerate(video):  # past the LM window: the cache fills, then trims
        # no caption at first (2 guidance rows), then captions coming and going (3)
        session.set_caption(None if i % 3 != 2 else f"a dog barks {i} metres away")
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


def test_chunked_euler_steps_are_the_step_by_step_loop(compiled):
    """ChunkedEuler runs whole chunks through one callable and the remainder through
    another: over 2 chunks and 2 steps the result is the plain loop's, and each part gets
    the steps it should (eager EulerSteps standing in for the compiled ones)."""
    eager = small_runtime("eager")
    step = LocDiTStep(eager.generator.dit).eval()
    x, blocks, final, k, v, dts, weights = _euler_example(eager, 3, steps=10)
    torch.manual_seed(4)
    x, blocks, final = torch.randn_like(x), 0.5 * torch.randn_like(blocks), torch.randn_like(final)
    dts = torch.rand(10) / 10
    calls = []

    def counted(name):
        def run(*args):
            calls.append((name, args[1].shape[0]))
            return EulerSteps(step)(*args)

        return run

    with torch.inference_mode():
        want = EulerSteps(step)(x, blocks, final, k, v, dts, weights)
        got = ChunkedEuler({3: counted("chunk")}, counted("rest"), 4)(
            x, blocks, final, k, v, dts, weights
        )
    assert calls == [("chunk", 4), ("chunk", 4), ("rest", 2)]
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert compiled.accel.euler.size == EULER_CHUNK  # what --accel compile runs


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


# --- ahead of time (AOTInductor) -----------------------------------------------------


@pytest.fixture(scope="module")
def ahead(tmp_path_factory) -> GeneratorRuntime:
    """A runtime under ``accel aot`` whose packages are built into a fresh cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SWANSPHERE_CACHE", str(tmp_path_factory.mktemp("aot_cache")))
        runtime = small_runtime("aot")
    assert runtime.accel.mode == "aot"
    return runtime


def test_aot_packages_give_eager_audio_and_batch_sessions(ahead):
    """Offline generation (a 4-step chunk, then the compiled step for the remainder) and
    two sessions batched through the step built for any number of rows give eager's
    audio to float rounding."""
    assert isinstance(ahead.accel.lm.step, AOTPackage)
    assert sorted(ahead.accel.euler.chunks) == [1, 2, 3] and ahead.accel.euler.size == EULER_CHUNK
    eager = small_runtime("eager")
    video, config = frames(4), SessionConfig(seed=3, steps=EULER_CHUNK + 2)
    want = eager.generate(video, 4.0, "a bell rings on the right", config=config)
    got = ahead.generate(video, 4.0, "a bell rings on the right", config=config)
    assert got.shape == want.shape and np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, atol=2e-4 * np.abs(want).max())
    cues = eager.frame_cues(eager.frame_to_canvas(video[0])[None])
    text, mask, _ = eager.caption_tokens("rain on a tin roof")
    patches = []
    for runtime in (eager, ahead):
        samplers = [PatchSampler(runtime, SessionConfig(seed=i, steps=3)) for i in range(2)]
        requests = [s.prepare(cues, text, mask) for s in samplers]
        patches.append(torch.cat(sample_patches(runtime, requests)))
        assert [r.batch for r in requests] == [2, 2]
    torch.testing.assert_close(patches[1], patches[0], rtol=1e-4, atol=1e-4)


def test_aot_packages_load_from_the_cache_without_compiling(ahead, monkeypatch, caplog):
    """A second start finds every package under its key and builds nothing; the cache
    holds the three packages and no temporary file."""
    folder = ahead.accel.lm.step.path.parent
    saved = sorted(p.name.rsplit("_", 1)[0] for p in folder.iterdir())
    assert saved == ["euler4", "lmstep", "locdit_step"]

    def no_compile(*args, **kwargs):
        raise AssertionError("a cached package was compiled again")

    monkeypatch.setenv("SWANSPHERE_CACHE", str(folder.parent))
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", no_compile)
    with caplog.at_level("WARNING"):
        again = small_runtime("aot")
    assert again.accel.mode == "aot", [r.message for r in caplog.records]
    assert all(re.fullmatch(r"[a-z0-9_]+_[0-9a-f]{16}\.pt2", p.name) for p in folder.iterdir())


def test_aot_keys_follow_weights_shapes_and_threads():
    runtime = small_runtime("eager")
    step = LocDiTStep(runtime.generator.dit).eval()
    example = _dit_example(runtime)
    key = _aot_key(step, example)
    assert _aot_key(step, example) == key
    assert _aot_key(step, _dit_example(runtime, rows=2)) != key
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert _aot_key(step, example) != key  # Inductor's loops are built for a count
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        runtime.generator.dit.final.bias.add_(1.0)
    assert _aot_key(step, example) != key


def test_a_machine_that_cannot_build_packages_falls_back_to_eager(monkeypatch, tmp_path, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("InductorError: no working C++ compiler found")

    monkeypatch.setenv("SWANSPHERE_CACHE", str(tmp_path))
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", broken)
    with caplog.at_level("WARNING"):
        runtime = small_runtime("aot")
    assert runtime.accel.mode == "eager"
    assert any("accel aot unavailable" in r.message for r in caplog.records)
    assert not list((tmp_path / "engines").iterdir())  # no partial package left behind


def test_chunked_euler_leaves_a_row_count_without_a_chunk_to_the_step():
    calls = []

    def counted(name):
        def run(x, blocks, *args):
            calls.append((name, blocks.shape[0]))
            return x + 1

        return run

    x = torch.zeros(1, 4, 8)
    blocks = torch.zeros(6, 1, 6, 1, 1, 8)
    out = ChunkedEuler({3: counted("chunk")}, counted("rest"), 4)(
        x, blocks, blocks[:, 0, :2], x, x, torch.zeros(6), torch.ones(1, 1, 1)
    )
    assert calls == [("rest", 6)] and out.eq(1).all()


def test_the_command_line_offers_every_accel_mode():
    from swansphere.cli.common import ACCEL_CHOICES

    assert ACCEL_CHOICES == ACCEL_MODES


# --- the static-KV-cache LM step ----------------------------------------------------


@pytest.fixture(scope="module")
def runtimes():
    plain = small_runtime("eager")
    fixed = small_runtime("eager")  # the same seeded weights
    step = LMStep(fixed.generator.lm).eval()
    fixed.accel = Accelerated(FixedWindowLM(step, fixed.generator.config), fixed.accel.dit, "eager")
    return plain, fixed


def stream_patches(runtime, video: np.ndarray, patches: int) -> np.ndarray:
    session = runtime.session(SessionConfig(seed=5, steps=2))
    session.set_caption("a bird sings above")
    chunks = []
    for i in range(patches):
        if i == patches // 2:
            session.set_caption(None)  # the caption goes: the text keys change mid-stream
        session.set_panorama(video[i % len(video)], i * session.patch_seconds)
        chunks.append(session.next_chunk())
    session.close()
    return np.concatenate(chunks, axis=1)


def test_a_fixed_window_lm_streams_what_the_plain_lm_streams(runtimes):
    plain, fixed = runtimes
    assert plain.generator.config.lm_window == 4  # 10 patches run past the trim
    video = frames(3)
    expected, got = stream_patches(plain, video, 10), stream_patches(fixed, video, 10)
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_step_gets_the_shapes_the_engines_are_compiled_for(runtimes):
    _, fixed = runtimes
    seen: dict[str, list] = {"lm": [], "dit": []}
    lm, dit = fixed.accel.lm, fixed.accel.dit

    def lm_step(*args):
        seen["lm"].append([(a.shape, a.dtype) for a in args])
        return lm.step(*args)

    def dit_step(*args):
        seen["dit"].append([(a.shape, a.dtype) for a in args])
        return dit(*args)

    # As under TensorRT: the LocDiT runs all three guidance rows (engines built for them).
    fixed.accel = Accelerated(FixedWindowLM(lm_step, fixed.generator.config), dit_step, "tensorrt")
    try:
        stream_patches(fixed, frames(2), 6)
    finally:
        fixed.accel = Accelerated(lm, dit, "eager")
    for name, example in (("lm", _lm_example(fixed)), ("dit", _dit_example(fixed))):
        expected = [(a.shape, a.dtype) for a in example]
        assert seen[name] and all(call == expected for call in seen[name]), name


def test_empty_window_slots_are_masked():
    """Whatever an empty slot holds, the step attends only to the valid ones: a first
    step over a window of garbage equals the plain LM's first step."""
    runtime = small_runtime("eager")
    lm, cfg = runtime.generator.lm, runtime.generator.config
    torch.manual_seed(2)
    x = torch.randn(3, 1, cfg.lm_dim)
    text = torch.randn(3, 6, cfg.lm_dim)
    mask = torch.ones(3, 6, dtype=torch.bool)
    text_kv = lm.text_kv(text)
    shape = (cfg.lm_layers, 3, cfg.lm_heads, cfg.lm_window - 1, cfg.lm_dim // cfg.lm_heads)
    with torch.no_grad():
        expected = lm(x, text, mask, KVCache(cfg.lm_layers), text_kv)
        h, new_k, new_v = LMStep(lm)(
            x, text, mask, 1e3 * torch.randn(shape), 1e3 * torch.randn(shape),
            torch.zeros(cfg.lm_window - 1, dtype=torch.bool),
            torch.stack([k for k, _ in text_kv]), torch.stack([v for _, v in text_kv]),
        )  # fmt: skip
    torch.testing.assert_close(h, expected)
    assert new_k.shape == new_v.shape == (*shape[:3], 1, shape[4])
    cache = WindowKVCache(torch.zeros(shape), torch.zeros(shape), torch.ones(shape[3], dtype=bool))
    assert cache.attention_mask.shape == (1, cfg.lm_window) and bool(cache.attention_mask.all())
    with pytest.raises(ValueError, match="one patch"):
        FixedWindowLM(LMStep(lm), cfg)(torch.zeros(3, 2, cfg.lm_dim), text, mask, KVCache(1), [])


class ExportBackend:
    """A stand-in for ``torch_tensorrt`` on the CPU: "compiles" with ``torch.export``
    (the first stage of Torch-TensorRT's dynamo frontend) and saves the ExportedProgram."""

    def __init__(self) -> None:
        self.compiled: list[str] = []

    def compile(self, module, ir: str, inputs: list, enabled_precisions: set):
        assert ir == "dynamo"
        self.compiled.append(type(module).__name__)
        return torch.export.export(module, tuple(inputs)).module()

    def save(self, engine, path: str, inputs: list) -> None:
        torch.export.save(torch.export.export(engine, tuple(inputs)), path)


def test_engines_export_compile_once_and_load_from_the_cache(monkeypatch, tmp_path):
    """Both fixed-shape modules export whole (no graph break or data-dependent shape), and
    the engine cache compiles each once, then loads the saved program, which computes
    what the module does."""
    monkeypatch.setenv("SWANSPHERE_CACHE", str(tmp_path))
    runtime = small_runtime("eager")
    modules = {
        "lmstep": (LMStep(runtime.generator.lm).eval(), _lm_example(runtime)),
        "locdit": (LocDiTStep(runtime.generator.dit).eval(), _dit_example(runtime)),
    }
    backend = ExportBackend()
    for name, (module, example) in modules.items():
        first = _tensorrt_engine(module, example, name, backend)
        again = _tensorrt_engine(module, example, name, backend)
        inputs = tuple(torch.randn_like(a) if a.is_floating_point() else a for a in example)
        with torch.no_grad():
            expected = module(*inputs)
            for engine in (first, again):
                got = engine(*inputs)
                for a, b in zip(
                    got if isinstance(got, tuple) else (got,),
                    expected if isinstance(expected, tuple) else (expected,),
                    strict=True,
                ):
                    torch.testing.assert_close(a, b)
    assert backend.compiled == ["LMStep", "LocDiTStep"]  # the second start loads
    saved = sorted(p.name.split("_")[0] for p in (tmp_path / "engines").iterdir())
    assert saved == ["lmstep", "locdit"]  # no .tmp left behind
