"""Audio-only training data: random FOA crops read straight from clip WAVs.

The VAE needs no video, so it reads only the samples of each crop (soundfile seeks),
never whole clips. Randomness (which clip window, which rotation) comes from the
global RNGs, which the stage seeds per item for exact resumption.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from swansphere.errors import InputError
from swansphere.foa.rotation import foa_rotation_matrix

from .data.clip import AUDIO_FILE
from .data.dataset import ClipDataset


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix drawn uniformly from SO(3) (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


class FOACrops(Dataset):
    """Random crops (4, samples) float32 of every clip's AmbiX audio at ``sample_rate``.

    ``rotate``: apply a uniformly random 3D rotation to each crop (sound-field
    augmentation: the VAE must keep any direction, not only the corpus's).
    """

    def __init__(
        self, root: Path, split: str, samples: int, sample_rate: int, rotate: bool
    ) -> None:
        clips = ClipDataset(root, split=split)
        self.paths = [c.path / AUDIO_FILE for c in clips if c.sample_rate == sample_rate]
        if not self.paths:
            raise InputError(f"no {sample_rate} Hz clips under {Path(root) / split}")
        self.frames = [sf.info(str(p)).frames for p in self.paths]
        self.samples = samples
        self.rotate = rotate

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        # The global RNG on purpose: the stage seeds it per item for exact resumption.
        start = int(np.random.randint(0, max(1, self.frames[index] - self.samples)))  # noqa: NPY002
        data, _ = sf.read(
            str(self.paths[index]),
            start=start,
            frames=self.samples,
            dtype="float32",
            always_2d=True,
        )
        foa = np.zeros((4, self.samples), dtype=np.float32)
        foa[:, : data.shape[0]] = data.T
        if self.rotate:
            rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))  # noqa: NPY002
            foa = (foa_rotation_matrix(random_rotation(rng)) @ foa).astype(np.float32)
        return torch.from_numpy(foa)
