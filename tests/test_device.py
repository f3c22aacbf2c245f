"""--device is checked before a model moves: an unknown name or a device this machine
lacks is an InputError naming it, not a traceback from deep inside torch."""

from __future__ import annotations

import pytest
import torch

from swansphere.device import torch_device
from swansphere.errors import InputError


def test_cpu_passes_through():
    assert torch_device("cpu") == torch.device("cpu")
    assert torch_device(torch.device("cpu")) == torch.device("cpu")


def test_an_unknown_device_is_named():
    with pytest.raises(InputError, match="'bogus' is not a torch device"):
        torch_device("bogus")


def test_a_gpu_this_machine_lacks_is_refused():
    spec = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU (cuda:0 without any)
    with pytest.raises(InputError, match=f"'{spec}' is not available"):
        torch_device(spec)


def test_generate_names_a_missing_device(capsys, tmp_path):
    from swansphere.cli import main

    out = str(tmp_path / "x.wav")
    code = main(["generate", "--duration", "0.5", "--caption", "rain", "--out", out,
                 "--device", "bogus"])  # fmt: skip
    assert code != 0
    assert "'bogus' is not a torch device" in capsys.readouterr().err
