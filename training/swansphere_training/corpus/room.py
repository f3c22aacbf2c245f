"""Shoebox room acoustics for the procedural corpus: moving mono sources to AmbiX FOA.

A source is rendered as three parts that add up to the clip's FOA:

1. **Direct path**: the source position (interpolated from keyframes) gives the
   distance r(t), the gain ``1 / max(r, NEAR_FIELD_M)``, the propagation delay ``r / c``
   (a 4-tap Lagrange fractional delay, so a moving source gets its Doppler shift) and the
   plane-wave encoding direction. For a moving source the geometry is evaluated every 32
   samples and interpolated linearly per sample; the delay uses r at the time of arrival
   rather than at emission, an error of ``v / c`` of the delay (under 1 % for any speed
   the corpus uses). A static source's direct path is a fixed fractional-delay tap.
2. **Early reflections**: shoebox image sources up to ``max_order`` (Allen & Berkley).
   Each image is attenuated by the product of its walls' specular reflection
   coefficients ``sqrt((1 - alpha) (1 - scattering))``, by ``1 / r``, delayed by ``r / c``
   (Lagrange taps) and encoded at its own direction. All reflections share an optional
   one-pole low-pass (``Room.reflection_cutoff_hz``): absorption and scattering of real
   surfaces rise with frequency, so reflections are darker than the direct sound. For a
   moving source the images are re-computed at anchors every ~93 ms (186 ms in halls);
   the source is cut into triangular-windowed segments (a partition of unity) and each
   segment is convolved with the image response of its anchor, so reflections follow the
   source smoothly (piecewise-static delays: reflections carry no Doppler shift of their
   own, and a fast source's reflection is briefly smeared over two delays).
3. **Late diffuse tail**: exponentially decaying Gaussian noise, independent in each of
   the four channels with isotropic SN3D statistics (each dipole at 1/3 of W's power),
   faster decay above ``TAIL_CROSSOVER_HZ``. It fades in (raised cosine) from the first
   reflection to the median image delay, where the discrete reflections thin out. In each
   1/6-octave band the dipoles are made orthogonal to W, so the realised tail has no net
   intensity of its own (a diffuse field has none; a raw noise draw has a random one).

A static source is one FFT convolution with a single (4, L) response holding all three
parts; a moving source adds the per-sample direct path and the segment convolution to one
FFT convolution with the tail.

Tail level (diffuse-field theory, Kuttruff, *Room Acoustics*, ch. 5): with the direct
path normalised to energy ``1 / r**2`` (gain 1 at 1 m), the reverberant energy arriving
``t`` seconds after the direct sound has the density

    E(t) = (4 pi c / V) exp(-t / tau),   tau = RT60 / (6 ln 10)

per second; its integral ``4 pi c tau / V = 16 pi / A`` (``A = 24 ln10 V / (c RT60)``,
the equivalent absorption area) is ``1 / r_c**2`` with the critical distance
``r_c = sqrt(A / (16 pi))``, so the classic direct-to-reverberant ratio is
``20 log10(r_c / r)`` dB. The tail carries ``E(t)`` times its fade-in; the part before the
fade is carried by the image sources. Above the crossover, tau shrinks by
``Room.rt60_hf_ratio`` (air and wall absorption rise with frequency).

Geometry: the room spans ``[0, Lx] x [0, Ly] x [0, Lz]`` in room coordinates, axes
parallel to the listener's (x front, y left, z up), so the listener faces the ``x = Lx``
wall. Source positions are given relative to the listener, in metres. Output is AmbiX
(ACN W, Y, Z, X; SN3D), float32. The speed of sound is ``SPEED_OF_SOUND_M_S``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft
import scipy.signal

from swansphere.errors import InputError, require_finite

SPEED_OF_SOUND_M_S = 343.0
NEAR_FIELD_M = 0.5  # gain clamp: closer sources are as loud as at 0.5 m
MAX_IMAGE_ORDER = 4
WALLS = ("back", "front", "right", "left", "floor", "ceiling")  # x=0, x=Lx, y=0, y=Ly, z=0, z=Lz
TAIL_CROSSOVER_HZ = 2000.0  # the tail's high band decays rt60_hf_ratio times faster
ANCHOR_SECONDS = 0.093  # spacing of image-source updates for moving sources
_CONTROL_STEP = 32  # samples between direct-path geometry updates of a moving source
_SABINE_K = 24.0 * np.log(10.0) / SPEED_OF_SOUND_M_S  # RT60 = K V / A  (0.161 s/m)
_MIN_MEAN_ABSORPTION = 0.01  # below this RT60 runs to minutes: a data error, not a room


def _as_vector(name: str, value: Any, length: int) -> tuple[float, ...]:
    """Validate a finite float vector of ``length`` and return it as a tuple."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (length,):
        raise InputError(f"{name} must have shape ({length},), got {arr.shape}")
    require_finite(name, arr)
    return tuple(float(v) for v in arr)


@dataclass(frozen=True)
class Room:
    """A shoebox room (or the open air) around a listener.

    ``absorption`` may be given as one float for all walls or six per-wall values in the
    order of :data:`WALLS`; it is stored as six. ``rt60_s=None`` derives RT60 by Eyring's
    formula from the absorption; a given value overrides it (only the tail's decay and level
    use RT60; reflections always use the absorption). Outdoors there are no walls and no
    tail: only the ground (``absorption[4]``) reflects; the other entries are stored as 1.
    """

    size: tuple[float, float, float]  # (Lx, Ly, Lz) metres
    listener: tuple[float, float, float]  # listener position in room coordinates, metres
    absorption: tuple[float, ...] | float = 0.3  # energy absorption coefficients 0..1
    rt60_s: float | None = None  # broadband (mid-frequency) reverberation time, s
    scattering: float = 0.0  # energy fraction of each reflection that is not specular, 0..1
    reflection_cutoff_hz: float | None = None  # one-pole low-pass on reflections; None: flat
    rt60_hf_ratio: float = 0.6  # RT60 above TAIL_CROSSOVER_HZ relative to rt60_s
    outdoor: bool = False  # open air: ground reflection only, no tail
    kind: str = "custom"  # label for metadata and captions ("small", "hall", ...)

    def __post_init__(self) -> None:
        size = _as_vector("room size", self.size, 3)
        if min(size) <= 0:
            raise InputError(f"room size must be positive in every dimension, got {size}")
        listener = _as_vector("listener position", self.listener, 3)
        if not all(0.0 < p < s for p, s in zip(listener, size, strict=True)):
            raise InputError(f"listener {listener} must lie strictly inside the room {size}")
        if np.ndim(self.absorption) == 0:
            absorption = _as_vector("absorption", [self.absorption] * 6, 6)
        else:
            absorption = _as_vector("absorption", self.absorption, 6)
        if self.outdoor:
            absorption = (1.0, 1.0, 1.0, 1.0, absorption[4], 1.0)
        if not all(0.0 <= a <= 1.0 for a in absorption):
            raise InputError(f"absorption coefficients must lie in [0, 1], got {absorption}")
        if not (np.isfinite(self.scattering) and 0.0 <= self.scattering <= 1.0):
            raise InputError(f"scattering must lie in [0, 1], got {self.scattering}")
        cutoff = self.reflection_cutoff_hz
        if cutoff is not None and not (np.isfinite(cutoff) and cutoff > 0):
            raise InputError(f"reflection_cutoff_hz must be positive or None, got {cutoff}")
        if not (np.isfinite(self.rt60_hf_ratio) and 0.0 < self.rt60_hf_ratio <= 1.0):
            raise InputError(f"rt60_hf_ratio must lie in (0, 1], got {self.rt60_hf_ratio}")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "listener", listener)
        object.__setattr__(self, "absorption", absorption)
        object.__setattr__(self, "rt60_s", self._checked_rt60())

    def _checked_rt60(self) -> float:
        """RT60 in seconds: 0 outdoors, the given value, or Eyring's estimate."""
        if self.outdoor:
            if self.rt60_s not in (None, 0.0):
                raise InputError(f"an outdoor room has no reverberation, got rt60_s={self.rt60_s}")
            return 0.0
        if self.rt60_s is not None:
            rt60 = float(self.rt60_s)
            if not (np.isfinite(rt60) and rt60 >= 0.0):
                raise InputError(f"rt60_s must be a finite number >= 0, got {self.rt60_s}")
            return rt60
        mean = self.mean_absorption
        if mean < _MIN_MEAN_ABSORPTION:
            raise InputError(
                f"mean absorption {mean:.4f} is below {_MIN_MEAN_ABSORPTION}: the reverberation "
                "time would be unbounded; give rt60_s or more absorption"
            )
        if mean >= 1.0:
            return 0.0
        # Eyring: RT60 = K V / (-S ln(1 - mean alpha)); tends to Sabine's K V / (S alpha).
        return float(_SABINE_K * self.volume_m3 / (-self.surface_m2 * np.log1p(-mean)))

    @property
    def volume_m3(self) -> float:
        """Room volume in cubic metres."""
        return float(np.prod(self.size))

    @property
    def wall_areas_m2(self) -> np.ndarray:
        """Areas (6,) of the walls in the order of :data:`WALLS`, square metres."""
        lx, ly, lz = self.size
        return np.array([ly * lz, ly * lz, lx * lz, lx * lz, lx * ly, lx * ly])

    @property
    def surface_m2(self) -> float:
        """Total wall area in square metres."""
        return float(self.wall_areas_m2.sum())

    @property
    def mean_absorption(self) -> float:
        """Area-weighted mean absorption coefficient."""
        return float(np.dot(self.wall_areas_m2, self.absorption) / self.surface_m2)

    @property
    def reflection_coefficients(self) -> np.ndarray:
        """Specular pressure reflection coefficients (6,): sqrt((1 - alpha) (1 - scattering))."""
        return np.sqrt((1.0 - np.asarray(self.absorption)) * (1.0 - self.scattering))

    @property
    def has_tail(self) -> bool:
        """Whether a late diffuse tail is rendered (indoors with RT60 > 0)."""
        return not self.outdoor and self.rt60_s > 0.0

    @property
    def critical_distance_m(self) -> float:
        """Distance where direct and reverberant energy are equal: sqrt(A / (16 pi)), metres.

        ``A = 24 ln10 V / (c RT60)`` is the equivalent absorption area matching RT60;
        infinite without a tail.
        """
        if not self.has_tail:
            return float("inf")
        area = _SABINE_K * self.volume_m3 / self.rt60_s
        return float(np.sqrt(area / (16.0 * np.pi)))

    def drr_db(self, distance_m: float) -> float:
        """Classic diffuse-field direct-to-reverberant ratio 20 log10(r_c / r) in dB.

        ``r`` is clamped to :data:`NEAR_FIELD_M` like the direct-path gain; +inf without a tail.
        """
        return float(20.0 * np.log10(self.critical_distance_m / max(distance_m, NEAR_FIELD_M)))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for clip metadata (``json.dumps`` takes it as is)."""
        return {
            "kind": self.kind,
            "outdoor": self.outdoor,
            "size_m": list(self.size),
            "listener_m": list(self.listener),
            "absorption": list(self.absorption),
            "walls": list(WALLS),
            "scattering": self.scattering,
            "reflection_cutoff_hz": self.reflection_cutoff_hz,
            "rt60_s": self.rt60_s,
            "rt60_hf_ratio": self.rt60_hf_ratio,
            "volume_m3": self.volume_m3,
            "critical_distance_m": None if not self.has_tail else self.critical_distance_m,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Room:
        """Rebuild a room from :meth:`to_json` output (derived fields are recomputed)."""
        try:
            return cls(
                size=tuple(data["size_m"]),
                listener=tuple(data["listener_m"]),
                absorption=tuple(data["absorption"]),
                rt60_s=data["rt60_s"],
                scattering=data.get("scattering", 0.0),
                reflection_cutoff_hz=data.get("reflection_cutoff_hz"),
                rt60_hf_ratio=data.get("rt60_hf_ratio", 0.6),
                outdoor=bool(data.get("outdoor", False)),
                kind=str(data.get("kind", "custom")),
            )
        except KeyError as missing:
            raise InputError(f"room metadata lacks the field {missing}") from None


# Room families drawn by random_room: probability, size ranges (Lx, Ly, Lz) in metres,
# absorption ranges of walls, floor and ceiling. Floors and ceilings are fairly
# absorptive (carpets, furniture, audience seating, acoustic ceilings), which is what
# keeps the direct sound the dominant arrival at the corpus' distances.
_ROOM_FAMILIES: dict[str, dict[str, Any]] = {
    "small": {
        "p": 0.3,
        "size": ((3.0, 5.5), (2.5, 4.5), (2.4, 3.0)),
        "walls": (0.08, 0.4),
        "floor": (0.3, 0.7),
        "ceiling": (0.3, 0.8),
    },
    "medium": {
        "p": 0.3,
        "size": ((5.5, 12.0), (4.5, 9.0), (2.7, 4.5)),
        "walls": (0.06, 0.35),
        "floor": (0.3, 0.7),
        "ceiling": (0.3, 0.8),
    },
    "hall": {
        "p": 0.2,
        "size": ((14.0, 40.0), (10.0, 25.0), (6.0, 15.0)),
        "walls": (0.04, 0.25),
        "floor": (0.4, 0.8),
        "ceiling": (0.2, 0.6),
    },
    "outdoor": {
        "p": 0.2,
        "size": ((200.0, 200.0), (200.0, 200.0), (60.0, 60.0)),
        "floor": (0.6, 0.95),
    },
}


def random_room(rng: np.random.Generator) -> Room:
    """Draw a small room, a medium room, a hall or the open air (probabilities 0.3/0.3/0.2/0.2).

    The listener stands at ear height (1.2..1.8 m, at most 1 m below the ceiling) at least
    1 m from every wall. Outdoors the listener is in the middle of a 200 m square whose
    only reflecting surface is soft ground (absorption 0.6..0.95).
    """
    names = list(_ROOM_FAMILIES)
    probs = np.array([_ROOM_FAMILIES[k]["p"] for k in names])
    kind = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    family = _ROOM_FAMILIES[kind]
    size = np.array([rng.uniform(lo, hi) for lo, hi in family["size"]])
    height = rng.uniform(1.2, min(1.8, size[2] - 1.0))
    # Furnished rooms: scattering 0.3..0.7 and reflections darker than the direct sound
    # (absorption of carpets, curtains, seats and tiles rises with frequency).
    scattering = float(rng.uniform(0.3, 0.7))
    cutoff = float(rng.uniform(2000.0, 6000.0))
    if kind == "outdoor":
        listener = np.array([size[0] / 2, size[1] / 2, height])
        ground = float(rng.uniform(*family["floor"]))
        return Room(
            tuple(size),
            tuple(listener),
            ground,
            scattering=scattering,
            reflection_cutoff_hz=cutoff,
            rt60_hf_ratio=1.0,
            outdoor=True,
            kind=kind,
        )
    listener = np.array([rng.uniform(1.0, size[0] - 1.0), rng.uniform(1.0, size[1] - 1.0), height])
    walls = rng.uniform(*family["walls"], size=4)
    absorption = (*walls, rng.uniform(*family["floor"]), rng.uniform(*family["ceiling"]))
    return Room(
        tuple(size),
        tuple(listener),
        absorption,
        scattering=scattering,
        reflection_cutoff_hz=cutoff,
        rt60_hf_ratio=float(rng.uniform(0.45, 0.8)),
        kind=kind,
    )


def fit_to_room(room: Room, positions: np.ndarray, margin_m: float = 0.25) -> np.ndarray:
    """Pull positions (..., 3) towards the listener until they are ``margin_m`` inside the room.

    Each position keeps its direction from the listener (so azimuth/elevation ground truth
    is unchanged); only its distance shrinks where the wall is nearer. Positions are
    relative to the listener, metres. ``margin_m`` must be below the listener's distance to
    the nearest wall.
    """
    p = np.asarray(positions, dtype=np.float64)
    if p.shape[-1:] != (3,):
        raise InputError(f"positions must have shape (..., 3), got {p.shape}")
    require_finite("positions", p)
    size, listener = np.asarray(room.size), np.asarray(room.listener)
    if margin_m < 0 or margin_m >= np.min(np.minimum(listener, size - listener)):
        raise InputError(f"margin_m={margin_m} must be >= 0 and below the listener's wall distance")
    dist = np.linalg.norm(p, axis=-1, keepdims=True)
    u = p / np.maximum(dist, 1e-12)
    # Distance along u to the inner box [margin, size - margin] on each axis.
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(u > 0, (size - margin_m - listener) / u, (margin_m - listener) / u)
    reach = np.min(np.where(np.abs(u) > 1e-12, bound, np.inf), axis=-1, keepdims=True)
    return u * np.minimum(dist, reach)


def _image_lattice(
    room: Room, max_order: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The images of a shoebox as affine maps of the listener-relative source position.

    Per axis an image is ``(1 - 2 q) x_s + 2 n L`` in room coordinates (q in {0, 1}, n an
    integer), reflected ``|n - q|`` times by the low wall and ``|n|`` times by the high one.
    In listener-relative coordinates it is ``sign * p + offset`` with ``sign = 1 - 2q`` and
    ``offset = (sign - 1) * listener + 2 n L``.

    Returns signs (P, 3), offsets (P, 3) metres, gains (P,) (products of reflection
    coefficients) and orders (P,), direct path first; images with zero gain are dropped.
    """
    size, listener = np.asarray(room.size), np.asarray(room.listener)
    beta = room.reflection_coefficients.reshape(3, 2)  # (axis, low/high wall)
    per_axis: list[list[tuple[int, float, float, float]]] = []
    for axis in range(3):
        entries = []
        for q in (0, 1):
            for n in range(-max_order, max_order + 1):
                low, high = abs(n - q), abs(n)
                if low + high > max_order:
                    continue
                sign = 1 - 2 * q
                offset = (sign - 1) * listener[axis] + 2 * n * size[axis]
                gain = beta[axis, 0] ** low * beta[axis, 1] ** high
                entries.append((low + high, sign, offset, gain))
        per_axis.append(entries)
    rows = []
    for ex, ey, ez in itertools.product(*per_axis):
        order = ex[0] + ey[0] + ez[0]
        gain = ex[3] * ey[3] * ez[3]
        if order <= max_order and gain > 0.0:
            rows.append((order, ex[1], ey[1], ez[1], ex[2], ey[2], ez[2], gain))
    table = np.array(sorted(rows, key=lambda row: row[0]))
    return table[:, 1:4], table[:, 4:7], table[:, 7], table[:, 0].astype(int)


def image_sources(
    room: Room, positions: np.ndarray, max_order: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image sources of listener-relative source positions (..., 3) in a shoebox room.

    Returns image positions (..., P, 3) relative to the listener in metres, their specular
    gains (P,) (products of wall reflection coefficients, 1 for the direct path) and their
    reflection orders (P,). Index 0 is the direct path (the source itself).
    """
    order = _checked_order(max_order)
    p = np.asarray(positions, dtype=np.float64)
    if p.shape[-1:] != (3,):
        raise InputError(f"positions must have shape (..., 3), got {p.shape}")
    require_finite("positions", p)
    signs, offsets, gains, orders = _image_lattice(room, order)
    return p[..., None, :] * signs + offsets, gains, orders


def _checked_order(max_order: int) -> int:
    if isinstance(max_order, bool) or not isinstance(max_order, int | np.integer):
        raise InputError(f"max_order must be an integer, got {max_order!r}")
    if not 0 <= max_order <= MAX_IMAGE_ORDER:
        raise InputError(f"max_order must lie in 0..{MAX_IMAGE_ORDER}, got {max_order}")
    return int(max_order)


def _lagrange3(frac: np.ndarray) -> np.ndarray:
    """Cubic Lagrange fractional-delay weights (4, ...) for taps at -1, 0, 1, 2 around frac."""
    f = frac
    return np.stack(
        [
            -f * (f - 1) * (f - 2) / 6,
            (f + 1) * (f - 1) * (f - 2) / 2,
            -(f + 1) * f * (f - 2) / 2,
            (f + 1) * f * (f - 1) / 6,
        ]
    )


def _positions_at(keys: np.ndarray, key_times: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Positions (len(times), 3) linearly interpolated from keyframes (held beyond the ends)."""
    if keys.shape[0] == 1:
        return np.broadcast_to(keys[0], (times.size, 3))
    return np.stack([np.interp(times, key_times, keys[:, i]) for i in range(3)], axis=-1)


def _encoding(vectors: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """AmbiX gains (4, ...) of plane waves from listener-relative vectors (..., 3) times gains.

    The near-field clamp applies: the amplitude is ``gains / max(r, NEAR_FIELD_M)``. A
    vector of zero length (source at the listener) is heard in W only.
    """
    r = np.linalg.norm(vectors, axis=-1)
    amp = gains / np.maximum(r, NEAR_FIELD_M)
    unit = vectors / np.maximum(r, 1e-9)[..., None]
    return np.stack([amp, amp * unit[..., 1], amp * unit[..., 2], amp * unit[..., 0]])


def _ramp(values: np.ndarray, step: int, n: int) -> np.ndarray:
    """Linear interpolation (..., n) of values (..., m) given every ``step`` samples."""
    start = values[..., :-1, None]
    slope = (values[..., 1:, None] - start) / step
    ramp = np.arange(step, dtype=values.dtype)
    return (start + slope * ramp).reshape(*values.shape[:-1], -1)[..., :n]


def _render_direct(
    signal: np.ndarray, keys: np.ndarray, key_times: np.ndarray, sample_rate: float
) -> np.ndarray:
    """Direct path (4, n) of a moving source: 1/r gain, fractional delay r/c, direction.

    The geometry (delay and the four AmbiX gains) is evaluated every ``_CONTROL_STEP``
    samples and interpolated linearly in between; at 44.1 kHz that is every 0.7 ms, far
    below any audible change of a physical trajectory, and ~10x cheaper than per-sample
    geometry. The delayed signal is read with a 4-tap Lagrange interpolator.
    """
    n = signal.size
    control = np.arange(0, n + _CONTROL_STEP, _CONTROL_STEP, dtype=np.float64)
    pos = _positions_at(keys, key_times, control)
    samples_per_metre = sample_rate / SPEED_OF_SOUND_M_S
    delay = _ramp(np.linalg.norm(pos, axis=-1) * samples_per_metre, _CONTROL_STEP, n)
    gains = _ramp(_encoding(pos, np.ones(control.size)).astype(np.float32), _CONTROL_STEP, n)
    # read = t - delay = (t - whole - 1) + (1 - part): the fraction stays in float precision
    # of the (small) delay rather than of the (large) sample index.
    whole = np.floor(delay)
    weights = _lagrange3((1.0 - (delay - whole)).astype(np.float32))  # (4, n)
    pad = int(whole.max()) + 2
    padded = np.concatenate([np.zeros(pad, np.float32), signal, np.zeros(3, np.float32)])
    index = np.arange(n) - whole.astype(np.int64) + (pad - 2)  # tap -1 of each sample
    delayed = weights[0] * padded[index]
    for k in range(1, 4):
        delayed += weights[k] * padded[index + k]
    return gains * delayed


def _sparse_responses(images: np.ndarray, gains: np.ndarray, sample_rate: float) -> np.ndarray:
    """Multichannel impulse responses (K, 4, L) of image sets (K, P, 3) with gains (P,).

    Each image is a 4-tap Lagrange fractional delay at r / c, scaled by its AmbiX gains.
    """
    k_count = images.shape[0]
    r = np.linalg.norm(images, axis=-1)
    delay = np.maximum(r * (sample_rate / SPEED_OF_SOUND_M_S), 1.0)
    base = np.floor(delay)
    taps = _lagrange3(delay - base)  # (4 taps, K, P)
    length = int(base.max()) + 3
    enc = _encoding(images, gains)  # (4 channels, K, P)
    # Flat index into (K, 4 channels, L): one bincount adds every tap of every image.
    tap_index = base.astype(np.int64)[None] + np.arange(-1, 3)[:, None, None]  # (4 taps, K, P)
    row = np.arange(k_count)[:, None] * 4 + np.arange(4)[None, :]  # (K, 4 channels)
    flat = row.T[:, None, :, None] * length + tap_index[None]  # (4 ch, 4 taps, K, P)
    weights = enc[:, None] * taps[None]
    return np.bincount(flat.ravel(), weights.ravel(), k_count * 4 * length).reshape(
        k_count, 4, length
    )


def _tail_response(
    room: Room,
    sample_rate: float,
    start_s: float,
    full_s: float,
    max_len: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Diffuse tail (4, L) relative to the direct arrival; see the module docstring for level.

    Independent Gaussian noise per channel (dipoles at 1/sqrt(3) of W's amplitude, the SN3D
    statistics of an isotropic field) shaped by ``sqrt(E(t) / fs)`` with a raised-cosine
    fade-in from ``start_s`` to ``full_s``. A one-pole split at TAIL_CROSSOVER_HZ lets the
    high band decay with RT60 * rt60_hf_ratio.
    """
    fs = float(sample_rate)
    length = min(int(np.ceil((full_s + room.rt60_s) * fs)), max_len)
    t = np.arange(length) / fs
    fade = np.clip((t - start_s) / max(full_s - start_s, 1e-3), 0.0, 1.0)
    fade = np.sin(0.5 * np.pi * fade) ** 2
    density = 4.0 * np.pi * SPEED_OF_SOUND_M_S / room.volume_m3  # E0 per second
    tau = room.rt60_s / (6.0 * np.log(10.0))
    scale = np.sqrt(density / fs) * fade
    noise = rng.standard_normal((4, length), dtype=np.float32)
    noise[1:] *= np.float32(1.0 / np.sqrt(3.0))
    pole = np.exp(-2.0 * np.pi * TAIL_CROSSOVER_HZ / fs)
    low = scipy.signal.lfilter([1.0 - pole], [1.0, -pole], noise, axis=-1).astype(np.float32)
    high = noise - low
    env_low = scale * np.exp(-t / (2.0 * tau))
    env_high = scale * np.exp(-t / (2.0 * tau * room.rt60_hf_ratio))
    tail = low * env_low.astype(np.float32) + high * env_high.astype(np.float32)
    return _without_net_intensity(tail)


def _band_edges(bins: int) -> np.ndarray:
    """Edges of 1/6-octave bands over rfft bins 0..bins, each band at least 8 bins wide."""
    edges = [0]
    while edges[-1] < bins:
        edges.append(max(edges[-1] + 8, int(np.ceil(edges[-1] * 2 ** (1 / 6)))))
    edges[-1] = bins
    return np.array(edges)


def _without_net_intensity(tail: np.ndarray) -> np.ndarray:
    """Remove, band by band, the part of each dipole of a tail (4, L) that is in phase with W.

    An isotropic diffuse field has zero mean intensity, but a finite noise realisation has a
    random one, large in the few bins of the low bands: a low-frequency source would then
    hear a random direction in the tail. Projecting Y, Z, X off W within each 1/6-octave
    band makes sum_band Re(conj(H_W) H_c) zero, so the tail adds no net intensity for any
    source whose spectrum is smooth within a band, and the channels stay incoherent.
    Returns (4, L') with L' >= L (the FFT length).
    """
    size = scipy.fft.next_fast_len(tail.shape[-1], real=True)
    spectra = scipy.fft.rfft(tail, size)
    edges = _band_edges(spectra.shape[-1])
    w = spectra[0]
    cross = np.add.reduceat((np.conj(w) * spectra[1:]).real, edges[:-1], axis=-1)
    power = np.add.reduceat(np.abs(w) ** 2, edges[:-1])
    coeff = cross / np.maximum(power, 1e-30)  # (3, bands)
    spectra[1:] -= np.repeat(coeff, np.diff(edges), axis=-1) * w
    return scipy.fft.irfft(spectra, size).astype(np.float32)


def _convolve(signal: np.ndarray, responses: np.ndarray, n_out: int) -> np.ndarray:
    """FFT convolution of a signal (n,) with responses (C, L); first n_out samples (C, n_out)."""
    size = scipy.fft.next_fast_len(signal.size + responses.shape[-1] - 1, real=True)
    spectrum = scipy.fft.rfft(signal, size)
    out = scipy.fft.irfft(scipy.fft.rfft(responses.astype(np.float32), size) * spectrum, size)
    return out[:, :n_out]


def _render_moving_images(
    signal: np.ndarray,
    keys: np.ndarray,
    key_times: np.ndarray,
    sample_rate: float,
    signs: np.ndarray,
    offsets: np.ndarray,
    gains: np.ndarray,
) -> np.ndarray:
    """Image sources (4, n) of a moving source by triangular-windowed segment convolution.

    Anchors sit every ``hop`` samples; segment k is the source times a triangle of half-width
    ``hop`` centred on anchor k (the triangles sum to one), convolved with the image
    response at the source position of that anchor, and overlap-added. ``hop`` is about
    ANCHOR_SECONDS, doubled where the responses are long (halls) to bound the FFT work.
    """
    n = signal.size
    hop = int(2 ** np.round(np.log2(ANCHOR_SECONDS * sample_rate)))
    # Distance to a fixed image is convex along a straight segment: keyframes bound it.
    longest = np.linalg.norm(keys[:, None, :] * signs + offsets, axis=-1).max()
    if longest * sample_rate / SPEED_OF_SOUND_M_S > 2 * hop:
        hop *= 2
    count = (n - 1) // hop + 2  # anchors 0, hop, ..., covering [0, n - 1]
    anchor_pos = _positions_at(keys, key_times, np.minimum(np.arange(count) * hop, n - 1))
    responses = _sparse_responses(anchor_pos[:, None, :] * signs + offsets, gains, sample_rate)
    padded = np.zeros((count + 1) * hop, np.float32)
    padded[hop : hop + n] = signal
    window = (1.0 - np.abs(np.arange(-hop, hop) / hop)).astype(np.float32)
    segments = np.lib.stride_tricks.sliding_window_view(padded, 2 * hop)[::hop][:count] * window
    size = scipy.fft.next_fast_len(2 * hop + responses.shape[-1] - 1, real=True)
    spectra = scipy.fft.rfft(responses.astype(np.float32), size)
    spectra *= scipy.fft.rfft(segments, size)[:, None, :]
    blocks = scipy.fft.irfft(spectra, size)  # (K, 4, size); block k starts at (k - 1) * hop
    # Overlap-add: with the output shifted by one hop, block k's span m lands in row k + m.
    spans = -(-size // hop)
    out = np.zeros((4, count + spans, hop), np.float32)
    for m in range(spans):
        width = min(hop, size - m * hop)
        out[:, m : m + count, :width] += blocks[:, :, m * hop : m * hop + width].transpose(1, 0, 2)
    return out.reshape(4, -1)[:, hop : hop + n]


def _checked_positions(
    positions: np.ndarray, n: int, sample_rate: float, times_s: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate positions and return keyframes (k, 3) and their times in samples (k,)."""
    keys = np.asarray(positions, dtype=np.float64)
    if keys.ndim == 1 and keys.shape == (3,):
        keys = keys[None, :]
    if keys.ndim != 2 or keys.shape[1] != 3 or not 1 <= keys.shape[0] <= n:
        raise InputError(
            f"positions must be (3,), (k, 3) keyframes with 1 <= k <= n or (n, 3) per sample "
            f"(n = {n}), got shape {keys.shape}"
        )
    require_finite("positions", keys)
    k = keys.shape[0]
    if times_s is not None:
        times = np.asarray(times_s, dtype=np.float64)
        if times.shape != (k,):
            raise InputError(f"times_s must have one time per keyframe ({k}), got {times.shape}")
        require_finite("times_s", times)
        if np.any(np.diff(times) <= 0):
            raise InputError("times_s must be strictly increasing")
        return keys, times * sample_rate
    if k == n:
        return keys, np.arange(n, dtype=np.float64)
    # Keyframes evenly spread from t = 0 to the end of the clip, t = n / sample_rate.
    return keys, np.linspace(0.0, float(n), k) if k > 1 else np.zeros(1)


def _check_inside(room: Room, keys: np.ndarray) -> None:
    """Raise unless every keyframe lies inside the room (the box is convex, so so do segments)."""
    absolute = keys + np.asarray(room.listener)
    outside = np.any((absolute < 0) | (absolute > np.asarray(room.size)), axis=-1)
    if np.any(outside):
        first = int(np.argmax(outside))
        raise InputError(
            f"source position {keys[first].tolist()} (keyframe {first}) lies outside the room "
            f"{list(room.size)} with the listener at {list(room.listener)}; "
            "pull it in with fit_to_room"
        )


def render_source(
    mono: np.ndarray,
    sample_rate: float,
    positions: np.ndarray,
    room: Room,
    max_order: int = 2,
    rng: np.random.Generator | None = None,
    times_s: np.ndarray | None = None,
) -> np.ndarray:
    """Render a mono source moving inside ``room`` to AmbiX FOA (4, n), float32.

    ``mono`` (n,) is the source signal as it would be heard at 1 m in the free field.
    ``positions`` are listener-relative metres (x front, y left, z up): (3,) or (1, 3) for a
    static source, (n, 3) per sample, or (k, 3) keyframes, linear in between, at
    ``times_s`` (seconds, default evenly spread from 0 to n / sample_rate). Every keyframe
    must lie inside the room (see :func:`fit_to_room`). ``max_order`` (0..4) bounds the
    image-source order; ``rng`` draws the tail's noise (required when the room has a tail).
    The output keeps the input's length: sound arriving after the last sample is cut.
    """
    signal = np.asarray(mono, dtype=np.float64)
    if signal.ndim != 1 or signal.size == 0:
        raise InputError(f"mono must be a non-empty 1-D signal, got shape {signal.shape}")
    require_finite("mono", signal)
    if not (np.isfinite(sample_rate) and sample_rate > 0):
        raise InputError(f"sample_rate must be a positive number, got {sample_rate}")
    if not isinstance(room, Room):
        raise InputError(f"room must be a Room, got {type(room).__name__}")
    order = _checked_order(max_order)
    if room.has_tail and not isinstance(rng, np.random.Generator):
        raise InputError("rng must be a numpy Generator: the room's tail is random noise")
    signal = signal.astype(np.float32)
    n = signal.size
    keys, key_times = _checked_positions(positions, n, sample_rate, times_s)
    _check_inside(room, keys)

    signs, offsets, gains, orders = _image_lattice(room, order)
    reflected = orders > 0
    if np.all(keys == keys[0]):
        # Static: direct path, images and tail form one response, one FFT convolution.
        out = np.zeros((4, n), np.float32)
        images = keys[0] * signs + offsets
        responses = _sparse_responses(images[None, :1], gains[:1], sample_rate)[0]
        if np.any(reflected):
            early = _sparse_responses(images[None, reflected], gains[reflected], sample_rate)[0]
            early = np.pad(early, ((0, 0), (0, _ring_samples(room, sample_rate))))
            responses = _add_padded(responses, _reflection_filter(room, sample_rate, early))
    else:
        out = _render_direct(signal, keys, key_times, sample_rate)
        if np.any(reflected):
            out += _render_moving_images(
                _reflection_filter(room, sample_rate, signal),
                keys,
                key_times,
                sample_rate,
                signs[reflected],
                offsets[reflected],
                gains[reflected],
            )
        responses = np.zeros((4, 0))
    if room.has_tail:
        tail = _placed_tail(room, keys, sample_rate, signs[1:], offsets[1:], n, rng)
        responses = _add_padded(responses, tail)
    if responses.shape[1]:
        out += _convolve(signal, responses[:, :n], n)
    return out.astype(np.float32)


def _add_padded(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sum of two (C, La) and (C, Lb) responses, the shorter one zero-padded."""
    out = np.zeros((a.shape[0], max(a.shape[1], b.shape[1])), np.result_type(a, b))
    out[:, : a.shape[1]] += a
    out[:, : b.shape[1]] += b
    return out


def _reflection_filter(room: Room, sample_rate: float, x: np.ndarray) -> np.ndarray:
    """Apply the room's reflection low-pass (one pole at reflection_cutoff_hz) along the last axis.

    Absorption and scattering of real surfaces rise with frequency, so specular reflections
    are darker than the direct sound; one pole for every reflection order keeps it cheap.
    """
    if room.reflection_cutoff_hz is None:
        return x
    pole = np.exp(-2.0 * np.pi * room.reflection_cutoff_hz / sample_rate)
    return scipy.signal.lfilter([1.0 - pole], [1.0, -pole], x, axis=-1).astype(x.dtype)


def _ring_samples(room: Room, sample_rate: float) -> int:
    """Samples until the reflection low-pass has rung down by 140 dB (0 without one)."""
    if room.reflection_cutoff_hz is None:
        return 0
    decay_per_sample = 2.0 * np.pi * room.reflection_cutoff_hz / sample_rate  # nepers
    return int(np.ceil(7.0 * np.log(10.0) / decay_per_sample))


def _placed_tail(
    room: Room,
    keys: np.ndarray,
    sample_rate: float,
    signs: np.ndarray,
    offsets: np.ndarray,
    n: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The tail response (4, L) from emission, placed after the direct arrival.

    Timing uses the mean keyframe position: the direct delay, and the fade-in from the
    first reflection to the median image delay (or one mean free path 4V/S without images).
    """
    mean = keys.mean(axis=0)
    direct = float(np.linalg.norm(mean)) / SPEED_OF_SOUND_M_S
    if signs.shape[0]:
        extra = np.linalg.norm(mean * signs + offsets, axis=-1) / SPEED_OF_SOUND_M_S - direct
        start, full = float(extra.min()), float(np.median(extra))
    else:
        start, full = 0.0, 4.0 * room.volume_m3 / room.surface_m2 / SPEED_OF_SOUND_M_S
    full = max(full, start + 2e-3)
    offset = int(round(direct * sample_rate))
    tail = _tail_response(room, sample_rate, start, full, max(n - offset, 1), rng)
    return np.pad(tail, ((0, 0), (offset, 0)))


def render_ambience(
    n: int, sample_rate: float, rng: np.random.Generator, level_db: float
) -> np.ndarray:
    """A diffuse ambient bed (4, n), float32 AmbiX, W at ``level_db`` dB RMS re full scale 1.

    Pink-ish noise (-3 dB/octave from 40 Hz, rolled off above 8 kHz and below 40 Hz),
    independent per channel with isotropic SN3D statistics (each dipole at 1/3 of W's
    power), under a slow common level modulation (a few sinusoids of 0.03..0.3 Hz,
    about +-3 dB) that leaves the isotropy intact.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InputError(f"n must be a positive integer sample count, got {n!r}")
    if not (np.isfinite(sample_rate) and sample_rate > 0):
        raise InputError(f"sample_rate must be a positive number, got {sample_rate}")
    if not np.isfinite(level_db):
        raise InputError(f"level_db must be finite, got {level_db}")
    n = int(n)
    freqs = scipy.fft.rfftfreq(n, 1.0 / sample_rate)
    shape = 1.0 / np.sqrt(np.maximum(freqs, 40.0))
    shape *= (freqs / 40.0) ** 2 / (1.0 + (freqs / 40.0) ** 2)  # 2nd-order high-pass
    shape /= np.sqrt(1.0 + (freqs / 8000.0) ** 4)  # 2nd-order low-pass
    spectra = np.empty((4, freqs.size), np.complex64)
    spectra.real = rng.standard_normal((4, freqs.size), dtype=np.float32)
    spectra.imag = rng.standard_normal((4, freqs.size), dtype=np.float32)
    spectra *= (shape * np.array([1.0, *[1.0 / np.sqrt(3.0)] * 3])[:, None]).astype(np.float32)
    bed = scipy.fft.irfft(spectra, n)
    # The modulation is slow: evaluate it at 100 Hz and interpolate.
    coarse = np.arange(0.0, n / sample_rate + 0.02, 0.01)
    rates = rng.uniform(0.03, 0.3, 3)
    phases = rng.uniform(0.0, 2.0 * np.pi, 3)
    wobble_db = np.sin(2.0 * np.pi * rates[:, None] * coarse + phases[:, None]).sum(axis=0)
    envelope = np.interp(np.arange(n) / sample_rate, coarse, 10.0 ** (wobble_db / 20.0))
    bed *= envelope.astype(np.float32)  # +-3 dB at most
    rms = float(np.sqrt(np.mean(np.square(bed[0], dtype=np.float64))))
    return (bed * np.float32(10.0 ** (level_db / 20.0) / max(rms, 1e-30))).astype(np.float32)
