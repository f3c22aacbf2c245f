"""Tests of swansphere_training/checkpoint.py: lossless pickle-free round trips, atomic
writes that survive a failure mid-write, keep-last-K, the latest pointer, export."""

from __future__ import annotations

import json
import math
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import swansphere_training.checkpoint as ckpt_mod
from swansphere_training.checkpoint import (
    CheckpointError,
    capture_rng_states,
    decode_tree,
    encode_tree,
    export_weights,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_states,
    save_checkpoint,
)


def _trained(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, object]:
    """A small model after three Adam steps, with a scheduler (non-trivial states)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Linear(5, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.95))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3)).square().mean().backward()
        opt.step()
        sched.step()
    return model, opt, sched


def _save(root: Path, step: int, model: nn.Module, **kw) -> Path:
    return save_checkpoint(
        root, model_state=model.state_dict(), step=step, config={"seed": 1, "dims": (3, 5)}, **kw
    )


def test_tree_round_trip_is_exact() -> None:
    value = {
        "ints": {0: [1, 2], 7: (3.5, None)},  # non-string keys and tuples keep their types
        "floats": [0.1, 1e-300, math.inf, -math.inf, 2.0**-1074],
        "text": "x",
        "flag": True,
        "blob": b"\x00\xff",
        "tensor": torch.arange(6, dtype=torch.float64).reshape(2, 3),
        "scalar": torch.tensor(3, dtype=torch.int64),
        "array": np.arange(4, dtype=np.uint32),
        "np_scalar": np.float32(0.25),
        "__dunder": 1,
    }
    tensors: dict[str, torch.Tensor] = {}
    encoded = json.loads(json.dumps(encode_tree(value, tensors)))  # through real JSON
    back = decode_tree(encoded, tensors)
    assert back["ints"] == {0: [1, 2], 7: (3.5, None)}
    assert back["floats"] == value["floats"]
    assert back["blob"] == b"\x00\xff" and back["flag"] is True and back["__dunder"] == 1
    assert torch.equal(back["tensor"], value["tensor"]) and back["tensor"].dtype == torch.float64
    assert back["scalar"].shape == () and int(back["scalar"]) == 3
    assert back["array"].dtype == np.uint32 and np.array_equal(back["array"], value["array"])
    assert back["np_scalar"] == 0.25
    nan = decode_tree(json.loads(json.dumps(encode_tree(math.nan, {}))), {})
    assert math.isnan(nan)


def test_unsupported_values_are_refused_with_their_place() -> None:
    with pytest.raises(CheckpointError, match=r"object at state\.opt\[1\]"):
        encode_tree({"opt": [1, object()]}, {})


def test_round_trip_restores_model_optimizer_scheduler_and_rng(tmp_path: Path) -> None:
    model, opt, sched = _trained()
    gen = torch.Generator().manual_seed(9)
    torch.rand(3, generator=gen)
    random.seed(4)
    np.random.seed(5)  # noqa: NPY002
    torch.manual_seed(6)
    rng = capture_rng_states({"loader": gen})
    path = _save(
        tmp_path,
        3,
        model,
        optimizer_state={"main": opt.state_dict()},
        scheduler_state={"main": sched.state_dict()},
        rng_states=rng,
        epoch=1,
        extra={"run": "abc"},
    )
    expected = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=gen))  # noqa: NPY002

    loaded = load_checkpoint(tmp_path)
    assert loaded.path == path and loaded.step == 3 and loaded.epoch == 1
    assert loaded.config == {"seed": 1, "dims": [3, 5]} and loaded.extra == {"run": "abc"}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model_state[key], value), key  # incl. BatchNorm buffers

    # The optimizer and scheduler continue exactly as the originals do.
    model2, opt2, sched2 = _trained(seed=1)
    model2.load_state_dict(loaded.model_state)
    opt2.load_state_dict(loaded.optimizer_state["main"])
    sched2.load_state_dict(loaded.scheduler_state["main"])
    x = torch.randn(4, 3)
    for m, o, s in ((model, opt, sched), (model2, opt2, sched2)):
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()
        s.step()
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"] == 0.01 * 0.5**2

    gen2 = torch.Generator()
    restore_rng_states(loaded.rng_states, {"loader": gen2})
    again = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=gen2))  # noqa: NPY002
    assert again[:2] == expected[:2]
    assert torch.equal(again[2], expected[2]) and torch.equal(again[3], expected[3])
    with pytest.raises(CheckpointError, match="'other'"):
        restore_rng_states(loaded.rng_states, {"other": torch.Generator()})


def test_checkpoints_hold_no_pickle_and_load_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, opt, _ = _trained()
    path = _save(
        tmp_path,
        1,
        model,
        optimizer_state={"main": opt.state_dict()},
        rng_states=capture_rng_states(),
    )
    assert sorted(p.name for p in path.iterdir()) == [
        "model.safetensors",
        "state.json",
        "trainer_state.safetensors",
    ]

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert load_checkpoint(path).step == 1


def test_failure_mid_write_leaves_the_previous_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _, _ = _trained()
    first = _save(tmp_path, 1, model)
    real_save = ckpt_mod.save_file
    calls = []

    def fail_on_second_file(tensors, filename, *args, **kwargs):
        calls.append(filename)
        real_save(tensors, filename, *args, **kwargs)
        if len(calls) == 2:  # model file written, trainer-state file written, then a crash
            raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod, "save_file", fail_on_second_file)
    with pytest.raises(OSError, match="disk full"):
        _save(tmp_path, 2, model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000001"]
    assert latest_checkpoint(tmp_path) == first
    assert load_checkpoint(tmp_path).step == 1


def test_leftovers_of_a_killed_writer_are_ignored_then_cleaned(tmp_path: Path) -> None:
    model, _, _ = _trained()
    _save(tmp_path, 1, model)
    # What a SIGKILL mid-write leaves: a hidden temporary dir with a partial checkpoint.
    stale = tmp_path / ".step_00000002.abc123.tmp"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    assert load_checkpoint(tmp_path).step == 1
    _save(tmp_path, 2, model)
    assert not stale.exists()
    assert load_checkpoint(tmp_path).step == 2


def test_keep_last_k_and_the_latest_pointer(tmp_path: Path) -> None:
    model, _, _ = _trained()
    for step in range(1, 6):
        _save(tmp_path, step, model, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000004", "step_00000005"]
    assert (tmp_path / "latest").read_text().strip() == "step_00000005"
    # Saving a step again replaces it; the pointer still names it.
    with torch.no_grad():
        model[0].weight.fill_(0.5)
    _save(tmp_path, 5, model, keep_last=2)
    assert torch.all(load_checkpoint(tmp_path).model_state["0.weight"] == 0.5)
    # A lost or dangling pointer falls back to the newest complete checkpoint.
    (tmp_path / "latest").write_text("step_00000099\n")
    assert latest_checkpoint(tmp_path).name == "step_00000005"
    (tmp_path / "latest").unlink()
    assert latest_checkpoint(tmp_path).name == "step_00000005"
    assert latest_checkpoint(tmp_path / "nothing") is None
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing")


def test_corrupted_checkpoint_file_is_named(tmp_path: Path) -> None:
    model, _, _ = _trained()
    path = _save(tmp_path, 1, model)
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_checkpoint(path)


def test_export_drops_optimizer_state(tmp_path: Path) -> None:
    model, opt, _ = _trained()
    _save(
        tmp_path / "ckpt",
        3,
        model,
        optimizer_state={"main": opt.state_dict()},
        rng_states=capture_rng_states(),
    )
    out = export_weights(tmp_path / "ckpt", tmp_path / "export")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"] == {"seed": 1, "dims": [3, 5]} and meta["step"] == 3
    from safetensors.torch import load_file

    weights = load_file(str(out / "model.safetensors"))
    assert weights.keys() == model.state_dict().keys()
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert (out / "model.safetensors").stat().st_size < (
        (tmp_path / "ckpt/step_00000003/trainer_state.safetensors").stat().st_size
        + (tmp_path / "ckpt/step_00000003/model.safetensors").stat().st_size
    )
