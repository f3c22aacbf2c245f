"""Head-related impulse responses: loading SOFA files and resampling them.

A :class:`HrirSet` holds measured HRIRs as an array (M, 2, N) in the order (left, right),
one row per measured direction, with directions in our convention: azimuth counter-clockwise
from the front (+x) towards the left (+y), elevation up, both in radians.

SOFA (AES69) ``SimpleFreeFieldHRIR`` files store ``SourcePosition`` either as 'spherical'
(azimuth, elevation in degrees, distance in metres) or 'cartesian' (x, y, z in metres) in the
listener's frame, whose axes are x front (``ListenerView``), y left, z up. SOFA's spherical
azimuth therefore already runs counter-clockwise from the front (90 deg = left), exactly as ours;
only the unit changes. This is checked on the MIT KEMAR set: at azimuth +90 deg the left ear
(receiver 0, ``ReceiverPosition`` y = +0.09 m) receives about 12 dB more energy than the right.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import h5py
import numpy as np
from scipy.signal import resample_poly

from swansphere.errors import InputError
from swansphere.foa.encode import direction_to_vector, vector_to_direction
from swansphere.foa.io import SUPPORTED_SAMPLE_RATES

DEFAULT_SOFA = Path("/usr/share/libmysofa/MIT_KEMAR_normal_pinna.sofa")

#: Sample rates (Hz) an :class:`HrirSet` can be resampled to: those the audio I/O supports.
SUPPORTED_RATES = SUPPORTED_SAMPLE_RATES


@dataclass(frozen=True)
class HrirSet:
    """Measured head-related impulse responses.

    irs:         (M, 2, N) float64, ear order (left, right); N taps at ``sample_rate``.
    azimuth:     (M,) radians, counter-clockwise from the front (left = +pi/2).
    elevation:   (M,) radians, up from the horizontal plane.
    sample_rate: Hz.
    source:      where the set came from (a file path or a description).
    """

    irs: np.ndarray
    azimuth: np.ndarray
    elevation: np.ndarray
    sample_rate: int
    source: str

    def __post_init__(self) -> None:
        irs = np.asarray(self.irs, dtype=np.float64)
        az = np.asarray(self.azimuth, dtype=np.float64)
        el = np.asarray(self.elevation, dtype=np.float64)
        if irs.ndim != 3 or irs.shape[1] != 2 or irs.shape[0] < 1 or irs.shape[2] < 1:
            raise InputError(f"HRIRs must have shape (M, 2, N), got {irs.shape} ({self.source})")
        if az.shape != (irs.shape[0],) or el.shape != (irs.shape[0],):
            raise InputError(
                f"HRIR directions must have shape ({irs.shape[0]},), got azimuth {az.shape} "
                f"and elevation {el.shape} ({self.source})"
            )
        if not (np.all(np.isfinite(irs)) and np.all(np.isfinite(az)) and np.all(np.isfinite(el))):
            raise InputError(f"HRIR set {self.source} holds non-finite values")
        if int(self.sample_rate) <= 0:
            raise InputError(f"HRIR sample rate must be positive, got {self.sample_rate}")
        # Private read-only copies: sets are cached and shared (load_default_hrirs).
        for name, value in (("irs", irs), ("azimuth", az), ("elevation", el)):
            value = value.copy()
            value.flags.writeable = False
            object.__setattr__(self, name, value)
        object.__setattr__(self, "sample_rate", int(self.sample_rate))

    @property
    def directions(self) -> np.ndarray:
        """Unit vectors (M, 3) as (x, y, z) of the measured directions."""
        return direction_to_vector(self.azimuth, self.elevation)

    def nearest(self, azimuth: float, elevation: float) -> int:
        """Index of the measured direction closest (great-circle) to azimuth/elevation (rad)."""
        target = direction_to_vector(float(azimuth), float(elevation))
        return int(np.argmax(self.directions @ target))

    def resampled(self, rate: int) -> HrirSet:
        """The same set at ``rate`` Hz (polyphase resampling by the exact ratio).

        The transfer function in Hz is preserved below both Nyquist frequencies, so the IRs
        are scaled by old_rate / rate; the length becomes ceil(N * rate / old_rate). Rates
        must be in :data:`SUPPORTED_RATES`.
        """
        rate = _check_rate(rate)
        if rate == self.sample_rate:
            return self
        ratio = Fraction(rate, self.sample_rate)
        irs = resample_poly(self.irs, ratio.numerator, ratio.denominator, axis=2)
        irs *= self.sample_rate / rate
        return HrirSet(irs, self.azimuth, self.elevation, rate, self.source)


def _check_rate(rate: int) -> int:
    supported = ", ".join(str(r) for r in SUPPORTED_RATES)
    try:
        ok = not isinstance(rate, bool) and int(rate) == rate and int(rate) in SUPPORTED_RATES
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"unsupported sample rate {rate!r} Hz; supported rates: {supported}")
    return int(rate)


def _text_attr(obj: h5py.HLObject, name: str) -> str | None:
    """An HDF5 string attribute as ``str`` (SOFA stores them as fixed-length bytes)."""
    if name not in obj.attrs:
        return None
    value = obj.attrs[name]
    if isinstance(value, h5py.Empty):
        return ""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _read_array(f: h5py.File, name: str, where: str) -> np.ndarray:
    if name not in f or not isinstance(f[name], h5py.Dataset):
        raise InputError(f"{where}: missing variable {name}")
    try:
        return np.asarray(f[name][()], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: variable {name} is not numeric ({exc})") from exc


def _source_directions(f: h5py.File, count: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and elevation (radians, our convention) of the M source positions."""
    pos = _read_array(f, "SourcePosition", where)
    if pos.ndim == 2 and pos.shape == (1, 3):
        pos = np.repeat(pos, count, axis=0)  # SOFA allows one position shared by all rows
    if pos.shape != (count, 3):
        raise InputError(f"{where}: SourcePosition must have shape ({count}, 3), got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise InputError(f"{where}: SourcePosition holds non-finite values")
    kind = (_text_attr(f["SourcePosition"], "Type") or "spherical").strip().lower()
    if kind == "cartesian":
        if np.any(np.linalg.norm(pos, axis=1) == 0.0):
            raise InputError(f"{where}: a cartesian SourcePosition is at the origin")
        return vector_to_direction(pos)
    if kind == "spherical":
        units = (_text_attr(f["SourcePosition"], "Units") or "degree").lower()
        scale = 1.0 if units.startswith("rad") else np.pi / 180.0
        return pos[:, 0] * scale, pos[:, 1] * scale
    raise InputError(f"{where}: SourcePosition Type {kind!r} is neither spherical nor cartesian")


def _sampling_rate(f: h5py.File, where: str) -> int:
    rate = _read_array(f, "Data.SamplingRate", where).reshape(-1)
    if rate.size == 0 or not np.all(np.isfinite(rate)) or np.any(rate <= 0):
        raise InputError(f"{where}: Data.SamplingRate must be positive and finite, got {rate}")
    if np.any(rate != rate[0]) or rate[0] != round(rate[0]):
        raise InputError(f"{where}: Data.SamplingRate must be one integer rate, got {rate}")
    return int(rate[0])


def _apply_delays(f: h5py.File, irs: np.ndarray, where: str) -> np.ndarray:
    """Prepend ``Data.Delay`` (whole samples, (1 or M, 2)) to the IRs; most sets store zeros."""
    if "Data.Delay" not in f:
        return irs
    delay = _read_array(f, "Data.Delay", where)
    if delay.size == 1:
        delay = np.full((1, 2), delay.reshape(-1)[0])
    delay = delay.reshape(-1, delay.shape[-1]) if delay.ndim >= 2 else delay.reshape(1, -1)
    if delay.shape[1] != 2 or delay.shape[0] not in (1, irs.shape[0]):
        raise InputError(f"{where}: Data.Delay must have shape (1 or M, 2), got {delay.shape}")
    if not np.all(np.isfinite(delay)) or np.any(delay < 0) or np.any(delay != np.round(delay)):
        raise InputError(f"{where}: Data.Delay must hold whole, non-negative sample counts")
    delay = np.broadcast_to(delay.astype(int), (irs.shape[0], 2))
    if not delay.any():
        return irs
    out = np.zeros((*irs.shape[:2], irs.shape[2] + int(delay.max())))
    for m, ear in np.ndindex(*irs.shape[:2]):
        d = delay[m, ear]
        out[m, ear, d : d + irs.shape[2]] = irs[m, ear]
    return out


def load_sofa(path: str | Path = DEFAULT_SOFA) -> HrirSet:
    """Read a SOFA ``SimpleFreeFieldHRIR`` file into an :class:`HrirSet`.

    Receiver 0 is taken as the left ear unless ``ReceiverPosition`` puts it on the right
    (y < 0), in which case the ears are swapped. Raises :class:`InputError` naming the file
    and the problem for a missing or unreadable file, other conventions, a ``Data.IR`` that
    is missing or not (M, 2, N), a source-position table that does not match, non-finite IRs
    or a missing or invalid sampling rate.
    """
    path = Path(path)
    where = f"SOFA file {path}"
    if not path.is_file():
        raise InputError(f"{where} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{where} is not a readable HDF5/SOFA file ({exc})") from exc
    with f:
        conventions = _text_attr(f, "SOFAConventions")
        if conventions != "SimpleFreeFieldHRIR":
            raise InputError(
                f"{where}: SOFAConventions is {conventions!r}, expected 'SimpleFreeFieldHRIR'"
            )
        irs = _read_array(f, "Data.IR", where)
        if irs.ndim != 3 or irs.shape[0] < 1 or irs.shape[2] < 1:
            raise InputError(f"{where}: Data.IR must have shape (M, 2, N), got {irs.shape}")
        if irs.shape[1] != 2:
            raise InputError(f"{where}: Data.IR has {irs.shape[1]} receivers, expected 2 ears")
        if not np.all(np.isfinite(irs)):
            bad = int(np.count_nonzero(~np.isfinite(irs)))
            raise InputError(f"{where}: Data.IR holds {bad} non-finite value(s)")
        azimuth, elevation = _source_directions(f, irs.shape[0], where)
        rate = _sampling_rate(f, where)
        irs = _apply_delays(f, irs, where)
        if _receiver_zero_is_right(f):
            irs = irs[:, ::-1, :]
    return HrirSet(np.ascontiguousarray(irs), azimuth, elevation, rate, str(path))


def _receiver_zero_is_right(f: h5py.File) -> bool:
    """Whether ``ReceiverPosition`` ((2, 3) or (2, 3, I)) puts receiver 0 at y < 0 (right)."""
    if "ReceiverPosition" not in f or not isinstance(f["ReceiverPosition"], h5py.Dataset):
        return False
    try:
        receivers = np.asarray(f["ReceiverPosition"][()], dtype=np.float64)
    except (TypeError, ValueError):
        return False
    if receivers.ndim < 2 or receivers.shape[:2] != (2, 3):
        return False
    y = receivers[:, 1].reshape(2, -1)[:, 0]  # first measurement's y of each receiver
    return bool(y[0] < 0 < y[1])


@lru_cache(maxsize=8)
def load_default_hrirs(sample_rate: int = 44100) -> HrirSet:
    """The MIT KEMAR (normal pinna) set at ``sample_rate`` Hz, loaded once and cached."""
    return load_sofa(DEFAULT_SOFA).resampled(sample_rate)
