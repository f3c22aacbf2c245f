"""Where OSC-driven audio goes: the sound card (pyo, PortAudio or JACK) when there is one,
else a WAV file whose path is reported back.

pyo aborts the process when PortAudio finds no device, so devices are counted in a
throw-away subprocess first (:func:`output_device_count`); a machine without audio
hardware gets a :class:`WavSink`, never a crash.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)

_PROBE = "import pyo; outs = pyo.pa_get_output_devices()[0]; print(len(outs))"


def output_device_count(timeout: float = 15.0) -> int:
    """Audio output devices PortAudio sees, probed in a subprocess (0 on any failure)."""
    if os.environ.get("SWANSPHERE_NO_AUDIO_DEVICE"):
        return 0
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout
        )
        return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else 0
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return 0


class WavSink:
    """Writes float32 blocks (channels, n) to a WAV file as they come."""

    kind = "file"

    def __init__(self, path: str | Path, sample_rate: int, channels: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = sf.SoundFile(
            str(self.path), "w", samplerate=sample_rate, channels=channels, subtype="FLOAT"
        )
        self.frames = 0

    def write(self, block: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(block.T))
        self.frames += block.shape[1]

    def close(self) -> None:
        self._file.close()


class PyoSink:
    """Plays blocks through pyo: one looping ring table per channel that a TableRead
    plays from the moment the server starts; blocks are written into the ring (numpy view
    of the table buffer) at their sample offset. Not exercised here (the build machine
    has no audio device); the WAV path is the tested one."""

    kind = "device"

    def __init__(self, sample_rate: int, channels: int, ring_s: float = 2.0, jack: bool = False):
        import pyo

        self._server = pyo.Server(
            sr=sample_rate, nchnls=channels, duplex=0, audio="jack" if jack else "portaudio"
        )
        self._server.boot()
        self.size = int(ring_s * sample_rate)
        self._tables = [pyo.DataTable(self.size) for _ in range(channels)]
        self._views = [np.asarray(t.getBuffer()) for t in self._tables]
        freq = sample_rate / self.size
        self._readers = [
            pyo.TableRead(t, freq=freq, loop=1).out(ch) for ch, t in enumerate(self._tables)
        ]
        self._server.start()
        self._started = time.monotonic()
        self.frames = 0
        self.path = None

    def write(self, block: np.ndarray) -> None:
        n = block.shape[1]
        start = self.frames % self.size
        for view, ch in zip(self._views, block, strict=True):
            first = min(n, self.size - start)
            view[start : start + first] = ch[:first]
            view[: n - first] = ch[first:]
        self.frames += n

    def close(self) -> None:
        self._server.stop()
        self._server.shutdown()


def open_sink(sample_rate: int, channels: int, out_dir: Path, prefer_device: bool = True):
    """A :class:`PyoSink` if an output device exists (and pyo boots), else a :class:`WavSink`
    in ``out_dir`` named by the time."""
    if prefer_device and output_device_count() > 0:
        try:
            return PyoSink(sample_rate, channels)
        except Exception as exc:  # pyo raises plain Exceptions on boot failures
            log.warning("audio device present but pyo failed (%s); writing a file", exc)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(out_dir) / f"swansphere-{stamp}-{time.monotonic_ns() % 10**6:06d}.wav"
    return WavSink(path, sample_rate, channels)
