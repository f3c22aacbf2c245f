"""Tests of swansphere_training/stages/base.py: the stateless batch stream, exact resumption
(in process, and after a SIGKILL of a real training process), SIGTERM handling. (A stage's
MLflow logging is tested in test_tracking.py, which shares one SQLite store.)

Run as a script (``python test_stage_base.py fresh:DIR resume:DIR ...``, also under
torchrun) this file trains the toy stage; the subprocess tests use that. TOY_HANG_AT_STEP makes
the toy stage stall (until SIGTERM) once that many steps are done, so the test can kill it
mid-run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from swansphere.errors import InputError
from swansphere_training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from swansphere_training.stages import FitOptions, Stage, StepBatchSampler

HERE = Path(__file__).resolve()


@dataclass
class ToyConfig:
    seed: int = 3
    batch_size: int = 4
    lr: float = 1e-2
    hidden: int = 32
    dropout: float = 0.3
    items: int = 37  # not a multiple of the batch size: batches straddle epochs


class NoisyRegression(Dataset):
    """Fixed inputs plus per-item noise drawn from torch's *global* RNG (an augmentation)."""

    def __init__(self, items: int) -> None:
        rng = np.random.default_rng(0)
        self.x = torch.from_numpy(rng.standard_normal((items, 8)).astype(np.float32))
        w = torch.from_numpy(rng.standard_normal((8, 1)).astype(np.float32))
        self.y = torch.sin(self.x @ w)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index] + 0.05 * torch.randn(8), self.y[index]


class ToyStage(Stage):
    """A tiny MLP with dropout on a shuffled noisy regression set, AdamW and a StepLR."""

    name = "toy"

    def build_model(self) -> nn.Module:
        c = self.config
        return nn.Sequential(
            nn.Linear(8, c.hidden), nn.ReLU(), nn.Dropout(c.dropout), nn.Linear(c.hidden, 1)
        )

    def build_data(self) -> Dataset:
        return NoisyRegression(self.config.items)

    def build_schedulers(self) -> dict:
        return {"lr": torch.optim.lr_scheduler.StepLR(self.optimizers["main"], 5, gamma=0.7)}

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        hang = os.environ.get("TOY_HANG_AT_STEP")
        if hang and self.global_step == int(hang):
            Path(os.environ["TOY_HANG_MARKER"]).touch()
            while not self.stop_requested:  # stall until SIGTERM (or SIGKILL)
                time.sleep(0.02)
        x, y = batch
        opt = self.optimizers["main"]
        opt.zero_grad()
        # A noise draw in the step itself, from the global RNG, besides dropout.
        loss = F.mse_loss(self.wrapped(x + 0.01 * torch.randn_like(x)), y)
        loss.backward()
        opt.step()
        return {"loss": loss, "lr": opt.param_groups[0]["lr"]}

    def evaluate(self) -> dict[str, float]:
        # Evaluation that draws from every global RNG: fit must keep it neutral.
        torch.rand(5)
        random.random()
        np.random.rand()  # noqa: NPY002
        data = NoisyRegression(self.config.items)
        return {"mse": F.mse_loss(self.model(data.x), data.y)}


def make_stage(out: Path, config: ToyConfig | None = None, **options) -> ToyStage:
    opts = {"checkpoint_every": 5, "keep_last": 10, "track": False, "progress": False, **options}
    return ToyStage(config or ToyConfig(), FitOptions(out_dir=out, **opts))


def final_state(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out / "checkpoints").model_state


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        diff = (a[key] - b[key]).abs().max()
        assert torch.equal(a[key], b[key]), f"{key} differs, max abs {diff}"


# --------------------------------------------------------------------------------------
# The batch stream
# --------------------------------------------------------------------------------------


def test_sampler_uses_every_item_once_per_epoch_and_shards_ranks() -> None:
    n, bs, world = 24, 3, 2
    ranks = [StepBatchSampler(n, bs, seed=5, rank=r, world_size=world) for r in range(world)]
    steps_per_epoch = n // (bs * world)
    for epoch in range(3):
        seen = []
        for step in range(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch):
            parts = [s.batch(step) for s in ranks]
            assert not {i for _, i in parts[0]} & {i for _, i in parts[1]}  # disjoint shards
            seen += [i for part in parts for _, i in part]
        assert sorted(seen) == list(range(n))
    # Different epochs are shuffled differently, and the seed matters.
    first = [i for _, i in ranks[0].batch(0)]
    assert first != [i for _, i in ranks[0].batch(steps_per_epoch)]
    assert first != [i for _, i in StepBatchSampler(n, bs, seed=6, world_size=world).batch(0)]


def test_sampler_is_stateless_so_a_restart_continues_the_same_sequence() -> None:
    straight = iter(StepBatchSampler(37, 4, seed=1))
    sequence = [next(straight) for _ in range(30)]
    restarted = iter(StepBatchSampler(37, 4, seed=1, start_step=17))
    assert [next(restarted) for _ in range(13)] == sequence[17:]
    positions = [p for batch in sequence for p, _ in batch]
    assert positions == list(range(30 * 4))  # positions count through the stream


def test_bad_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="seed"):
        ToyStage({"seed": -1, "batch_size": 2}, FitOptions(out_dir=tmp_path))
    with pytest.raises(InputError, match="batch_size"):
        ToyStage({"seed": 1}, FitOptions(out_dir=tmp_path))
    with pytest.raises(InputError, match="checkpoint_every"):
        FitOptions(out_dir=tmp_path, checkpoint_every=0)


# --------------------------------------------------------------------------------------
# Exact resumption
# --------------------------------------------------------------------------------------


def test_resume_in_process_gives_bitwise_equal_weights_and_optimizer(tmp_path: Path) -> None:
    straight = make_stage(tmp_path / "a")
    result = straight.fit(20)
    assert result.step == 20 and result.checkpoint is not None
    assert result.eval_metrics["mse"] >= 0.0

    make_stage(tmp_path / "b").fit(10)
    resumed = make_stage(tmp_path / "b")
    assert resumed.fit(20, resume=True).step == 20

    a, b = load_checkpoint(tmp_path / "a/checkpoints"), load_checkpoint(tmp_path / "b/checkpoints")
    assert_bitwise_equal(a.model_state, b.model_state)
    state_a, state_b = a.optimizer_state["main"]["state"], b.optimizer_state["main"]["state"]
    for key in state_a:
        assert_bitwise_equal(state_a[key], state_b[key])
    assert a.scheduler_state == b.scheduler_state
    # Training really moved the weights (the comparison is not vacuous).
    first = load_checkpoint(tmp_path / "a/checkpoints/step_00000005").model_state
    assert not torch.equal(first["0.weight"], a.model_state["0.weight"])


def test_evaluation_and_workers_do_not_change_the_trajectory(tmp_path: Path) -> None:
    make_stage(tmp_path / "plain").fit(12)
    make_stage(tmp_path / "evals", eval_every=3).fit(12)
    make_stage(tmp_path / "workers", num_workers=2).fit(12)
    reference = final_state(tmp_path / "plain")
    assert_bitwise_equal(reference, final_state(tmp_path / "evals"))
    assert_bitwise_equal(reference, final_state(tmp_path / "workers"))


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    make_stage(tmp_path).fit(5)
    with pytest.raises(InputError, match="differs in lr"):
        make_stage(tmp_path, replace(ToyConfig(), lr=0.5)).fit(10, resume=True)


@dataclass
class ToyConfigWithNewSetting(ToyConfig):
    """ToyConfig after a release added a setting whose default keeps the old behaviour."""

    new_setting: int = 0


def test_resume_accepts_a_setting_added_since_at_its_default(tmp_path: Path) -> None:
    make_stage(tmp_path).fit(5)  # its checkpoint's config has no new_setting
    with pytest.raises(InputError, match="differs in new_setting"):
        make_stage(tmp_path, ToyConfigWithNewSetting(new_setting=2)).fit(10, resume=True)
    assert make_stage(tmp_path, ToyConfigWithNewSetting()).fit(10, resume=True).step == 10


def test_resume_without_checkpoint_starts_afresh(tmp_path: Path) -> None:
    assert make_stage(tmp_path).fit(3, resume=True).step == 3


def _train_process(*jobs: str, **env: str) -> subprocess.Popen:
    """A Python process running ``jobs`` in turn: ``fresh:DIR`` or ``resume:DIR``, 20 steps."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.Popen(
        [sys.executable, str(HERE), *jobs],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early:\n{proc.stdout.read().decode()}")
        assert time.monotonic() < deadline, "trainer did not reach the hang point"
        time.sleep(0.05)


def _finish(proc: subprocess.Popen) -> int:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()
    return proc.returncode


def test_killed_and_terminated_runs_resume_to_bitwise_equal_weights(tmp_path: Path) -> None:
    """Two trainers side by side, 20 steps with checkpoints every 5: one SIGKILLed after
    12 steps, one SIGTERMed while stalled in step 8. Then one process trains an
    uninterrupted reference and resumes both (same environment, one torch import)."""
    killed_hang, termed_hang = tmp_path / "hang12", tmp_path / "hang7"
    killed = _train_process(
        f"fresh:{tmp_path / 'killed'}", TOY_HANG_AT_STEP="12", TOY_HANG_MARKER=str(killed_hang)
    )
    termed = _train_process(
        f"fresh:{tmp_path / 'termed'}", TOY_HANG_AT_STEP="7", TOY_HANG_MARKER=str(termed_hang)
    )
    _wait_for(killed_hang, killed)  # 12 steps done, checkpoints 5 and 10 on disk
    killed.send_signal(signal.SIGKILL)
    _wait_for(termed_hang, termed)  # 7 steps done, stalled inside the 8th
    termed.send_signal(signal.SIGTERM)
    killed.wait(timeout=30)
    termed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert termed.returncode == 128 + signal.SIGTERM

    ckpts = tmp_path / "killed/checkpoints"
    assert latest_checkpoint(ckpts).name == "step_00000010"
    assert [p.name for p in list_checkpoints(ckpts)] == ["step_00000005", "step_00000010"]
    # SIGTERM: the stalled step finished, then a checkpoint was written at once.
    assert load_checkpoint(tmp_path / "termed/checkpoints").step == 8

    _finish(
        _train_process(
            f"fresh:{tmp_path / 'straight'}",
            f"resume:{tmp_path / 'killed'}",
            f"resume:{tmp_path / 'termed'}",
        )
    )
    reference = final_state(tmp_path / "straight")
    assert load_checkpoint(tmp_path / "killed/checkpoints").step == 20
    assert_bitwise_equal(reference, final_state(tmp_path / "killed"))
    assert_bitwise_equal(reference, final_state(tmp_path / "termed"))


def test_ddp_on_two_cpu_processes_resumes_exactly(tmp_path: Path) -> None:
    """torchrun, 2 ranks (gloo): an uninterrupted run vs 10 steps then --resume to 20."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(HERE),
        f"fresh:{tmp_path / 'a'}",
        f"first10:{tmp_path / 'b'}",
        f"resume:{tmp_path / 'b'}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    a, b = load_checkpoint(tmp_path / "a/checkpoints"), load_checkpoint(tmp_path / "b/checkpoints")
    assert a.extra["world_size"] == 2 and len(a.rng_states["ranks"]) == 2
    assert a.epoch == 20 * 4 * 2 // 37  # both ranks' samples count
    assert_bitwise_equal(a.model_state, b.model_state)
    # The two ranks drew different dropout masks (their RNG streams differ).
    assert not torch.equal(a.rng_states["ranks"][0]["torch"], a.rng_states["ranks"][1]["torch"])


# --------------------------------------------------------------------------------------
# Script mode, for the subprocess tests
# --------------------------------------------------------------------------------------


def _main(jobs: list[str]) -> int:
    """Run ``fresh:DIR`` (20 steps), ``resume:DIR`` (on to 20) or ``first10:DIR`` jobs."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        # One process group for all jobs (fit reuses an existing group and leaves it be).
        torch.distributed.init_process_group("gloo")
    for job in jobs:
        mode, out = job.split(":", 1)
        make_stage(Path(out)).fit(10 if mode == "first10" else 20, resume=mode == "resume")
    if distributed:
        torch.distributed.destroy_process_group()
        # Even with the group destroyed, a rank can abort in interpreter teardown ("terminate
        # called without an active exception", after both ranks printed past the line
        # above: 4 of 26 loaded runs). Every checkpoint is written by now, so skip teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


def test_warmup_cosine_warms_up_then_anneals_to_zero() -> None:
    from swansphere_training.stages.base import linear_warmup, warmup_cosine

    def factors(scheduler, n: int) -> list[float]:
        out = []
        for _ in range(n):
            out.append(scheduler.get_last_lr()[0])
            scheduler.optimizer.step()
            scheduler.step()
        return out

    def optimizer() -> torch.optim.Optimizer:
        return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)

    lrs = factors(warmup_cosine(optimizer(), warmup=2, decay=4), 8)
    assert lrs[:2] == pytest.approx([0.5, 1.0])
    # Half a cosine over the 4 decay steps, then nothing.
    expected = [0.5 * (1 + np.cos(np.pi * k / 4)) for k in (1, 2, 3, 4)]
    assert lrs[2:6] == pytest.approx(expected) and lrs[5:] == pytest.approx([0.0] * 3)
    # Without decay it is the plain warm-up (runs recorded before the option reproduce).
    assert factors(warmup_cosine(optimizer(), 3, 0), 6) == factors(linear_warmup(optimizer(), 3), 6)
    with pytest.raises(InputError, match="decay steps must be an integer >= 0"):
        warmup_cosine(optimizer(), 2, -1)
