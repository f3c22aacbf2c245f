"""Inference acceleration of the two per-patch networks: the Spatial LM step and the
LocDiT sampler step (``--accel eager|compile|aot|tensorrt``).

- eager: plain PyTorch.
- compile: ``torch.compile`` of both networks (Inductor; on CUDA with
  ``mode="reduce-overhead"``, which captures CUDA graphs for the fixed-shape LocDiT). A
  session's Euler loop runs :data:`EULER_CHUNK` steps per compiled graph
  (:class:`~swansphere.models.generator.EulerSteps`), so Inductor fuses across steps and
  Python runs once per chunk; batched sessions and a remainder of fewer steps run the
  compiled single step.
- aot: the same graphs compiled ahead of time by AOTInductor (``torch.export``, then
  Inductor's C++ or CUDA code built into a shared library): the LocDiT step (any number
  of guidance rows, for batched sessions), one session's :data:`EULER_CHUNK`-step Euler
  chunks (any number of rows too), and the LM step with a static KV cache
  (:class:`~swansphere.models.generator.LMStep` through :class:`FixedWindowLM`). Each is
  built once, saved as a ``.pt2`` package in the cache folder under a key of everything
  that shapes it (the weights, the source of the network's classes, the input shapes,
  torch's version, the CPU's vector instructions and the thread count) and loaded in
  milliseconds by later starts, where ``compile`` retraces and reloads for tens of
  seconds. The packages are machine code built on this machine: the cache folder must be
  as trusted as the Python environment.
- tensorrt: Torch-TensorRT's dynamo frontend compiles two fixed-shape networks to
  TensorRT engines, each saved as an ExportedProgram in the cache folder
  (``locdit_<hash>.ep``, ``lmstep_<hash>.ep``) and reloaded on the next start instead of
  recompiling: the LocDiT sampler step (3 guidance rows, one patch plus context) and the
  LM step with a static KV cache (:class:`~swansphere.models.generator.LMStep`: the
  window's past keys and values as fixed-shape inputs, empty slots masked), which
  :class:`FixedWindowLM` feeds from the session's own cache. Install on an NVIDIA
  machine with
  ``pip install -e '.[tensorrt]' --extra-index-url https://download.pytorch.org/whl/cu128``
  (a torch-tensorrt build matching the installed torch; see README).

When the requested backend cannot run (no CUDA, torch-tensorrt missing or failing), one
log line says so and the eager path is used; generation never fails because of it.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from swansphere.cache import cache_root
from swansphere.errors import InputError
from swansphere.models.generator import EulerSteps, KVCache, LMStep, LocDiTStep

log = logging.getLogger(__name__)

ACCEL_MODES = ("eager", "compile", "aot", "tensorrt")
# Euler steps per compiled graph under ``compile`` and ``aot``. One patch's 20 steps with
# the shipped weights on one CPU thread, against eager in the same process, under
# ``compile``: step by step 0.80-0.88 of eager's time, 4 steps per graph 0.68, all 20 in
# one graph 0.68 (whose first compile took 262 s against about 30 s for 4); an ``aot``
# 4-step chunk 0.58.
EULER_CHUNK = 4


@dataclass
class Accelerated:
    """The callables a sampler uses: ``lm(x, text, mask, cache, text_kv)`` (SpatialLM),
    ``dit(x, blocks, final, context_k, context_v)`` (one sampler step,
    :meth:`LocDiT.velocity_modulated`) and ``euler(x, blocks, final, context_k, context_v,
    dts, weights)`` (one session's Euler steps, as :class:`EulerSteps`; by default
    ``stepwise``); ``stepwise`` is :class:`EulerSteps` over ``dit``, step by step, which
    batched sessions run; ``mode`` is what runs."""

    lm: Callable[..., torch.Tensor]
    dit: Callable[..., torch.Tensor]
    mode: str
    euler: Callable[..., torch.Tensor] | None = None
    stepwise: EulerSteps = field(init=False)

    def __post_init__(self) -> None:
        self.stepwise = EulerSteps(self.dit)
        if self.euler is None:
            self.euler = self.stepwise


class ChunkedEuler:
    """:class:`EulerSteps`' call, run ``size`` steps at a time through the compiled chunk
    for the call's guidance row count (``chunks``: rows -> an :class:`EulerSteps` compiled
    for ``size`` steps) and the remaining fewer than ``size`` steps, or all of them for a
    row count without a chunk, through ``rest``, so that no step count compiles a graph
    of its own."""

    def __init__(
        self,
        chunks: Mapping[int, Callable[..., torch.Tensor]],
        rest: Callable[..., torch.Tensor],
        size: int,
    ) -> None:
        self.chunks, self.rest, self.size = dict(chunks), rest, size

    def __call__(
        self,
        x: torch.Tensor,
        blocks: torch.Tensor,
        final: torch.Tensor,
        context_k: torch.Tensor,
        context_v: torch.Tensor,
        dts: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        steps, chunk = blocks.shape[0], self.chunks.get(weights.shape[0])
        whole = 0
        if chunk is not None:
            for whole in range(self.size, steps + 1, self.size):
                s = slice(whole - self.size, whole)
                x = chunk(x, blocks[s], final[s], context_k, context_v, dts[s], weights)
        if whole < steps:
            x = self.rest(x, blocks[whole:], final[whole:], context_k, context_v, dts[whole:],
                          weights)  # fmt: skip
        # A copy: under CUDA graphs (``reduce-overhead``) a chunk's output lives in the
        # graph's own buffer, which the next patch's replay overwrites, and the session
        # keeps this patch as the next ones' boundary context.
        return x.clone()


def cache_dir() -> Path:
    """Where compiled engines are kept: ``engines/`` under :func:`swansphere.cache.cache_root`."""
    return cache_root() / "engines"


def _weights_hash(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _dit_example(runtime: Any, expanded: bool = False, rows: int = 3) -> tuple[torch.Tensor, ...]:
    """LocDiT step inputs of one session's patch with ``rows`` guidance rows: x, block and
    output modulations (see :meth:`LocDiT.modulation_of`), context keys, values.
    ``expanded``: the context as the single-session sampler passes it, one row broadcast
    to all (a stride-0 view, which torch.compile specialises on)."""
    cfg, dev = runtime.generator.config, runtime.device
    f, d = cfg.patch_frames, cfg.latent_dim
    ctx = cfg.context_patches * f
    head_dim = cfg.dit_dim // cfg.dit_heads
    kv_shape = (cfg.dit_layers, 1 if expanded else rows, cfg.dit_heads, ctx, head_dim)
    k, v = torch.zeros(kv_shape, device=dev), torch.zeros(kv_shape, device=dev)
    if expanded:
        k, v = k.expand(-1, rows, -1, -1, -1), v.expand(-1, rows, -1, -1, -1)
    return (
        torch.zeros(rows, f, d, device=dev),
        torch.zeros(cfg.dit_layers, 6, rows, 1, cfg.dit_dim, device=dev),
        torch.zeros(2, rows, 1, cfg.dit_dim, device=dev),
        k,
        v,
    )


def _euler_example(runtime: Any, rows: int, steps: int = EULER_CHUNK) -> tuple[torch.Tensor, ...]:
    """:class:`EulerSteps` inputs of one session's ``steps`` steps with ``rows`` guidance
    rows (3, or 2 when two rows have had one condition all along), shaped and strided as
    the sampler passes them (a compiled chunk is specialised to both): the modulations
    from :meth:`LocDiT.modulation_of`, the context one row broadcast to all."""
    cfg, dev = runtime.generator.config, runtime.device
    *_, k, v = _dit_example(runtime, expanded=True, rows=rows)
    with torch.inference_mode():
        h, taus = torch.zeros(steps, rows, cfg.lm_dim, device=dev), torch.zeros(steps, rows)
        blocks, final = runtime.generator.dit.modulation_of(h, taus.to(dev))
    return (
        torch.zeros(1, cfg.patch_frames, cfg.latent_dim, device=dev),
        blocks,
        final,
        k,
        v,
        torch.zeros(steps, device=dev),
        torch.ones(rows, 1, 1, device=dev),
    )


class FixedWindowLM:
    """The sampler's LM call ``(x, text, text_mask, cache, text_kv) -> h`` through a
    fixed-shape step (an :class:`LMStep`, or its TensorRT engine): each call lays the
    session's :class:`KVCache` into the static window (its newest ``lm_window - 1``
    patches, oldest first, zeros and a False mask in the empty slots), runs the step and
    appends the patch's keys and values to the cache. The cache evolves as under the
    plain LM (trimmed to the window the same way), so sessions undo and trim it as ever;
    one patch per call."""

    def __init__(self, step: Callable[..., tuple[torch.Tensor, ...]], config: Any) -> None:
        self.step = step
        self.window = config.lm_window
        self.layers = config.lm_layers
        self.heads = config.lm_heads
        self.head_dim = config.lm_dim // config.lm_heads

    def __call__(
        self,
        x: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        cache: KVCache,
        text_kv: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        if x.shape[1] != 1:
            raise ValueError(f"a fixed-window LM step takes one patch, got {x.shape[1]}")
        past = self.window - 1
        cache.trim(past)  # room for this patch, as SpatialLM.forward makes it
        b, n = x.shape[0], (0 if cache.keys[0] is None else cache.keys[0].shape[2])
        shape = (self.layers, b, self.heads, past, self.head_dim)
        past_k, past_v = x.new_zeros(shape), x.new_zeros(shape)
        if n:
            past_k[..., past - n :, :] = torch.stack(cache.keys)
            past_v[..., past - n :, :] = torch.stack(cache.values)
        valid = torch.arange(past, device=x.device) >= past - n
        text_k = torch.stack([k for k, _ in text_kv])
        text_v = torch.stack([v for _, v in text_kv])
        h, new_k, new_v = self.step(x, text, text_mask, past_k, past_v, valid, text_k, text_v)
        for layer in range(self.layers):
            cache.append(layer, new_k[layer], new_v[layer])
        cache.length += 1
        return h


def _lm_example(runtime: Any) -> tuple[torch.Tensor, ...]:
    """LMStep inputs of one session's patch (3 guidance rows; see :class:`LMStep`)."""
    cfg, dev = runtime.generator.config, runtime.device
    rows, head_dim = 3, cfg.lm_dim // cfg.lm_heads
    text_len = runtime.caption_tokens(None)[0].shape[1] + 1  # + the null token
    past = (cfg.lm_layers, rows, cfg.lm_heads, cfg.lm_window - 1, head_dim)
    text_kv = (cfg.lm_layers, rows, cfg.lm_heads, text_len, head_dim)
    return (
        torch.zeros(rows, 1, cfg.lm_dim, device=dev),
        torch.zeros(rows, text_len, cfg.lm_dim, device=dev),
        torch.ones(rows, text_len, dtype=torch.bool, device=dev),
        torch.zeros(past, device=dev),
        torch.zeros(past, device=dev),
        torch.ones(cfg.lm_window - 1, dtype=torch.bool, device=dev),
        torch.zeros(text_kv, device=dev),
        torch.zeros(text_kv, device=dev),
    )


def _tensorrt_engine(
    module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], name: str, backend: Any = None
) -> Callable[..., Any]:
    """``module`` as a TensorRT engine for ``inputs``' shapes: compiled once, saved as
    ``<name>_<weights hash>.ep`` (atomically) and loaded from there on later starts.
    ``backend``: the ``torch_tensorrt`` module (the default; tests pass a stand-in)."""
    if backend is None:
        import torch_tensorrt as backend  # optional extra: NVIDIA machines only

    path = cache_dir() / f"{name}_{_weights_hash(module)}.ep"
    if path.is_file():
        log.info("loading TensorRT engine %s", path)
        return torch.export.load(str(path)).module()
    log.info("compiling %s with Torch-TensorRT (first start only)", name)
    engine = backend.compile(
        module, ir="dynamo", inputs=list(inputs), enabled_precisions={torch.float16, torch.float32}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".ep.tmp")
    backend.save(engine, str(tmp), inputs=list(inputs))
    os.replace(tmp, path)
    return engine


def accelerate(runtime: Any, mode: str = "eager") -> Accelerated:
    """The LM and LocDiT callables for ``mode`` (see the module docstring)."""
    if mode not in ACCEL_MODES:
        raise InputError(f"unknown accel mode {mode!r}; choose one of {', '.join(ACCEL_MODES)}")
    lm, dit = runtime.generator.lm, LocDiTStep(runtime.generator.dit).eval()
    if mode == "eager":
        return Accelerated(lm, dit, "eager")
    cuda = runtime.device.type == "cuda"
    if mode == "tensorrt":
        if not cuda:
            log.warning(
                "accel tensorrt needs a CUDA device (running on %s): using eager", runtime.device
            )
            return Accelerated(lm, dit, "eager")
        try:
            trt_dit = _tensorrt_engine(dit, _dit_example(runtime), "locdit")
            lm_step = LMStep(lm).eval()
            trt_lm = _tensorrt_engine(lm_step, _lm_example(runtime), "lmstep")
        except Exception as exc:  # torch-tensorrt absent or the compile failed: stay usable
            log.warning("accel tensorrt unavailable (%s: %s): using eager", type(exc).__name__, exc)
            return Accelerated(lm, dit, "eager")
        return Accelerated(FixedWindowLM(trt_lm, runtime.generator.config), trt_dit, "tensorrt")
    if mode == "aot":
        return _accelerate_aot(runtime, lm, dit)
    try:
        options = {"mode": "reduce-overhead"} if cuda else {}
        compiled_dit = torch.compile(dit, **options)
        # Static shapes: one graph per row count (3, or 2), each compiled below.
        chunk = torch.compile(EulerSteps(dit), dynamic=False, **options)
        # torch.compile compiles on the first call: make those calls here, so that a
        # machine that cannot compile (no C++ compiler for Inductor's CPU code, no Triton)
        # falls back now instead of failing inside a session's first patch, and no
        # session waits for a compile (tens of seconds for a chunk on 2 cores).
        log.info(
            "compiling the LocDiT step and its %d-step chunks with torch.compile "
            "(minutes on a small CPU without Inductor's cache, which later starts reuse)",
            EULER_CHUNK,
        )
        with torch.inference_mode():
            compiled_dit(*_dit_example(runtime, expanded=True))
            for rows in (3, 2):
                chunk(*_euler_example(runtime, rows))
    except Exception as exc:
        log.warning("torch.compile unavailable (%s: %s): using eager", type(exc).__name__, exc)
        return Accelerated(lm, dit, "eager")
    accelerated = Accelerated(torch.compile(lm, dynamic=True), compiled_dit, "compile")
    accelerated.euler = ChunkedEuler({3: chunk, 2: chunk}, accelerated.stepwise, EULER_CHUNK)
    return accelerated


# --- ahead of time (AOTInductor) ------------------------------------------------------


class AOTPackage:
    """A module compiled ahead of time, as a callable of the module's tensor arguments.
    AOTInductor's code reads its inputs with the strides it was built for (silently: other
    strides give wrong numbers, not an error), and it was built for contiguous ones
    (:func:`_aot_package`), so each argument is passed contiguous (a copy only of a
    broadcast view, such as the sampler's context, or a permuted one, such as its
    modulations). A module with several outputs returns a tuple."""

    def __init__(self, runner: Callable[..., Any], path: Path) -> None:
        self.runner, self.path = runner, path

    def __call__(self, *args: torch.Tensor) -> Any:
        out = self.runner(*(a.contiguous() for a in args))
        return tuple(out) if isinstance(out, list | tuple) else out


def _source_digest(module: torch.nn.Module) -> str:
    """sha256 of the source files that define ``module``'s own classes (not torch's) and of
    this one: a change to the network's code, which its weights would not show, or to how
    packages are built, changes the key."""
    files = {
        inspect.getsourcefile(type(m))
        for m in module.modules()
        if not type(m).__module__.startswith("torch.")
    }
    files.add(__file__)  # how packages are exported and called
    digest = hashlib.sha256()
    for name in sorted(f for f in files if f):
        digest.update(Path(name).read_bytes())
    return digest.hexdigest()


def _aot_key(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], dynamic: Any = None) -> str:
    """The cache key of an AOTInductor package: everything its code depends on."""
    digest = hashlib.sha256()
    parts = [
        _weights_hash(module),
        _source_digest(module),
        torch.__version__,
        platform.machine(),
        torch.backends.cpu.get_cpu_capability(),
        str(torch.get_num_threads()),  # Inductor's parallel loops are built for this many
        repr([(tuple(a.shape), a.stride(), str(a.dtype), a.device.type) for a in inputs]),
        repr(dynamic),
    ]
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _aot_package(
    module: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    name: str,
    dynamic_shapes: Any = None,
) -> AOTPackage:
    """``module`` compiled ahead of time for ``inputs``' shapes (``dynamic_shapes`` as
    :func:`torch.export.export` takes them): built once and saved as
    ``<name>_<key>.pt2`` (atomically; see :func:`_aot_key`), loaded from there after."""
    # Built for contiguous inputs, which AOTPackage passes (its code assumes the layout).
    inputs = tuple(a.contiguous() for a in inputs)
    path = cache_dir() / f"{name}_{_aot_key(module, inputs, dynamic_shapes)}.pt2"
    if not path.is_file():
        log.info(
            "building %s ahead of time with AOTInductor (first start only: about half a "
            "minute on 2 CPU cores; later starts load it from %s)", name, path.parent,
        )  # fmt: skip
        with torch.no_grad():
            program = torch.export.export(module, inputs, dynamic_shapes=dynamic_shapes)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}.pt2")  # AOTInductor wants .pt2
        try:
            torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return AOTPackage(torch._inductor.aoti_load_package(str(path)), path)


def _accelerate_aot(runtime: Any, lm: torch.nn.Module, dit: LocDiTStep) -> Accelerated:
    """``accel aot``: see the module docstring."""
    try:
        import torch._inductor  # aoti_compile_and_package, aoti_load_package

        # Both built for any number of guidance rows: batched sessions' step, and one
        # session's 3 or 2 (a chunk built for a dynamic count runs as fast as one built
        # for each, and one package builds in half the time of two).
        rows = torch.export.Dim("rows", min=1, max=4096)
        step = _aot_package(
            dit,
            _dit_example(runtime),
            "locdit_step",
            ({0: rows}, {2: rows}, {1: rows}, {1: rows}, {1: rows}),
        )
        chunk = _aot_package(
            EulerSteps(dit),
            _euler_example(runtime, 3),
            f"euler{EULER_CHUNK}",
            ({}, {3: rows}, {2: rows}, {1: rows}, {1: rows}, {}, {0: rows}),
        )
        lm_step = _aot_package(LMStep(lm).eval(), _lm_example(runtime), "lmstep")
    except Exception as exc:  # no C++ compiler, an export that fails: stay usable
        log.warning("accel aot unavailable (%s: %s): using eager", type(exc).__name__, exc)
        return Accelerated(lm, dit, "eager")
    accelerated = Accelerated(FixedWindowLM(lm_step, runtime.generator.config), step, "aot")
    chunks = dict.fromkeys(range(1, 4), chunk)  # one session's rows: 1 to 3
    accelerated.euler = ChunkedEuler(chunks, accelerated.stepwise, EULER_CHUNK)
    return accelerated


__all__ = [
    "ACCEL_MODES",
    "EULER_CHUNK",
    "AOTPackage",
    "Accelerated",
    "ChunkedEuler",
    "FixedWindowLM",
    "accelerate",
    "cache_dir",
]
