"""Model FOA chunks -> output-rate, head-tracked, decoded PCM blocks.

The generator emits AmbiX (W, Y, Z, X; SN3D) patches at the model rate (22.05 kHz for
tiny); the listener wants 44.1/48 kHz blocks of ``chunk_samples``. :class:`OutputRenderer`
resamples as a stream (:class:`swansphere.foa.resample.StreamingResampler`; its filter
delay is dropped so output sample n is model time n / rate), buffers, and renders each
block with the head orientation passed at that moment through
:class:`swansphere.foa.renderer.BlockRenderer` (slerp-smoothed, no clicks).
"""

from __future__ import annotations

import numpy as np

from swansphere.foa.formats import build_decoder
from swansphere.foa.renderer import BlockRenderer
from swansphere.foa.resample import StreamingResampler
from swansphere.foa.rotation import normalize_quaternion
from swansphere.serve.types import OutputSpec


class OutputRenderer:
    """Streams FOA chunks in (:meth:`push`) and head-tracked blocks out (:meth:`render`)."""

    def __init__(self, spec: OutputSpec, model_rate: int, head: np.ndarray | None = None) -> None:
        self.spec = spec
        self.decoder = build_decoder(spec.format, spec.sample_rate, spec.hrtf)
        self.resampler = StreamingResampler(model_rate, spec.sample_rate, 4)
        self.blocks = BlockRenderer(self.decoder, spec.chunk_samples, sample_rate=spec.sample_rate)
        self.block = spec.chunk_samples
        self._skip = self.resampler.delay  # filter warm-up samples still to drop
        self._fifo = np.zeros((4, 0))
        self._flushed = False
        self._head = np.array([1.0, 0, 0, 0])
        if head is not None:
            self.set_head(head, immediate=True)

    @property
    def channels(self) -> int:
        return self.decoder.outputs

    @property
    def layout(self) -> tuple[str, ...]:
        return self.decoder.labels

    def push(self, foa: np.ndarray) -> None:
        """Add a model-rate FOA chunk (4, n)."""
        y = self.resampler.process(foa)
        if self._skip:
            cut = min(self._skip, y.shape[1])
            y, self._skip = y[:, cut:], self._skip - cut
        self._fifo = np.concatenate([self._fifo, y], axis=1)

    def flush(self) -> None:
        """End of stream: push the resampler's tail and zero-pad to a whole block."""
        if self._flushed:
            return
        self._flushed = True
        self.push(
            np.zeros((4, self.resampler.delay * self.resampler.down // self.resampler.up + 2))
        )
        partial = self._fifo.shape[1] % self.block
        if partial:
            self._fifo = np.concatenate([self._fifo, np.zeros((4, self.block - partial))], axis=1)

    def ready(self) -> int:
        """Whole blocks buffered."""
        return self._fifo.shape[1] // self.block

    def discard(self) -> int:
        """Drop every buffered whole block (stale audio after a client stall); returns the count."""
        n = self.ready()
        self._fifo = self._fifo[:, n * self.block :]
        return n

    def set_head(self, quat: np.ndarray, immediate: bool = False) -> None:
        q = normalize_quaternion(np.asarray(quat, dtype=np.float64))
        if immediate or not np.allclose(q, self._head):
            self._head = q
            self.blocks.set_orientations(q[None], immediate=immediate)

    def render(self) -> np.ndarray:
        """Render the next buffered block: (channels, chunk_samples) float32."""
        x, self._fifo = self._fifo[:, : self.block], self._fifo[:, self.block :]
        return self.blocks.process(x)[0].astype(np.float32)


def encode_pcm(block: np.ndarray, sample_format: str) -> bytes:
    """(channels, n) float -> interleaved little-endian bytes (float32, or int16 clipped)."""
    frames = np.asarray(block).T
    if sample_format == "int16":
        return (np.clip(frames, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()
    return frames.astype("<f4").tobytes()


def decode_pcm(data: bytes, channels: int, sample_format: str) -> np.ndarray:
    """Inverse of :func:`encode_pcm`: bytes -> (channels, n) float32."""
    if sample_format == "int16":
        x = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768
    else:
        x = np.frombuffer(data, dtype="<f4").astype(np.float32)
    return x.reshape(-1, channels).T
