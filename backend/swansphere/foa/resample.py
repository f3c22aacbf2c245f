"""Streaming polyphase resampling that matches the offline resampler sample for sample.

:func:`swansphere.foa.io.resample` is scipy's ``resample_poly`` (Kaiser-windowed FIR,
beta 5, half length 10 x max(up, down) taps at the upsampled rate), which is zero-phase:
it looks ahead. :class:`StreamingResampler` runs the very same filter causally, block by
block, with a constant delay of :attr:`StreamingResampler.delay` output samples:

    streaming output[n + delay] == resample(x)[n]

(to float rounding) for every n whose input support lies inside the signal. The delay is
``ceil(half_len / down)`` output samples: 10 input samples at 22.05 -> 48 kHz (0.45 ms).
Arrays are (channels, samples); rates in Hz.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import firwin

from swansphere.errors import InputError


def resample_filter(rate: int, target: int) -> tuple[np.ndarray, int, int, int]:
    """The FIR ``resample_poly`` uses for ``rate`` -> ``target`` Hz, front-padded as it does.

    Returns (h, up, down, delay): h at the upsampled rate (gain ``up`` in the pass band),
    the reduced ratio up/down, and the delay in output samples of a causal run of h.
    """
    if int(rate) <= 0 or int(target) <= 0:
        raise InputError(f"sample rates must be positive, got {rate} -> {target} Hz")
    g = math.gcd(int(rate), int(target))
    up, down = int(target) // g, int(rate) // g
    if up == down == 1:
        return np.ones(1), 1, 1, 0
    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * up
    pre_pad = down - half_len % down  # as scipy: makes (half_len + pre_pad) a multiple of down
    h = np.concatenate([np.zeros(pre_pad), h])
    return h, up, down, (half_len + pre_pad) // down


class StreamingResampler:
    """Causal polyphase resampler for (channels, n) blocks of any length.

    Output sample m (counted from the start of the stream) is
    ``y[m] = sum_i x[i] h[m * down - i * up]``; it is emitted as soon as every input it
    depends on has arrived, so the concatenated outputs of any block split are identical.
    """

    def __init__(self, rate: int, target: int, channels: int) -> None:
        self.rate, self.target, self.channels = int(rate), int(target), int(channels)
        h, self.up, self.down, self.delay = resample_filter(rate, target)
        # Phase p holds taps h[p], h[p + up], h[p + 2 up], ...: (up, taps_per_phase),
        # stored oldest input first so that a window of consecutive inputs meets it in order.
        taps = -(-len(h) // self.up)
        padded = np.zeros(taps * self.up)
        padded[: len(h)] = h
        self._phases = padded.reshape(taps, self.up).T[:, ::-1].copy()
        self._taps = taps
        self._history = np.zeros((self.channels, taps - 1))  # the last inputs before this block
        self._received = 0  # input samples so far
        self._emitted = 0  # output samples so far

    def process(self, block: np.ndarray) -> np.ndarray:
        """Feed (channels, n) input; returns every output sample now computable (channels, m)."""
        x = np.asarray(block, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise InputError(f"block must have shape ({self.channels}, n), got {x.shape}")
        if self.up == self.down:
            self._received += x.shape[1]
            self._emitted += x.shape[1]
            return x.copy()
        ext = np.concatenate([self._history, x], axis=1)  # ext[k] = input[received - taps+1 + k]
        start = self._received - (self._taps - 1)
        self._received += x.shape[1]
        # Outputs m with floor(m * down / up) <= received - 1.
        end = (self._received * self.up - 1) // self.down + 1
        m = np.arange(self._emitted, end)
        self._emitted = end
        if ext.shape[1] >= self._taps - 1:
            self._history = ext[:, ext.shape[1] - (self._taps - 1) :]
        if m.size == 0:
            return np.zeros((self.channels, 0))
        base = (m * self.down) // self.up  # newest input index feeding output m
        phase = (m * self.down) % self.up
        # Output m reads the taps inputs ending at base: one row of the sliding windows of
        # ext (a view), gathered as whole rows, 3x faster than an element-wise gather.
        # Rows are >= 0 as the history covers taps - 1 inputs.
        windows = sliding_window_view(ext, self._taps, axis=1)  # (channels, n', taps)
        frames = windows[:, base - start - (self._taps - 1)]  # (channels, m, taps)
        return np.einsum("cmt,mt->cm", frames, self._phases[phase])

    def reset(self) -> None:
        """Start a new stream (delay line cleared, counters zeroed)."""
        self._history[:] = 0
        self._received = self._emitted = 0
