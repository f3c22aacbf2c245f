"""The training-stage base class every stage (VAE, SVAC, generator, ODPO) builds on.

A stage subclasses :class:`Stage` (in the manner of audiocraft's solvers) and writes four
methods -- :meth:`Stage.build_model`, :meth:`Stage.build_data`, :meth:`Stage.step` and
:meth:`Stage.evaluate` -- plus, when the defaults do not fit, :meth:`Stage.build_optimizers`,
:meth:`Stage.build_schedulers`, :meth:`Stage.collate` and :meth:`Stage.wrap_model`.
:meth:`Stage.fit` does the rest: seeding, deterministic kernels, the data stream,
checkpoints, MLflow logging (through :mod:`swansphere_training.tracking` only), a progress
bar, signals, and DDP.

Exact resumption. A run killed at any point and restarted with ``resume=True`` ends
with bitwise the same weights as an uninterrupted run with the same seed (tested in
tests/training/test_stage_base.py), because everything a step depends on is either a
pure function of (seed, step) or saved in the checkpoint:

* the batches: :class:`StepBatchSampler` is stateless -- batch ``k`` is a function of
  (seed, k, rank), so a restart at step k continues the very same sequence;
* per-sample randomness in the dataset (random crops, augmentation): every item is
  fetched with Python's, NumPy's and torch's global RNGs seeded from (seed, position in
  the sample stream) and restored afterwards, so it is the same with 0 or 8 workers and
  does not disturb the training RNG;
* the training RNG streams (dropout, noise): Python, NumPy, torch CPU and CUDA, the
  DataLoader's generator and any generator in ``self.generators`` are checkpointed per
  rank and restored; evaluation runs with the RNG state saved and put back, so when
  and how often it runs does not change the training trajectory;
* model, optimizer and scheduler states are checkpointed bitwise (safetensors).

Conditions: the same config (checked on resume), the same number of processes, device
type, torch build and thread count (floating-point reductions are ordered differently
otherwise). ``torch.use_deterministic_algorithms(True, warn_only=True)`` selects
deterministic kernels where torch has them and warns (does not fail) where it does not;
on CUDA, ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` is set for deterministic cuBLAS.

DDP. Launch with torchrun, e.g. on one machine with 4 GPUs::

    torchrun --standalone --nproc_per_node=4 "$(command -v swansphere)" train vae \\
        --preset tiny --data out/corpus

(torchrun runs a Python script; the ``swansphere`` console script is one), or on each
of two nodes::

    torchrun --nnodes=2 --node_rank=N --nproc_per_node=8 --rdzv_backend=c10d \\
        --rdzv_endpoint=HOST:29400 "$(command -v swansphere)" train vae ...

When WORLD_SIZE > 1, :meth:`fit` initialises the process group (NCCL on CUDA, gloo on
CPU), wraps the model in DistributedDataParallel, gives each rank its own slice of every
global batch (the config's ``batch_size`` is per process), and lets only rank 0 log,
evaluate, print a progress bar and write checkpoints (each rank's RNG state is gathered
into them).

Signals. SIGTERM or a first Ctrl-C (SIGINT) lets the current step finish, writes a
checkpoint, and ends the run (SystemExit 143 for SIGTERM, KeyboardInterrupt for SIGINT;
the MLflow run is marked KILLED). A second Ctrl-C stops at once without a checkpoint.
SIGKILL cannot be caught: ``--resume`` continues from the last periodic checkpoint.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
import math
import os
import random
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm import tqdm

from swansphere.device import torch_device
from swansphere.errors import InputError
from swansphere_training import tracking
from swansphere_training.checkpoint import (
    Checkpoint,
    capture_rng_states,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_states,
    save_checkpoint,
)

log = logging.getLogger(__name__)

# Distinct salts keep the seed streams of batches, items and ranks apart.
_SALT_EPOCH, _SALT_ITEM, _SALT_RANK, _SALT_LOADER = 0x5EED01, 0x5EED02, 0x5EED03, 0x5EED04


# --------------------------------------------------------------------------------------
# Seeds and determinism
# --------------------------------------------------------------------------------------


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from non-negative integers (NumPy's SeedSequence)."""
    words = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint32)
    return ((int(words[0]) << 32) | int(words[1])) & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))  # noqa: NPY002 - the legacy global RNG, on purpose
    torch.manual_seed(seed)


def configure_determinism(device: torch.device) -> None:
    """Ask torch for deterministic kernels (warning where none exists) and no autotuning."""
    if device.type == "cuda":
        # cuBLAS needs a fixed workspace to be deterministic; read when cuBLAS starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


@contextmanager
def _preserved_determinism_flags() -> Iterator[None]:
    """Give back torch's global determinism switches after a fit (tests share a process)."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2:]


@contextmanager
def isolated_rng(seed: int | None = None) -> Iterator[None]:
    """Run a block with the global Python/NumPy/torch-CPU RNG states saved and restored;
    with ``seed``, the block starts from that seed. CUDA RNGs are not touched."""
    saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())  # noqa: NPY002
    try:
        if seed is not None:
            seed_everything_cpu(seed)
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])  # noqa: NPY002
        torch.set_rng_state(saved[2])


def seed_everything_cpu(seed: int) -> None:
    """:func:`seed_everything` without CUDA (safe inside DataLoader workers)."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))  # noqa: NPY002 - the legacy global RNG, on purpose
    torch.default_generator.manual_seed(seed)


# --------------------------------------------------------------------------------------
# The data stream
# --------------------------------------------------------------------------------------


class StepBatchSampler(torch.utils.data.Sampler):
    """Infinite, stateless batches: batch ``k`` depends only on (seed, k, rank).

    The training stream is a concatenation of shuffled epochs, epoch ``e`` being
    ``randperm(n)`` drawn from ``derive_seed(seed, e)``. Global step ``k`` takes the
    ``batch_size * world_size`` consecutive samples starting at position
    ``k * batch_size * world_size``, and rank ``r`` the r-th slice of them, so ranks never
    share a sample within a step and every sample is used once per epoch (a batch may
    straddle two epochs; nothing is dropped). Yields lists of ``(position, index)``:
    ``position`` is the sample's place in the stream (it seeds the item's randomness),
    ``index`` the dataset index.
    """

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
    ) -> None:
        if dataset_size < 1:
            raise InputError("the training set is empty")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise InputError(f"rank {rank} is outside world size {world_size}")
        self.n, self.batch_size, self.seed = int(dataset_size), int(batch_size), int(seed)
        self.rank, self.world_size, self.start_step = int(rank), int(world_size), int(start_step)
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            if len(self._perms) >= 2:  # a batch touches at most two epochs when bs <= n
                self._perms.pop(min(self._perms))
            gen = torch.Generator().manual_seed(derive_seed(_SALT_EPOCH, self.seed, epoch))
            self._perms[epoch] = torch.randperm(self.n, generator=gen)
        return self._perms[epoch]

    def batch(self, step: int) -> list[tuple[int, int]]:
        """The ``(position, index)`` pairs of this rank's part of global step ``step``."""
        first = (step * self.world_size + self.rank) * self.batch_size
        out = []
        for position in range(first, first + self.batch_size):
            epoch, offset = divmod(position, self.n)
            out.append((position, int(self._perm(epoch)[offset])))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1


class SeededItems(Dataset):
    """Wraps a map-style dataset: item ``(position, index)`` is ``dataset[index]`` fetched
    with the global RNGs seeded from (seed, position), then restored (see
    :func:`isolated_rng`), so per-sample randomness is reproducible and does not consume
    the training RNG, whichever process fetches it."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        position, index = key
        with isolated_rng(derive_seed(_SALT_ITEM, self.seed, position)):
            return self.dataset[index]


def linear_warmup(
    optimizer: torch.optim.Optimizer, steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """LR factor (k + 1) / steps for the first ``steps`` steps k, then 1 (steps 0: always 1).

    Transformers trained from scratch with Adam need it: the first updates, taken with
    second-moment estimates from a handful of batches, otherwise throw the weights far.
    """
    if int(steps) != steps or steps < 0:
        raise InputError(f"warm-up steps must be an integer >= 0, got {steps!r}")
    steps = int(steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: min(1.0, (k + 1) / steps) if steps else 1.0
    )


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup: int, decay: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`linear_warmup` for ``warmup`` steps, then the LR factor falls along a half
    cosine from 1 to 0 over ``decay`` steps and stays at 0 (decay 0: stays at 1, exactly
    :func:`linear_warmup`). Annealing is how a run ends near a minimum instead of
    wandering around it at full step size."""
    for name, value in (("warm-up", warmup), ("decay", decay)):
        if int(value) != value or value < 0:
            raise InputError(f"{name} steps must be an integer >= 0, got {value!r}")
    warmup, decay = int(warmup), int(decay)
    if not decay:
        return linear_warmup(optimizer, warmup)

    def factor(k: int) -> float:
        if k < warmup:
            return (k + 1) / warmup
        done = min(1.0, (k - warmup + 1) / decay)
        return 0.5 * (1.0 + math.cos(math.pi * done))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Tensors in nested dicts, lists and tuples moved to ``device``; other values kept."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        moved = [move_to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


# --------------------------------------------------------------------------------------
# Processes and devices
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a torchrun job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistInfo:
        """From torchrun's RANK, WORLD_SIZE and LOCAL_RANK variables."""
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )


def select_device(local_rank: int = 0, override: str | None = None) -> torch.device:
    """``override`` when given, else CUDA device ``local_rank`` if CUDA is available, else CPU."""
    if override:
        return torch_device(override)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def _init_process_group(info: DistInfo, device: torch.device) -> bool:
    """Join the torchrun process group when WORLD_SIZE > 1; True if this call created it."""
    if not info.enabled or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


@contextmanager
def _signal_handlers(handler: Any) -> Iterator[None]:
    """Route SIGINT and SIGTERM to ``handler`` inside the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# --------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------


@dataclass
class FitOptions:
    """How :meth:`Stage.fit` runs (not part of the model config; may change on resume)."""

    out_dir: Path  # checkpoints go to out_dir/checkpoints
    checkpoint_every: int = 100  # steps between checkpoints (and one at the end)
    keep_last: int = 3  # checkpoints kept on disk
    eval_every: int = 0  # steps between evaluations; 0: only at the end
    log_every: int = 10  # per-step metrics are sent to MLflow in batches of this many steps
    num_workers: int = 0  # DataLoader worker processes
    track: bool = True  # log to MLflow (rank 0 only)
    progress: bool = True  # tqdm progress bar (rank 0 only)
    device: str | None = None  # e.g. "cpu", "cuda:1"; None picks CUDA when available

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        for name in ("checkpoint_every", "keep_last", "log_every"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0 or self.num_workers < 0:
            raise InputError("eval_every and num_workers must be >= 0")


@dataclass
class FitResult:
    """What :meth:`Stage.fit` ended with."""

    step: int  # steps completed
    metrics: dict[str, float] = field(default_factory=dict)  # of the last training step
    eval_metrics: dict[str, float] = field(default_factory=dict)  # of the last evaluation
    checkpoint: Path | None = None  # the last checkpoint written (rank 0)
    run_id: str | None = None  # the MLflow stage run


def config_to_dict(config: Any) -> dict[str, Any]:
    """A stage config (dataclass or mapping) as the JSON dict stored in checkpoints."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        data = dataclasses.asdict(config)
    elif isinstance(config, Mapping):
        data = dict(config)
    else:
        raise InputError(f"a stage config must be a dataclass or a mapping, got {type(config)}")
    try:
        return json.loads(json.dumps(data, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InputError(f"the stage config must be JSON-serialisable: {exc}") from exc


def config_defaults(config: Any) -> dict[str, Any]:
    """Each field default of a dataclass stage config in the form checkpoints store
    (:func:`config_to_dict`); {} for a mapping, which has no defaults."""
    if not dataclasses.is_dataclass(config):
        return {}
    defaults = {}
    for f in dataclasses.fields(config):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return config_to_dict(defaults)


def config_differences(
    saved: Mapping[str, Any], current: Mapping[str, Any], defaults: Mapping[str, Any]
) -> list[str]:
    """Sorted names of the settings in which a checkpoint's config (``saved``) and the
    current one differ. A setting added to the stage after the checkpoint was written is
    absent from ``saved`` and counts as its default, so an older run resumes when the new
    setting is left at that default (a run from before ``lr_decay_steps`` existed, say)."""
    return sorted(
        k for k in set(saved) | set(current) if saved.get(k, defaults.get(k)) != current.get(k)
    )


def preset_network(stage: Any, presets: Mapping[str, Any], what: str) -> Any:
    """The network config of a stage config (a dataclass, or its dict in a checkpoint):
    ``presets[stage.preset]`` with the stage's ``model`` fields changed (presets have
    ``to_dict`` and their class ``from_dict``). InputError names an unknown preset, a
    ``model`` that is not a dict, or (through ``from_dict``) an unknown field."""
    stage = stage if isinstance(stage, Mapping) else dataclasses.asdict(stage)
    preset = stage.get("preset", "tiny")
    if preset not in presets:
        raise InputError(f"unknown {what} preset {preset!r}; choose one of {', '.join(presets)}")
    base = presets[preset]
    overrides = stage.get("model") or {}
    if not isinstance(overrides, Mapping):
        raise InputError(
            f"the {what} stage's model must be a dict of {type(base).__name__} fields, "
            f"got {overrides!r}"
        )
    return type(base).from_dict(base.to_dict() | dict(overrides))


def _scalar(value: Any) -> float:
    return float(value.detach().item()) if isinstance(value, torch.Tensor) else float(value)


class Stage(abc.ABC):
    """One training stage. Subclasses set :attr:`name` and implement the four abstract
    methods; :meth:`fit` trains.

    ``config``: a dataclass (or mapping) with at least ``seed`` (int >= 0) and
    ``batch_size`` (per process); ``lr`` and ``weight_decay`` are read by the default
    optimizer. It is stored in every checkpoint and must not change on resume.

    Attributes available to subclasses: ``self.model`` (the bare module: its state dict
    is what is checkpointed), ``self.wrapped`` (what to call in :meth:`step`; DDP-wrapped
    when distributed), ``self.optimizers``, ``self.schedulers``, ``self.generators``
    (named torch generators to checkpoint), ``self.device``, ``self.dist``,
    ``self.global_step`` (steps completed).
    """

    name: ClassVar[str] = "stage"
    #: Passed to DistributedDataParallel: set True when some parameters skip a forward.
    find_unused_parameters: ClassVar[bool] = False

    def __init__(self, config: Any, options: FitOptions) -> None:
        self.config = config
        self.options = options
        self.config_dict = config_to_dict(config)
        seed = self.config_dict.get("seed")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise InputError(f"config.seed must be an integer >= 0, got {seed!r}")
        batch_size = self.config_dict.get("batch_size")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"config.batch_size must be an integer >= 1, got {batch_size!r}")
        self.seed, self.batch_size = seed, batch_size
        self.dist = DistInfo.from_env()
        self.device = select_device(self.dist.local_rank, options.device)
        self.model: nn.Module = nn.Module()
        self.wrapped: nn.Module = self.model
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        self.generators: dict[str, torch.Generator] = {}
        self.global_step = 0
        self.dataset_size = 0
        self.run_id: str | None = None
        self._stop_signal: int | None = None

    # ---- what a stage writes ---------------------------------------------------------

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """The trainable module (several networks: an ``nn.ModuleDict``). Called after
        seeding, before anything else is built."""

    @abc.abstractmethod
    def build_data(self) -> Dataset:
        """The training set: a map-style dataset; :meth:`fit` batches it (see
        :class:`StepBatchSampler`). Its randomness may use the global RNGs freely."""

    @abc.abstractmethod
    def step(self, batch: Any) -> dict[str, float]:
        """One optimisation step on ``batch`` (already on ``self.device``): forward through
        ``self.wrapped``, backward, ``optimizer.step()``. Returns scalar metrics (floats
        or 0-d tensors). Schedulers are stepped by :meth:`fit` after each step."""

    @abc.abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Validation metrics. Called on rank 0 only, in eval mode under ``torch.no_grad()``,
        with the RNG states saved and restored around it; use ``self.model`` (not the DDP
        wrapper) and no collective operations. Artifacts: :meth:`log_figure` etc."""

    # ---- defaults a stage may override ----------------------------------------------

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer] | torch.optim.Optimizer:
        """AdamW over all parameters with config ``lr`` (default 1e-3) and
        ``weight_decay`` (default 0). Return a dict to use several (e.g. GAN)."""
        return torch.optim.AdamW(
            self.model.parameters(),
            lr=float(self.config_dict.get("lr", 1e-3)),
            weight_decay=float(self.config_dict.get("weight_decay", 0.0)),
        )

    def build_schedulers(self) -> dict[str, Any]:
        """Named LR schedulers, stepped once after every training step. Default: none."""
        return {}

    def collate(self, items: list[Any]) -> Any:
        """Turn a list of dataset items into a batch. Default: torch's default_collate."""
        return default_collate(items)

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """The module :meth:`step` calls: ``model`` itself when not distributed; else DDP
        around it, or for an ``nn.ModuleDict`` a ModuleDict with each trainable network in
        its own DDP (a container has no forward to wrap), so ``self.wrapped["vae"](x)``
        synchronises gradients. Calling ``self.model[...]`` directly skips that."""
        if not self.dist.enabled:
            return model
        if isinstance(model, nn.ModuleDict):
            return nn.ModuleDict(
                {
                    key: self.ddp(net) if any(p.requires_grad for p in net.parameters()) else net
                    for key, net in model.items()
                }
            )
        return self.ddp(model)

    def ddp(self, module: nn.Module) -> nn.Module:
        """``module`` wrapped in DistributedDataParallel on this stage's device."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(
            module, device_ids=ids, find_unused_parameters=self.find_unused_parameters
        )

    # ---- helpers for subclasses -----------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        return self.options.out_dir / "checkpoints"

    @property
    def tracking_enabled(self) -> bool:
        """True on rank 0 when MLflow logging is on."""
        return self.options.track and self.dist.is_main

    @property
    def stop_requested(self) -> bool:
        """True once SIGTERM or SIGINT asked the run to stop after the current step."""
        return self._stop_signal is not None

    @property
    def epoch(self) -> int:
        """Complete passes over the training set so far (all ranks together)."""
        seen = self.global_step * self.batch_size * self.dist.world_size
        return seen // self.dataset_size if self.dataset_size else 0

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Log a matplotlib figure to the stage run (no-op without tracking)."""
        if self.tracking_enabled:
            tracking.log_figure(figure, artifact_file)

    def log_audio_example(self, audio: Any, sample_rate: int, artifact_file: str) -> None:
        """Log (channels, samples) audio as a WAV artifact (no-op without tracking)."""
        if self.tracking_enabled:
            tracking.log_audio_example(audio, sample_rate, artifact_file)

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        """Log a dict as a JSON artifact (no-op without tracking)."""
        if self.tracking_enabled:
            tracking.log_dict(data, artifact_file)

    # ---- training -------------------------------------------------------------------

    def fit(self, max_steps: int, resume: bool = False) -> FitResult:
        """Train until ``max_steps`` steps are done in total.

        With ``resume`` the latest checkpoint under ``options.out_dir/checkpoints`` is
        loaded first (model, optimizers, schedulers, every RNG, step) and training goes on
        from its step, logging into the same MLflow run; without one, training starts
        afresh (logged as a warning). A checkpoint is written every
        ``options.checkpoint_every`` steps and at the end.
        """
        if int(max_steps) != max_steps or max_steps < 1:
            raise InputError(f"max_steps must be a positive integer, got {max_steps}")
        created = _init_process_group(self.dist, self.device)
        with _preserved_determinism_flags():
            try:
                return self._fit(int(max_steps), resume)
            finally:
                if created:
                    dist.destroy_process_group()

    def _fit(self, max_steps: int, resume: bool) -> FitResult:
        self.global_step, self.run_id, self._stop_signal = 0, None, None
        configure_determinism(self.device)
        seed_everything(self.seed)
        self.model = self.build_model().to(self.device)
        self.init_source = self._init_source()
        optimizers = self.build_optimizers()
        if isinstance(optimizers, torch.optim.Optimizer):
            optimizers = {"main": optimizers}
        self.optimizers = dict(optimizers)
        self.schedulers = dict(self.build_schedulers())
        dataset = self.build_data()
        self.dataset_size = len(dataset)  # type: ignore[arg-type]
        loader_generator = torch.Generator().manual_seed(derive_seed(_SALT_LOADER, self.seed))
        self.generators["dataloader"] = loader_generator

        checkpoint = self._checkpoint_to_resume() if resume else None
        if checkpoint is not None:
            self._restore(checkpoint)
        elif self.dist.rank > 0:  # ranks draw different dropout masks
            seed_everything(derive_seed(_SALT_RANK, self.seed, self.dist.rank))
        self.wrapped = self.wrap_model(self.model)

        sampler = StepBatchSampler(
            self.dataset_size,
            self.batch_size,
            self.seed,
            self.dist.rank,
            self.dist.world_size,
            start_step=self.global_step,
        )
        loader = DataLoader(
            SeededItems(dataset, self.seed),
            batch_sampler=sampler,
            num_workers=self.options.num_workers,
            collate_fn=self.collate,
            generator=self.generators["dataloader"],  # keeps the global RNG untouched
            pin_memory=self.device.type == "cuda",
        )
        run = (  # reopens the interrupted run when resuming; params go into new runs only
            tracking.stage_run(self.name, run_id=self.run_id, params=self._params(max_steps))
            if self.tracking_enabled
            else nullcontext(None)
        )
        with run as run_id, _signal_handlers(self._on_signal):
            self.run_id = run_id
            return self._loop(loader, max_steps)

    def _checkpoint_to_resume(self) -> Checkpoint | None:
        if latest_checkpoint(self.checkpoint_dir) is None:
            log.warning("--resume: no checkpoint in %s; starting from step 0", self.checkpoint_dir)
            return None
        return load_checkpoint(self.checkpoint_dir, map_location="cpu")

    def _restore(self, ckpt: Checkpoint) -> None:
        """Put a checkpoint's state back; refuse one written with another config."""
        keys = config_differences(ckpt.config, self.config_dict, config_defaults(self.config))
        if keys:
            raise InputError(
                f"cannot resume from {ckpt.path}: its config differs in {', '.join(keys)}"
            )
        self.model.load_state_dict(ckpt.model_state)
        for kind, objects, saved in (
            ("optimizer", self.optimizers, ckpt.optimizer_state or {}),
            ("scheduler", self.schedulers, ckpt.scheduler_state or {}),
        ):
            if set(saved) != set(objects):
                raise InputError(
                    f"cannot resume from {ckpt.path}: it has {kind}s {sorted(saved)}, "
                    f"this stage builds {sorted(objects)}"
                )
            for key, obj in objects.items():
                obj.load_state_dict(saved[key])
        rng = ckpt.rng_states
        if rng["world_size"] != self.dist.world_size:
            log.warning(
                "checkpoint was written by %d process(es), this run has %d: the run goes on "
                "but is no longer exactly reproducible",
                rng["world_size"],
                self.dist.world_size,
            )
        if self.dist.rank < len(rng["ranks"]):
            restore_rng_states(rng["ranks"][self.dist.rank], self.generators)
        else:
            seed_everything(derive_seed(_SALT_RANK, self.seed, self.dist.rank, ckpt.step))
        if ckpt.extra.get("dataset_size") not in (None, self.dataset_size):
            log.warning(
                "the training set had %s items at the checkpoint and has %d now: the batch "
                "sequence differs from an uninterrupted run",
                ckpt.extra["dataset_size"],
                self.dataset_size,
            )
        self.global_step = ckpt.step
        self.run_id = ckpt.extra.get("mlflow_run_id")
        # The bundle the run started from, as it was then (a spec such as "default" may
        # name another bundle by now).
        self.init_source = ckpt.extra.get("init_from", self.init_source)
        log.info("resumed %s from %s (step %d)", self.name, ckpt.path, ckpt.step)

    def _init_source(self) -> dict[str, str] | None:
        """{"spec", "digest"} of the bundle a stage config's ``init_from`` names (the
        digest pins it: the manifest's sha256), or None without one."""
        spec = getattr(self.config, "init_from", None)
        if not spec:
            return None
        from swansphere.models.bundle import load_bundle

        return {"spec": str(spec), "digest": load_bundle(spec).digest}

    def _params(self, max_steps: int) -> dict[str, Any]:
        return {
            **self.config_dict,
            "fit": {
                "max_steps": max_steps,
                "checkpoint_every": self.options.checkpoint_every,
                "world_size": self.dist.world_size,
                "device": str(self.device),
                "num_workers": self.options.num_workers,
                "dataset_size": self.dataset_size,
            },
        }

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self._stop_signal == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without a checkpoint
        self._stop_signal = signum

    def _should_stop(self) -> bool:
        """Whether any rank was asked to stop (all ranks must stop at the same step)."""
        local = self._stop_signal is not None
        if not self.dist.enabled:
            return local
        flag = torch.tensor([1.0 if local else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def _flush(self, pending: list[tuple[int, dict[str, float]]]) -> None:
        if pending and self.tracking_enabled:
            tracking.log_metric_history(pending)
        pending.clear()

    def _loop(self, loader: DataLoader, max_steps: int) -> FitResult:
        result = FitResult(step=self.global_step, run_id=self.run_id)
        pending: list[tuple[int, dict[str, float]]] = []
        batches = iter(loader)
        bar = tqdm(
            total=max_steps,
            initial=self.global_step,
            desc=f"train {self.name}",
            disable=not (self.options.progress and self.dist.is_main),
            dynamic_ncols=True,
        )
        stop = False
        evaluated_at = -1
        try:
            while self.global_step < max_steps and not stop:
                batch = move_to_device(next(batches), self.device)
                self.model.train()
                metrics = {k: _scalar(v) for k, v in self.step(batch).items()}
                for scheduler in self.schedulers.values():
                    scheduler.step()
                self.global_step += 1
                result.metrics = metrics
                pending.append((self.global_step, metrics))
                bar.update(1)
                bar.set_postfix(
                    {k: f"{v:.4g}" for k, v in list(metrics.items())[:4]}, refresh=False
                )
                stop = self._should_stop()
                if len(pending) >= self.options.log_every:
                    self._flush(pending)
                every = self.options.eval_every
                if every and self.global_step % every == 0 and not stop:
                    result.eval_metrics = self._evaluate()
                    evaluated_at = self.global_step
                if (
                    stop
                    or self.global_step % self.options.checkpoint_every == 0
                    or self.global_step == max_steps
                ):
                    self._flush(pending)
                    result.checkpoint = self.save()
        finally:
            bar.close()
            self._flush(pending)
        result.step = self.global_step
        if stop:
            log.warning(
                "%s stopped by a signal at step %d; checkpoint %s",
                self.name,
                self.global_step,
                result.checkpoint,
            )
            if self._stop_signal == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + int(self._stop_signal or signal.SIGTERM))
        if evaluated_at != self.global_step:
            result.eval_metrics = self._evaluate()
        return result

    def _evaluate(self) -> dict[str, float]:
        """:meth:`evaluate` on rank 0, RNG-neutral; logged as ``eval/<name>``."""
        metrics: dict[str, float] = {}
        if self.dist.is_main:
            saved = capture_rng_states(self.generators)
            self.model.eval()
            try:
                with torch.no_grad():
                    metrics = {k: _scalar(v) for k, v in self.evaluate().items()}
            finally:
                self.model.train()
                restore_rng_states(saved, self.generators)
            if self.tracking_enabled and metrics:
                tracking.log_metrics(
                    {f"eval/{k}": v for k, v in metrics.items()}, step=self.global_step
                )
            finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
            log.info("%s step %d eval: %s", self.name, self.global_step, finite)
        if self.dist.enabled:
            dist.barrier()
        return metrics

    def save(self) -> Path | None:
        """Write a checkpoint of the current state (rank 0; every rank must call it)."""
        rng = capture_rng_states(self.generators)
        if self.dist.enabled:
            ranks: list[Any] = [None] * self.dist.world_size
            dist.all_gather_object(ranks, rng)  # our own processes: trusted pickling
        else:
            ranks = [rng]
        path = None
        if self.dist.is_main:
            path = save_checkpoint(
                self.checkpoint_dir,
                model_state=self.model.state_dict(),
                optimizer_state={k: o.state_dict() for k, o in self.optimizers.items()},
                scheduler_state={k: s.state_dict() for k, s in self.schedulers.items()},
                step=self.global_step,
                epoch=self.epoch,
                rng_states={"world_size": self.dist.world_size, "ranks": ranks},
                config=self.config_dict,
                extra={
                    "stage": self.name,
                    "world_size": self.dist.world_size,
                    "batch_size": self.batch_size,
                    "dataset_size": self.dataset_size,
                    "mlflow_run_id": self.run_id,
                    "init_from": self.init_source,
                },
                keep_last=self.options.keep_last,
            )
        if self.dist.enabled:
            dist.barrier()
        return path
