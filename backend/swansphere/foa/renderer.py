"""Streaming block renderer: AmbiX FOA blocks in, head-tracked output blocks out, many listeners.

Every listener hears the same FOA stream through the same linear decoder, each with
their own head orientation. Because rotation and decoding are both linear,

    out_l = sum_k D_k * (M_l x)_k = sum_{k,j} M_l[k, j] (D_k * x_j)

so the 4 x 4 filtered signals z_kj = D_k * x_j are computed once per block (uniformly
partitioned overlap-save FFT convolution, no added latency) and each listener only
pays a 16-term weighted sum: N listeners cost one convolution pass plus a small
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
from swansphere.foa.rotation import foa_rotation_matrix, normalize_quaternion, quat_to_matrix

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


def _compensation_weights(head_quats: np.ndarray) -> np.ndarray:
    """Flattened 4x4 AmbiX mixing matrices (L, 16) undoing head rotations (L, 4)."""
    inverse = np.swapaxes(quat_to_matrix(head_quats), -1, -2)
    return foa_rotation_matrix(inverse).reshape(len(head_quats), 16)


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
        self._filter_spectra = np.fft.rfft(parts, n=2 * b, axis=-1)
        self._history = np.zeros((partitions, 4, b + 1), dtype=np.complex128)  # input spectra
        self._previous = np.zeros((4, b))
        self._ramp = (np.arange(1, b + 1) / b)[None, :]

        identity = np.tile([1.0, 0.0, 0.0, 0.0], (self.listeners, 1))
        self._current = identity.copy()  # head orientation applied at the end of the last block
        self._target = identity.copy()
        self._remaining = np.zeros(self.listeners)  # samples left in each transition

    @property
    def outputs(self) -> int:
        return self.decoder.outputs

    def set_orientations(self, quats: np.ndarray, listeners: np.ndarray | None = None) -> None:
        """Set new head orientations (n, 4) as (w, x, y, z) for ``listeners`` (default: all).

        Raises :class:`InputError` for NaN/Inf or zero-norm quaternions; nothing changes then.
        """
        q = normalize_quaternion(np.atleast_2d(np.asarray(quats, dtype=np.float64)))
        idx = np.arange(self.listeners) if listeners is None else np.asarray(listeners, dtype=int)
        if q.shape[0] != idx.shape[0]:
            raise InputError(f"got {q.shape[0]} orientations for {idx.shape[0]} listeners")
        if idx.size and (idx.min() < 0 or idx.max() >= self.listeners):
            raise InputError(f"listener index out of range 0..{self.listeners - 1}")
        self._target[idx] = q
        self._remaining[idx] = self.transition_samples

    def reset(self) -> None:
        """Forget the signal history (orientations are kept)."""
        self._history[:] = 0
        self._previous[:] = 0

    def _advance_orientations(self) -> tuple[np.ndarray, np.ndarray]:
        """Mixing weights (L, 16) at the start and end of this block; steps the transitions."""
        start = _compensation_weights(self._current)
        moving = self._remaining > 0
        if not np.any(moving):
            return start, start
        fraction = np.where(
            moving, np.minimum(1.0, self.block_size / np.maximum(self._remaining, 1)), 0.0
        )
        self._current = _slerp_rows(self._current, self._target, fraction)
        self._remaining = np.maximum(self._remaining - self.block_size, 0)
        return start, _compensation_weights(self._current)

    def process(self, block: np.ndarray) -> np.ndarray:
        """Render one block (4, block_size) of AmbiX; returns (listeners, outputs, block_size)."""
        x = np.asarray(block, dtype=np.float64)
        if x.shape != (4, self.block_size):
            raise InputError(f"block must have shape (4, {self.block_size}), got {x.shape}")
        require_finite("FOA block", x)
        b = self.block_size
        spectrum = np.fft.rfft(np.concatenate([self._previous, x], axis=1), axis=1)  # (4, b+1)
        self._previous = x
        self._history = np.roll(self._history, 1, axis=0)
        self._history[0] = spectrum
        # z[o, k, j] = D[o, k] * x[j]: every decoder filter applied to every input channel.
        z_spec = np.einsum("pjf,pokf->okjf", self._history, self._filter_spectra, optimize=True)
        z = np.fft.irfft(z_spec, n=2 * b, axis=-1)[..., b:]  # (outputs, 4, 4, b)
        z = z.reshape(self.outputs, 16, b).transpose(1, 0, 2).reshape(16, self.outputs * b)
        start, end = self._advance_orientations()
        out = start @ z
        if end is not start:
            ramped = (z.reshape(16, self.outputs, b) * self._ramp).reshape(16, -1)
            out += (end - start) @ ramped
        return out.reshape(self.listeners, self.outputs, b)
