"""Streaming block renderer: AmbiX FOA blocks in, head-tracked output blocks out, many listeners.

Every listener hears the same FOA stream through the same linear decoder, each with
their own head orientation. Because rotation and decoding are both linear,

    out_l = sum_k D_k * (M_l x)_k = sum_{k,j} M_l[k, j] (D_k * x_j)

so the filtered signals z_kj = D_k * x_j are computed once per block (uniformly
partitioned overlap-save FFT convolution, no added latency) and each listener only
pays a weighted sum over the ten (k, j) pairs a rotation can mix (W->W and the 3 x 3
dipole block): N listeners cost one convolution pass plus a small
matrix product. Orientation changes are smoothed: the compensation rotation moves
along the shorter arc (slerp) to the new target over ``transition_ms``, and within a
block the mixing weights are interpolated sample by sample, so there are no steps
that would click or zipper.

Conventions: input AmbiX (ACN W, Y, Z, X; SN3D); head orientations are unit
quaternions (w, x, y, z) in the x-front, y-left, z-up frame; the renderer applies
their inverse (head compensation) so sources stay fixed in the world.
"""

from __future__ import annotations

import numpy as np

from swansphere.errors import InputError, require_finite
from swansphere.foa.decoder import Decoder
from swansphere.foa.rotation import normalize_quaternion

MIN_BLOCK = 32
MAX_BLOCK = 4096


def _slerp_rows(q0: np.ndarray, q1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Row-wise slerp of unit quaternions (L, 4) by fractions t (L,), along the shorter arc."""
    dot = np.sum(q0 * q1, axis=1)
    q1 = np.where(dot[:, None] < 0, -q1, q1)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_theta = np.sin(theta)
    small = sin_theta < 1e-6
    safe = np.where(small, 1.0, sin_theta)
    w0 = np.where(small, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    w1 = np.where(small, t, np.sin(t * theta) / safe)
    q = w0[:, None] * q0 + w1[:, None] * q1
    return q / np.linalg.norm(q, axis=1, keepdims=True)


# Mixing weights a listener applies to the filtered signals z[k, j] = D_k * x_j. The head
# compensation matrix is blockdiag(1, R.T reordered to ACN (y, z, x)), so only W->W and the
# nine dipole->dipole terms are ever non-zero: (k, j) pairs in this order.
_PAIRS = [(0, 0)] + [(k, j) for k in (1, 2, 3) for j in (1, 2, 3)]
_PAIR_K = np.array([k for k, _ in _PAIRS])
_PAIR_J = np.array([j for _, j in _PAIRS])
_ACN_AXIS = {1: 1, 2: 2, 3: 0}  # ACN dipole index -> Cartesian axis (Y->y, Z->z, X->x)


# Flat indices into R.T (3 x 3, row-major) of the nine dipole pairs, in _PAIRS order.
_PAIR_FLAT = np.array([3 * _ACN_AXIS[k] + _ACN_AXIS[j] for k, j in _PAIRS[1:]])


def _compensation_weights(head_quats: np.ndarray) -> np.ndarray:
    """Weights (L, 10) for _PAIRS that undo head rotations given as unit quaternions (L, 4).

    Entry (k, j) of the compensation matrix R.T (R = the head rotation) in ACN order;
    the W term is 1. R = (w^2 - |v|^2) I + 2 v v^T + 2 w [v]x, so R.T flips the sign of
    the skew part. Vectorised because this runs for every listener and every block.
    """
    w = head_quats[:, 0]
    v = head_quats[:, 1:]
    rt = 2.0 * v[:, :, None] * v[:, None, :]  # (L, 3, 3)
    diagonal = w * w - np.einsum("li,li->l", v, v)
    rt[:, [0, 1, 2], [0, 1, 2]] += diagonal[:, None]
    wv = 2.0 * w[:, None] * v  # skew part of R.T: -2 w [v]x
    rt[:, 0, 1] += wv[:, 2]
    rt[:, 1, 0] -= wv[:, 2]
    rt[:, 0, 2] -= wv[:, 1]
    rt[:, 2, 0] += wv[:, 1]
    rt[:, 1, 2] += wv[:, 0]
    rt[:, 2, 1] -= wv[:, 0]
    weights = np.empty((len(head_quats), len(_PAIRS)))
    weights[:, 0] = 1.0
    weights[:, 1:] = rt.reshape(-1, 9)[:, _PAIR_FLAT]
    return weights


class BlockRenderer:
    """Renders a stream of AmbiX blocks for ``listeners`` head-tracked listeners at once.

    Call :meth:`set_orientations` whenever new head poses arrive (any time, any
    subset of listeners), and :meth:`process` once per block. ``process`` takes
    (4, block_size) and returns (listeners, outputs, block_size) float64.
    """

    def __init__(
        self,
        decoder: Decoder,
        block_size: int,
        listeners: int = 1,
        sample_rate: int | None = None,
        transition_ms: float = 20.0,
    ) -> None:
        if not MIN_BLOCK <= int(block_size) <= MAX_BLOCK:
            raise InputError(
                f"block size must be {MIN_BLOCK}..{MAX_BLOCK} samples, got {block_size}"
            )
        if int(listeners) < 1:
            raise InputError(f"need at least one listener, got {listeners}")
        rate = int(sample_rate or decoder.sample_rate)
        if decoder.taps > 1 and rate != decoder.sample_rate:
            raise InputError(
                f"decoder {decoder.name!r} is designed for {decoder.sample_rate} Hz, "
                f"not {rate} Hz: design it for the stream's rate"
            )
        self.decoder = decoder
        self.block_size = int(block_size)
        self.listeners = int(listeners)
        self.sample_rate = rate
        self.transition_samples = max(1, round(transition_ms * 1e-3 * rate))

        b = self.block_size
        partitions = -(-decoder.taps // b)
        padded = np.zeros((decoder.outputs, 4, partitions * b))
        padded[:, :, : decoder.taps] = decoder.filters
        # Filter spectra per partition: (partitions, outputs, 4, b + 1).
        parts = padded.reshape(decoder.outputs, 4, partitions, b).transpose(2, 0, 1, 3)
        # Filter spectra of each pair's decoder channel k: (partitions, outputs, 10, b + 1).
        self._pair_spectra = np.fft.rfft(parts, n=2 * b, axis=-1)[:, :, _PAIR_K]
        self._history = np.zeros((partitions, 4, b + 1), dtype=np.complex128)  # input spectra
        self._previous = np.zeros((4, b))
        self._ramp = (np.arange(1, b + 1) / b)[None, :]

        identity = np.tile([1.0, 0.0, 0.0, 0.0], (self.listeners, 1))
        self._current = identity.copy()  # head orientation applied at the end of the last block
        self._target = identity.copy()
        self._remaining = np.zeros(self.listeners)  # samples left in each transition
        self._weights = _compensation_weights(self._current)  # weights at the block edge

    @property
    def outputs(self) -> int:
        return self.decoder.outputs

    def set_orientations(
        self, quats: np.ndarray, listeners: np.ndarray | None = None, immediate: bool = False
    ) -> None:
        """Set new head orientations (n, 4) as (w, x, y, z) for ``listeners`` (default: all).

        The renderer glides to them over ``transition_ms``; ``immediate=True`` jumps at once
        (for a session's first pose, before any audio has been heard). Raises
        :class:`InputError` for NaN/Inf or zero-norm quaternions; nothing changes then.
        """
        q = normalize_quaternion(np.atleast_2d(np.asarray(quats, dtype=np.float64)))
        idx = np.arange(self.listeners) if listeners is None else np.asarray(listeners, dtype=int)
        if q.shape[0] != idx.shape[0]:
            raise InputError(f"got {q.shape[0]} orientations for {idx.shape[0]} listeners")
        if idx.size and (idx.min() < 0 or idx.max() >= self.listeners):
            raise InputError(f"listener index out of range 0..{self.listeners - 1}")
        self._target[idx] = q
        if immediate:
            self._current[idx] = q
            self._remaining[idx] = 0
            self._weights = _compensation_weights(self._current)
        else:
            self._remaining[idx] = self.transition_samples

    def reset(self) -> None:
        """Forget the signal history (orientations are kept)."""
        self._history[:] = 0
        self._previous[:] = 0

    def _advance_orientations(self) -> tuple[np.ndarray, np.ndarray]:
        """Mixing weights (L, 10) at the start and end of this block; steps the transitions."""
        start = self._weights
        moving = self._remaining > 0
        if not np.any(moving):
            return start, start
        fraction = np.minimum(1.0, self.block_size / np.maximum(self._remaining, 1.0))
        fraction[~moving] = 0.0
        self._current = _slerp_rows(self._current, self._target, fraction)
        self._remaining = np.maximum(self._remaining - self.block_size, 0)
        self._weights = _compensation_weights(self._current)
        return start, self._weights

    def process(self, block: np.ndarray) -> np.ndarray:
        """Render one block (4, block_size) of AmbiX; returns (listeners, outputs, block_size)."""
        x = np.asarray(block, dtype=np.float64)
        if x.shape != (4, self.block_size):
            raise InputError(f"block must have shape (4, {self.block_size}), got {x.shape}")
        require_finite("FOA block", x)
        b = self.block_size
        spectrum = np.fft.rfft(np.concatenate([self._previous, x], axis=1), axis=1)  # (4, b+1)
        self._previous = x
        self._history[1:] = self._history[:-1]
        self._history[0] = spectrum
        # z[o, pair] = D[o, k] * x[j] for the ten (k, j) pairs, summed over partitions.
        z_spec = np.einsum("pqf,poqf->oqf", self._history[:, _PAIR_J], self._pair_spectra)
        z = np.fft.irfft(z_spec, n=2 * b, axis=-1)[..., b:]  # (outputs, 10, b)
        z = z.transpose(1, 0, 2).reshape(len(_PAIRS), self.outputs * b)
        start, end = self._advance_orientations()
        out = start @ z
        if end is not start:
            ramped = (z.reshape(len(_PAIRS), self.outputs, b) * self._ramp).reshape(len(_PAIRS), -1)
            out += (end - start) @ ramped
        return out.reshape(self.listeners, self.outputs, b)
