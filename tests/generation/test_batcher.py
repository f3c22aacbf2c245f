"""Cross-session batching of the LocDiT sampler (generation/session.py ``sample_patches``,
generation/batcher.py): batched sessions equal the same sessions run alone, sessions join
and leave a batcher freely, and one session's failure leaves the others untouched (tiny
preset, random generator weights: the same code path as a trained one)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from swansphere.generation import GeneratorRuntime, SessionBatcher, SessionConfig
from swansphere.generation.accel import Accelerated
from swansphere.generation.session import sample_patches

PATCHES = 4


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (2, PATCHES, 48, 96, 3), dtype=np.uint8)


def make_sessions(runtime, frames, batcher=None, steps=(3, 3, 3)) -> list:
    """Three different streams: video + caption, video only (own guidance), caption only."""
    configs = [
        SessionConfig(seed=1, steps=steps[0]),
        SessionConfig(seed=2, steps=steps[1], guidance_text=2.0, guidance_video=0.5),
        SessionConfig(seed=3, steps=steps[2], guidance_text=1.2),
    ]
    sessions = [runtime.session(c, batcher) for c in configs]
    sessions[0].set_caption("a dog barks on the left")
    sessions[2].set_caption("rain on a tin roof")
    for i in range(PATCHES):
        t = i * runtime.patch_seconds
        sessions[0].set_panorama(frames[0, i], t)
        sessions[1].set_panorama(frames[1, i], t)
    return sessions


def alone(runtime, frames, index: int, steps=(3, 3, 3), patches: int = PATCHES) -> np.ndarray:
    s = make_sessions(runtime, frames, steps=steps)[index]
    return np.concatenate([s.next_chunk() for _ in range(patches)], axis=1)


@pytest.fixture(scope="module")
def references(runtime, frames) -> list[np.ndarray]:
    return [alone(runtime, frames, i) for i in range(3)]


def test_batched_sessions_equal_each_session_alone(runtime, frames, references):
    sessions = make_sessions(runtime, frames)
    out = [[] for _ in sessions]
    for _ in range(PATCHES):
        requests = [s.prepare_chunk() for s in sessions]
        latents = sample_patches(runtime, requests)
        for s, x, chunks in zip(sessions, latents, out, strict=True):
            chunks.append(s.finish_chunk(x))
    for got, ref in zip(out, references, strict=True):
        np.testing.assert_allclose(np.concatenate(got, axis=1), ref, atol=1e-5)
    assert all(s.stats["batch"] == 3 for s in sessions)
    # The three streams differ: the test would not notice a mixed-up row otherwise.
    assert not np.allclose(references[0], references[1])
    assert not np.allclose(references[1], references[2])


def test_different_step_counts_run_in_their_own_groups(runtime, frames):
    steps = (3, 2, 3)
    sessions = make_sessions(runtime, frames, steps=steps)
    latents = sample_patches(runtime, [s.prepare_chunk() for s in sessions])
    chunks = [s.finish_chunk(x) for s, x in zip(sessions, latents, strict=True)]
    assert [s.stats["batch"] for s in sessions] == [2, 1, 2]
    for i, chunk in enumerate(chunks):
        np.testing.assert_allclose(chunk, alone(runtime, frames, i, steps, patches=1), atol=1e-5)


def test_a_fixed_shape_engine_samples_each_session_alone(runtime, frames, references):
    saved = runtime.accel
    runtime.accel = Accelerated(saved.lm, saved.dit, "tensorrt")  # built for 3 rows
    try:
        sessions = make_sessions(runtime, frames)
        latents = sample_patches(runtime, [s.prepare_chunk() for s in sessions])
        chunks = [s.finish_chunk(x) for s, x in zip(sessions, latents, strict=True)]
    finally:
        runtime.accel = saved
    assert all(s.stats["batch"] == 1 for s in sessions)
    for chunk, ref in zip(chunks, references, strict=True):
        np.testing.assert_allclose(chunk, ref[:, : chunk.shape[1]], atol=1e-5)


def test_the_batcher_waits_for_every_announced_session(runtime, frames, references):
    batcher = SessionBatcher(runtime, window_s=10.0)  # only the announcements end the wait
    sessions = make_sessions(runtime, frames, batcher)
    # First patches never wait for other sessions; batch the second ones.
    firsts = [s.next_chunk() for s in sessions]
    try:
        with batcher.patch(), batcher.patch(), batcher.patch():  # three sessions announce
            requests = [s.prepare_chunk() for s in sessions]
            results: list = [None] * 3
            threads = [
                threading.Thread(target=lambda i=i, r=r: results.__setitem__(i, batcher.sample(r)))
                for i, r in enumerate(requests)
            ]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join(5.0)
            assert time.perf_counter() - started < 5.0
        chunks = [s.finish_chunk(x) for s, x in zip(sessions, results, strict=True)]
    finally:
        batcher.close()
    assert batcher.stats()["max_batch"] == 3 and batcher.stats()["batches"] == 4
    for first, chunk, ref in zip(firsts, chunks, references, strict=True):
        n = first.shape[1]
        np.testing.assert_allclose(first, ref[:, :n], atol=1e-5)
        np.testing.assert_allclose(chunk, ref[:, n : 2 * n], atol=1e-5)


def test_a_first_patch_does_not_wait_for_other_sessions(runtime, frames):
    batcher = SessionBatcher(runtime, window_s=10.0)
    session = make_sessions(runtime, frames, batcher)[0]
    try:
        with batcher.patch():  # another session is busy and has not handed in its request
            started = time.perf_counter()
            assert session.next_chunk().shape == (4, runtime.patch_samples)
            assert time.perf_counter() - started < 5.0  # not the 10 s window
    finally:
        batcher.close()


def test_sessions_join_and_leave_a_batcher(runtime, frames, references):
    """Session 0 runs all patches, 1 leaves after two, 2 joins after two; a long window
    must not slow anyone down once the others have left (a session alone never waits)."""
    batcher = SessionBatcher(runtime, window_s=2.0)
    sessions = make_sessions(runtime, frames, batcher)
    plan = {0: range(PATCHES), 1: range(2), 2: range(PATCHES)}
    gate = threading.Event()
    out: dict[int, list] = {i: [] for i in plan}
    errors: list[BaseException] = []

    def drive(i: int) -> None:
        try:
            if i == 2:
                gate.wait(30)
            for p in plan[i]:
                out[i].append(sessions[i].next_chunk())
                if i == 1 and p == 1:
                    sessions[i].close()  # leaves
                if i == 0 and p == 1:
                    gate.set()  # session 2 joins
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drive, args=(i,)) for i in plan]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.perf_counter() - started
    batcher.close()
    assert not errors
    assert elapsed < 2.0 * 4  # never a full window per patch
    for i, ref in enumerate(references):
        got = np.concatenate(out[i], axis=1)
        np.testing.assert_allclose(got, ref[:, : got.shape[1]], atol=1e-5)
    stats = batcher.stats()
    assert stats["patches"] == sum(len(r) for r in plan.values()) and stats["waiting"] == 0


def test_one_sessions_failure_leaves_the_others_untouched(runtime, frames, references):
    sessions = make_sessions(runtime, frames)
    requests = [s.prepare_chunk() for s in sessions]
    requests[1].h = torch.zeros(3, 7)  # a broken request (wrong LM width): cannot be batched
    batcher = SessionBatcher(runtime, window_s=10.0)
    results: list = [None] * 3
    failures: list = [None] * 3

    def run(i: int) -> None:
        try:
            results[i] = batcher.sample(requests[i])
        except Exception as exc:
            failures[i] = exc

    try:
        with batcher.patch(), batcher.patch(), batcher.patch():
            threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
    finally:
        batcher.close()
    assert failures[0] is None and failures[2] is None and failures[1] is not None
    for i in (0, 2):
        chunk = sessions[i].finish_chunk(results[i])
        np.testing.assert_allclose(chunk, references[i][:, : chunk.shape[1]], atol=1e-5)
    # The failed session drops its patch and goes on as if it had never been tried.
    sessions[1].abort_chunk()
    again = np.concatenate([sessions[1].next_chunk() for _ in range(2)], axis=1)
    np.testing.assert_allclose(again, references[1][:, : again.shape[1]], atol=1e-5)


def test_a_nan_session_does_not_leak_into_its_batch(runtime, frames, references):
    sessions = make_sessions(runtime, frames)
    requests = [s.prepare_chunk() for s in sessions]
    requests[0].noise = torch.full_like(requests[0].noise, float("nan"))
    latents = sample_patches(runtime, requests)
    assert torch.isnan(latents[0]).all()
    for i in (1, 2):
        chunk = sessions[i].finish_chunk(latents[i])
        np.testing.assert_allclose(chunk, references[i][:, : chunk.shape[1]], atol=1e-5)


def test_a_closed_batcher_samples_in_the_calling_thread(runtime, frames, references):
    batcher = SessionBatcher(runtime)
    batcher.close()
    s = make_sessions(runtime, frames, batcher)[2]
    np.testing.assert_allclose(s.next_chunk(), references[2][:, : runtime.patch_samples], atol=1e-5)


def test_bad_batcher_settings_and_mismatched_runtimes_are_refused(runtime):
    from swansphere.errors import InputError

    with pytest.raises(InputError, match="batch window"):
        SessionBatcher(runtime, window_s=float("nan"))
    with pytest.raises(InputError, match="max_sessions"):
        SessionBatcher(runtime, max_sessions=0)
    s = runtime.session(SessionConfig(steps=2))
    s.set_caption("rain")
    request = s.prepare_chunk()
    with pytest.raises(RuntimeError, match="not finished"):
        s.prepare_chunk()
    other = object.__new__(GeneratorRuntime)  # a different runtime's batcher
    with pytest.raises(ValueError, match="another runtime"):
        SessionBatcher(other).sample(request)
    with pytest.raises(ValueError, match="another runtime"):
        GeneratorRuntime.session(runtime, SessionConfig(), SessionBatcher(other))
