"""Reading and writing audio files, AmbiX FOA in particular.

FOA files are WAV (WAVE_FORMAT_EXTENSIBLE) with 4 channels in ACN order (W, Y, Z, X),
SN3D, float32 by default. Arrays in memory are (channels, samples) float64.
Writes are atomic: a temporary file in the same folder is renamed into place, so a
crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from swansphere.errors import InputError, require_finite
from swansphere.permissions import publish

SUPPORTED_SAMPLE_RATES = (16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)


def check_sample_rate(sample_rate: int) -> int:
    """Return ``sample_rate`` as int, or raise :class:`InputError` naming the supported rates."""
    if int(sample_rate) != sample_rate or int(sample_rate) not in SUPPORTED_SAMPLE_RATES:
        raise InputError(
            f"unsupported sample rate {sample_rate} Hz; supported: "
            + ", ".join(str(r) for r in SUPPORTED_SAMPLE_RATES)
        )
    return int(sample_rate)


def resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (scipy resample_poly, exact rational ratio) of (..., n) audio
    from ``rate`` to ``target`` Hz; the same array when the rates match."""
    from scipy.signal import resample_poly

    if rate == target:
        return audio
    g = math.gcd(int(rate), int(target))
    return resample_poly(audio, target // g, rate // g, axis=-1)


def read_audio(path: str | os.PathLike, channels: int | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as (channels, samples) float64 and its sample rate in Hz.

    Raises :class:`InputError` if the file is missing or unreadable, has a channel
    count other than ``channels`` (when given), or holds NaN/Inf samples.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"audio file not found: {p}")
    try:
        data, rate = sf.read(str(p), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise InputError(f"cannot read audio file {p}: {exc}") from exc
    if channels is not None and data.shape[1] != channels:
        raise InputError(f"{p} has {data.shape[1]} channel(s); expected {channels}")
    if data.shape[0] == 0:
        raise InputError(f"{p} holds no samples")
    require_finite(f"audio in {p}", data)
    return data.T.copy(), int(rate)


def read_foa(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an AmbiX FOA file: (4, samples) float64 in ACN/SN3D, and the sample rate."""
    return read_audio(path, channels=4)


def write_audio(
    path: str | os.PathLike, audio: np.ndarray, sample_rate: int, subtype: str = "FLOAT"
) -> Path:
    """Write (channels, samples) audio as WAV (WAVE_FORMAT_EXTENSIBLE), atomically.

    ``subtype`` is a libsndfile subtype such as 'FLOAT' or 'PCM_24'.
    """
    a = np.asarray(audio, dtype=np.float64)
    if a.ndim != 2:
        raise InputError(f"audio to write must be (channels, samples), got shape {a.shape}")
    require_finite("audio to write", a)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        sf.write(tmp, a.T, int(sample_rate), subtype=subtype, format="WAVEX")
        publish(tmp)  # mkstemp's file is private
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def write_foa(
    path: str | os.PathLike, foa: np.ndarray, sample_rate: int, subtype: str = "FLOAT"
) -> Path:
    """Write AmbiX FOA (4, samples) as a 4-channel WAVE_FORMAT_EXTENSIBLE file, atomically."""
    a = np.asarray(foa)
    if a.ndim != 2 or a.shape[0] != 4:
        raise InputError(f"FOA to write must have shape (4, samples), got {a.shape}")
    return write_audio(path, a, sample_rate, subtype)
