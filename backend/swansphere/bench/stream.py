"""Streaming generator benchmark: time to first chunk and real-time factor.

``ttfc_ms``: from a new session's first camera frame (a 1024 x 512 RGB panorama) in
to its first FOA chunk out: resizing and encoding the frame, the LM step, 20 guided
LocDiT steps and the VAE decode are inside. The caption arrives before the first frame
(with the session's configuration) and its encoding is reported beside it as
``caption_ms`` (a caption not seen before); with ``caption=False`` the sessions are
video-only, and the LocDiT runs the 2 guidance rows that then differ
(:func:`~swansphere.models.generator.guidance_rows`), not 3 (``guidance_rows`` in the
result). ``rtf``: compute time over audio time for patches after the first few of a long
session fed a frame per patch. ``euler_chunk``: the Euler steps per compiled graph under
``accel compile`` and ``aot`` (:data:`~swansphere.generation.accel.EULER_CHUNK`), null
otherwise.

``concurrent`` (with ``sessions_concurrent`` N > 1): N sessions, each fed its own frames and
caption, produce a patch each, once one after the other (``alone``) and once with their
LocDiT sampling as one batch (``batched``, :func:`~swansphere.generation.session.sample_patches`,
what the server's batcher runs); median wall time per round of N patches, and the part
spent in the LocDiT loop.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from swansphere.bench.machine import cpu_description
from swansphere.generation import GeneratorRuntime, SessionConfig
from swansphere.generation.session import batchable, sample_patches
from swansphere.models.generator import count_parameters

FRAME_SHAPE = (512, 1024, 3)  # what an engine sends (before our resize)


def _runtime(preset: str, model: str | None, device: str, accel: str) -> GeneratorRuntime:
    if model:
        return GeneratorRuntime.load(model, device, accel)
    return GeneratorRuntime.random(preset, device=device, accel=accel)


def bench_stream(
    preset: str = "tiny",
    model: str | None = None,
    steps: int | None = None,
    threads: int | None = None,
    sessions: int = 8,
    patches: int = 40,
    device: str = "cpu",
    accel: str = "eager",
    sessions_concurrent: int = 1,
    caption: bool = True,
) -> dict:
    """Measure TTFC over ``sessions`` fresh sessions and the RTF over ``patches`` patches;
    with ``sessions_concurrent`` > 1 also N sessions batched vs alone."""
    if threads:
        torch.set_num_threads(threads)
    runtime = _runtime(preset, model, device, accel)
    config = SessionConfig(seed=0, steps=steps)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, *FRAME_SHAPE), dtype=np.uint8)
    sync = torch.cuda.synchronize if runtime.device.type == "cuda" else (lambda: None)

    # Warm-up (first-call allocations, compiled graphs) outside the measurements.
    warmup_s = runtime.warm_up()
    warm = runtime.session(config)
    warm.set_caption("warm-up caption")
    warm.set_panorama(frames[0], 0.0)
    for _ in range(3):
        warm.next_chunk()
    warm.close()

    ttfc, splits, caption_ms = [], [], []
    for i in range(sessions):
        s = runtime.session(config)
        started = time.perf_counter()
        if caption:
            s.set_caption(f"a dog barks {i + 1} metres away on the left, rain all around")
        caption_ms.append(1e3 * (time.perf_counter() - started))
        sync()
        started = time.perf_counter()
        s.set_panorama(frames[i % len(frames)], 0.0)
        ingest_ms = 1e3 * (time.perf_counter() - started)
        s.next_chunk()
        sync()
        ttfc.append(1e3 * (time.perf_counter() - started))
        st = s.stats
        splits.append((st["lm_ms"], st["dit_ms"], ingest_ms + st["video_ms"] + st["decode_ms"]))
        s.close()

    s = runtime.session(config)
    if caption:
        s.set_caption("a siren passes from left to right")
    totals = []
    for t in range(patches):
        s.set_panorama(frames[t % len(frames)], t * s.patch_seconds)
        sync()
        started = time.perf_counter()
        s.next_chunk()
        sync()
        totals.append(time.perf_counter() - started)
    s.close()
    steady = totals[3:] if len(totals) > 6 else totals
    patch_s = s.patch_seconds
    split = np.median(np.array(splits), axis=0)
    gen = runtime.generator
    return {
        "preset": preset if model is None else gen_preset_name(gen.config),
        "model": runtime.name,
        "ttfc_ms": round(float(np.median(ttfc)), 2),
        "ttfc_max_ms": round(float(np.max(ttfc)), 2),
        "ttfc_split_ms": {
            "lm": round(float(split[0]), 2),
            "locdit": round(float(split[1]), 2),
            "encode_decode": round(float(split[2]), 2),
        },
        "caption_ms": round(float(np.median(caption_ms)), 2) if caption else None,
        "rtf": round(float(np.sum(steady) / (len(steady) * patch_s)), 4),
        "patch_ms": round(1e3 * float(np.median(steady)), 2),
        "patch_audio_ms": round(1e3 * patch_s, 2),
        "steps": config.steps or gen.config.steps,
        "guidance": "three-way",
        # LocDiT rows per step: video-only sessions run 2 (a TensorRT engine always 3)
        "guidance_rows": 3 if caption or not batchable(runtime) else 2,
        "accel": runtime.accel.mode,
        # Euler steps per compiled graph (accel compile, aot; null: one call for all steps)
        "euler_chunk": getattr(runtime.accel.euler, "size", None),
        "warmup_s": round(warmup_s, 2),  # GeneratorRuntime.warm_up: compiles under accel
        "device": _device_name(runtime.device),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "params": {
            "generator": count_parameters(gen),
            "vae": count_parameters(runtime.vae),
            "svac": count_parameters(runtime.svac),
        },
        "sessions": sessions,
        "patches": patches,
        **(
            {"concurrent": _concurrent(runtime, config, frames, sessions_concurrent, patches, sync)}
            if sessions_concurrent > 1
            else {}
        ),
    }


def _concurrent(runtime, config, frames, n: int, rounds: int, sync) -> dict:
    """N sessions, a patch each per round: alone (one after the other) vs batched LocDiT.
    The two ways alternate round by round, so a change in machine load hits both."""
    group = []
    for i in range(n):
        s = runtime.session(SessionConfig(seed=i, steps=config.steps))
        s.set_caption(f"a dog barks {i + 1} metres away on the left, rain all around")
        group.append(s)
    times: dict[str, list[float]] = {"alone": [], "batched": []}
    locdit: dict[str, list[float]] = {"alone": [], "batched": []}
    for r in range(rounds):
        for s in group:
            s.set_panorama(frames[r % len(frames)], r * s.patch_seconds)
        way = "alone" if r % 2 == 0 else "batched"
        sync()
        started = time.perf_counter()
        if way == "alone":
            dit = 0.0
            for s in group:
                s.next_chunk()
                dit += s.stats["dit_ms"]
        else:
            requests = [s.prepare_chunk() for s in group]
            dit_start = time.perf_counter()
            latents = sample_patches(runtime, requests)
            sync()
            dit = 1e3 * (time.perf_counter() - dit_start)
            for s, x in zip(group, latents, strict=True):
                s.finish_chunk(x)
        sync()
        if r >= 2:  # first rounds: first-call allocations of the batch shapes
            times[way].append(1e3 * (time.perf_counter() - started))
            locdit[way].append(dit)
    for s in group:
        s.close()
    med = {k: float(np.median(v)) for k, v in times.items()}
    dit_med = {k: float(np.median(v)) for k, v in locdit.items()}
    return {
        "sessions": n,
        "round_ms_alone": round(med["alone"], 2),
        "round_ms_batched": round(med["batched"], 2),
        "locdit_ms_alone": round(dit_med["alone"], 2),
        "locdit_ms_batched": round(dit_med["batched"], 2),
        "speedup": round(med["alone"] / med["batched"], 3),
        "locdit_speedup": round(dit_med["alone"] / dit_med["batched"], 3),
        "rtf_batched": round(med["batched"] / (1e3 * n * runtime.patch_seconds), 4),
        "rounds": rounds,
    }


def gen_preset_name(config) -> str:
    from swansphere.models.generator import GENERATOR_PRESETS

    for name, preset in GENERATOR_PRESETS.items():
        if preset == config:
            return name
    return "custom"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {cpu_description(torch.backends.cpu.get_cpu_capability())}"


__all__ = ["bench_stream"]
