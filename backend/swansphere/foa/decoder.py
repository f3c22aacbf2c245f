"""The linear FOA decoder shared by binaural and loudspeaker rendering.

A decoder is a matrix of FIR filters (outputs, 4, taps) applied to AmbiX input
(ACN W, Y, Z, X; SN3D): output[o] = sum_k filters[o, k] * foa[k] (convolution).
Loudspeaker decoders are pure gains (taps == 1); binaural decoders are filters.
Keeping one representation lets the streaming renderer treat both the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import oaconvolve

from swansphere.errors import InputError, require_finite


@dataclass(frozen=True)
class Decoder:
    """FIR decoding matrix for AmbiX FOA.

    filters:     (outputs, 4, taps) float64, input channels in ACN order W, Y, Z, X (SN3D).
    sample_rate: Hz the filters are designed for (gains-only decoders work at any rate).
    labels:      one name per output channel, e.g. ("L", "R") or ("FL", "FR", "FC", "LFE", ...).
    name:        design name, e.g. "binaural-magls" or "allrad-5.1".
    """

    filters: np.ndarray
    sample_rate: int
    labels: tuple[str, ...]
    name: str

    def __post_init__(self) -> None:
        f = np.asarray(self.filters, dtype=np.float64)
        if f.ndim != 3 or f.shape[1] != 4 or f.shape[2] < 1:
            raise InputError(f"decoder filters must be (outputs, 4, taps), got shape {f.shape}")
        if len(self.labels) != f.shape[0]:
            raise InputError(f"decoder has {f.shape[0]} outputs but {len(self.labels)} labels")
        require_finite("decoder filters", f)
        object.__setattr__(self, "filters", f)

    @property
    def outputs(self) -> int:
        return self.filters.shape[0]

    @property
    def taps(self) -> int:
        return self.filters.shape[2]

    def apply(self, foa: np.ndarray) -> np.ndarray:
        """Decode a whole AmbiX signal (4, n) offline; returns (outputs, n) (tail cut)."""
        a = np.asarray(foa, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] != 4:
            raise InputError(f"FOA signal must have shape (4, n), got {a.shape}")
        if self.taps == 1:
            return self.filters[:, :, 0] @ a
        n = a.shape[1]
        out = np.zeros((self.outputs, n))
        for k in range(4):
            out += oaconvolve(self.filters[:, k, :], a[k][None, :], axes=1)[:, :n]
        return out
