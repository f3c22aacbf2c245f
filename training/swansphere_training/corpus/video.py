"""Procedural panoramic video for the audio-visual corpus.

Every clip is a sequence of equirectangular RGB frames (the convention of
:mod:`swansphere.foa.panorama`: column u = 0 at azimuth +180 deg, the centre column is
the front, the left (+90 deg) at a quarter of the width, row v = 0 at elevation +90 deg).
Each sounding source is drawn at its projected direction with a visual of its class
(:data:`~swansphere_training.corpus.classes.SOUND_CLASSES`): its own colour, shape,
texture and animation. Silent distractors use the very same visuals, so vision alone
cannot tell which objects make sound; only audio-visual correspondence can.

Drawing happens in direction space, not in pixel space: for each object we take the
unit vectors of the pixels near it (:func:`~swansphere.foa.panorama.pixel_directions`),
map them to an azimuthal-equidistant tangent frame centred on the object (x to the
image right, y up, in units of the object's angular radius) and evaluate shapes as
signed distance functions there. Objects therefore keep their shape on the sphere, wrap
across the u = 0 / u = W seam and stretch over many columns near the poles, as they
would in a real 360 recording. Angular radius shrinks with distance.

Video files are mp4 written with PyAV (libx264, yuv420p; mpeg4 when libx264 is absent).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import av
import numpy as np

from swansphere.errors import InputError, require_finite
from swansphere.foa.panorama import direction_to_equirect, equirect_to_direction, pixel_directions
from swansphere_training.corpus.classes import SOUND_CLASSES

RGB = tuple[int, int, int]

# Dominant colour of each class visual; every class also has its own shape and motion.
_PALETTE: dict[str, RGB] = {
    "dog_bark": (140, 90, 45),
    "siren": (235, 30, 30),
    "rain": (110, 160, 240),
    "wind": (185, 240, 220),
    "birdsong": (160, 220, 40),
    "footsteps": (35, 35, 40),
    "church_bell": (235, 190, 35),
    "car_engine": (245, 125, 25),
    "helicopter": (125, 130, 140),
    "speech_babble": (245, 245, 245),
    "hand_claps": (245, 175, 145),
    "drum_kit": (170, 20, 55),
    "plucked_string": (145, 70, 210),
    "running_water": (20, 185, 205),
    "alarm_beeps": (235, 40, 190),
    "crowd": (40, 45, 130),
}

# Apparent size in metres: the angular radius is atan(size / distance). The sizes are
# exaggerated against the real objects so that a source a few metres away covers
# enough pixels of a 256 x 128 panorama to be recognisable.
_APPARENT_SIZE_M: dict[str, float] = {
    "dog_bark": 1.0,
    "siren": 1.0,
    "rain": 1.6,
    "wind": 1.5,
    "birdsong": 0.8,
    "footsteps": 0.9,
    "church_bell": 1.1,
    "car_engine": 1.4,
    "helicopter": 1.6,
    "speech_babble": 1.1,
    "hand_claps": 0.9,
    "drum_kit": 1.2,
    "plucked_string": 1.0,
    "running_water": 1.5,
    "alarm_beeps": 0.9,
    "crowd": 1.5,
}

# A fully active object (pulse 1) is this much larger and brighter than at rest.
PULSE_SCALE = 0.3
PULSE_BRIGHTEN = 0.35

MIN_ANGULAR_RADIUS = np.deg2rad(4.0)  # about 3 pixels at 256 columns: never vanish
MAX_ANGULAR_RADIUS = np.deg2rad(30.0)  # a source at arm's length still leaves room
# Every class shape lies inside this many angular radii of its centre (the drawing window).
_SHAPE_EXTENT = 1.35


@dataclass(frozen=True, eq=False)
class VisualObject:
    """One object in a clip, sounding or not, with its trajectory sampled per video frame.

    class_name: one of SOUND_CLASSES. azimuth, elevation: (frames,) radians, AmbiX axes
    (azimuth counter-clockwise from the front, elevation up). distance: (frames,) metres,
    > 0. sounding: True for a source that is heard; drawing ignores it on purpose.
    seed: chooses the animation phase, tempo and shade of this object.
    """

    class_name: str
    azimuth: np.ndarray
    elevation: np.ndarray
    distance: np.ndarray
    sounding: bool
    seed: int
    pulse: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.class_name not in SOUND_CLASSES:
            raise InputError(
                f"unknown visual class {self.class_name!r}; known: {', '.join(SOUND_CLASSES)}"
            )
        arrays = {}
        for name in ("azimuth", "elevation", "distance"):
            values = np.array(getattr(self, name), dtype=np.float64)  # a private copy
            if values.ndim != 1 or values.size == 0:
                raise InputError(
                    f"VisualObject.{name} must be a non-empty 1-D array, got shape {values.shape}"
                )
            require_finite(f"VisualObject.{name}", values)
            arrays[name] = values
        if self.pulse is not None:
            pulse = np.array(self.pulse, dtype=np.float64)
            if pulse.ndim != 1:
                raise InputError(f"VisualObject.pulse must be 1-D, got shape {pulse.shape}")
            require_finite("VisualObject.pulse", pulse)
            arrays["pulse"] = np.clip(pulse, 0.0, 1.0)
        lengths = {name: v.size for name, v in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise InputError(f"VisualObject trajectories differ in length: {lengths}")
        if np.any(arrays["distance"] <= 0):
            raise InputError("VisualObject.distance must be > 0 metres")
        if np.any(np.abs(arrays["elevation"]) > np.pi / 2 + 1e-9):
            raise InputError("VisualObject.elevation must lie in [-pi/2, pi/2] radians")
        for name, values in arrays.items():
            # Frozen dataclass: store the validated read-only copies in place of the inputs.
            values.flags.writeable = False
            object.__setattr__(self, name, values)

    @property
    def n_frames(self) -> int:
        """Number of video frames the trajectory covers."""
        return int(self.azimuth.size)


def class_colour(name: str) -> RGB:
    """Dominant (r, g, b) colour, 0..255, of the visual of sound class ``name``."""
    try:
        return _PALETTE[name]
    except KeyError:
        known = ", ".join(SOUND_CLASSES)
        raise InputError(f"unknown visual class {name!r}; known: {known}") from None


def angular_radius(class_name: str, distance: np.ndarray | float) -> np.ndarray:
    """Angular radius in radians of a class visual at ``distance`` metres (any shape).

    atan(apparent size / distance), clipped to [MIN_ANGULAR_RADIUS, MAX_ANGULAR_RADIUS].
    """
    size = _APPARENT_SIZE_M[class_name]
    d = np.asarray(distance, dtype=np.float64)
    return np.clip(np.arctan2(size, d), MIN_ANGULAR_RADIUS, MAX_ANGULAR_RADIUS)


# --------------------------------------------------------------------------------------
# Geometry: pixel windows and tangent-plane coordinates
# --------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _pixel_grid(width: int, height: int) -> np.ndarray:
    """Read-only unit vectors (height, width, 3) float32 of the pixel centres, cached per size.

    float32 halves the cost of the per-pixel shape arithmetic; its 1e-7 rad resolution
    is far below one pixel.
    """
    dirs = pixel_directions(width, height).astype(np.float32)
    dirs.flags.writeable = False
    return dirs


def _tangent_basis(azimuth: float, elevation: float) -> np.ndarray:
    """Rows (centre, right, up) (3, 3) of the tangent frame at a direction.

    "right" is the image right as seen from inside the sphere (decreasing azimuth) and
    "up" points towards elevation +90; both are defined at the poles too because they
    depend on the azimuth only through the (given) heading.
    """
    ca, sa = np.cos(azimuth), np.sin(azimuth)
    ce, se = np.cos(elevation), np.sin(elevation)
    return np.array(
        [[ca * ce, sa * ce, se], [sa, -ca, 0.0], [-se * ca, -se * sa, ce]], dtype=np.float32
    )


def _window(
    azimuth: float, elevation: float, extent: float, width: int, height: int
) -> tuple[slice, slice | np.ndarray]:
    """Rows and columns of the pixels covering a spherical cap.

    The cap has angular radius ``extent`` around the direction. When it reaches a pole
    every column is needed; otherwise its azimuth half-width is asin(sin r / cos el).
    Columns are a slice (cheap views) unless the cap crosses the u = 0 / u = W seam,
    where they are indices wrapped modulo the width.
    """
    top = elevation + extent
    bottom = elevation - extent
    v0 = int(np.floor((0.5 - min(top, np.pi / 2) / np.pi) * height)) - 1
    v1 = int(np.ceil((0.5 - max(bottom, -np.pi / 2) / np.pi) * height)) + 1
    rows = slice(max(v0, 0), min(v1, height))
    if top >= np.pi / 2 or bottom <= -np.pi / 2:
        return rows, slice(0, width)
    ratio = np.sin(extent) / np.cos(elevation)
    half = np.pi if ratio >= 1.0 else float(np.arcsin(ratio))
    half_px = half / (2 * np.pi) * width + 1.0
    if 2 * half_px >= width:
        return rows, slice(0, width)
    u, _ = direction_to_equirect(azimuth, elevation, width, height)
    c0 = int(np.floor(float(u) - half_px))
    c1 = int(np.ceil(float(u) + half_px))
    if c0 >= 0 and c1 <= width:
        return rows, slice(c0, c1)
    return rows, np.mod(np.arange(c0, c1), width)


def _local_coords(
    dirs: np.ndarray, basis: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthal-equidistant coordinates (x right, y up) of unit vectors (..., 3).

    The distance of (x, y) from the origin is the great-circle angle to the centre,
    divided by ``radius`` (radians), so shapes are defined in units of the object size.
    """
    proj = dirs @ basis.T  # (..., 3): cos(angle), right and up components
    along = np.minimum(proj[..., 0], 1.0)  # atan2 needs no lower clip
    side = np.hypot(proj[..., 1], proj[..., 2])
    scale = np.arctan2(side, along) / (np.maximum(side, 1e-12) * radius)
    return proj[..., 1] * scale, proj[..., 2] * scale


# --------------------------------------------------------------------------------------
# Signed distance functions in local units (negative inside) and a small compositor
# --------------------------------------------------------------------------------------


def _unit_clip(values: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] in place; two ufuncs cost a third of np.clip on these small arrays."""
    return np.minimum(np.maximum(values, 0.0, out=values), 1.0, out=values)


def _circle(x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    return np.hypot(x - cx, y - cy) - r


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float) -> np.ndarray:
    # Not an exact distance, but within a factor of a/b of it: fine for anti-aliasing.
    return (np.hypot((x - cx) / a, (y - cy) / b) - 1.0) * min(a, b)


def _box(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, hw: float, hh: float, rounding: float = 0.0
) -> np.ndarray:
    qx = np.abs(x - cx) - hw + rounding
    qy = np.abs(y - cy) - hh + rounding
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    return outside + np.minimum(np.maximum(qx, qy), 0.0) - rounding


def _segment(
    x: np.ndarray, y: np.ndarray, a: tuple[float, float], b: tuple[float, float], half_width: float
) -> np.ndarray:
    """Capsule around the segment a-b."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    px, py = x - a[0], y - a[1]
    h = _unit_clip((px * dx + py * dy) / max(dx * dx + dy * dy, 1e-12))
    return np.hypot(px - h * dx, py - h * dy) - half_width


def _rotate(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in which a shape drawn upright appears rotated by ``angle`` about (cx, cy)."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = x - cx, y - cy
    return cx + c * dx + s * dy, cy - s * dx + c * dy


def _hash(k: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) per integer cell (classic shader hash)."""
    v = np.sin(k * 12.9898 + 78.233) * 43758.5453
    return v - np.floor(v)


class _Canvas:
    """Premultiplied-alpha layer stack for one object in one frame.

    x, y: local coordinates (h, w) in object radii; t: seconds; phase: radians;
    soft: one pixel in local units (edge anti-aliasing width); tone: shade factor.
    """

    def __init__(
        self, x: np.ndarray, y: np.ndarray, t: float, phase: float, soft: float, tone: float
    ) -> None:
        self.x, self.y, self.t, self.phase, self.soft, self.tone = x, y, t, phase, soft, tone
        self.alpha = np.zeros(x.size, dtype=np.float32)  # flat (h * w,)
        self.rgb = np.zeros((x.size, 3), dtype=np.float32)  # flat (h * w, 3), premultiplied

    def coverage(self, sdf: np.ndarray) -> np.ndarray:
        """Anti-aliased coverage in [0, 1] of a signed distance field."""
        return _unit_clip(0.5 - sdf / self.soft)

    def fill(
        self, sdf: np.ndarray, colour: Sequence[float] | np.ndarray, opacity: float = 1.0
    ) -> None:
        """Paint ``colour`` (3,) or (h, w, 3) over the layer where ``sdf`` < 0."""
        self.paint(self.coverage(sdf) * opacity, colour)

    def paint(self, alpha: np.ndarray, colour: Sequence[float] | np.ndarray) -> None:
        """Paint ``colour`` with per-pixel ``alpha`` (h, w) in [0, 1] over the layer."""
        # A part covers a small share of its object's window: blending only the pixels it
        # touches beats a dense pass over the window (measured on typical scenes).
        flat = alpha.reshape(-1)
        idx = np.flatnonzero(flat)
        if idx.size == 0:
            return
        a = flat[idx].astype(np.float32, copy=False)
        col = np.asarray(colour, dtype=np.float32) * np.float32(self.tone)
        if col.ndim > 1:
            col = col.reshape(-1, 3)[idx]
        self.rgb[idx] = self.rgb[idx] * (1.0 - a[:, None]) + a[:, None] * col
        self.alpha[idx] = self.alpha[idx] * (1.0 - a) + a


def _draw_dog_bark(c: _Canvas) -> None:
    """Brown dog, side view, bouncing as it barks; darker spots on the coat."""
    x, t, ph = c.x, c.t, c.phase
    y = c.y - 0.18 * np.abs(np.sin(np.pi * 1.6 * t + ph)) + 0.08
    brown, dark = np.array(_PALETTE["dog_bark"], np.float32), np.array((90, 55, 25), np.float32)
    spots = (np.sin(9 * x + ph) * np.sin(9 * y + 2 * ph) > 0.55)[..., None]
    coat = np.where(spots, dark, brown)
    wag = 0.12 * np.sin(2 * np.pi * 2.5 * t + ph)
    c.fill(_segment(x, y, (-0.6, 0.0), (-0.95, 0.35 + wag), 0.06), brown)
    for lx in (-0.5, -0.25, 0.15, 0.38):
        c.fill(_box(x, y, lx, -0.42, 0.07, 0.2, 0.03), dark)
    c.fill(_ellipse(x, y, -0.1, -0.05, 0.62, 0.32), coat)
    c.fill(_circle(x, y, 0.55, 0.3, 0.27), brown)
    c.fill(_ellipse(x, y, 0.82, 0.22, 0.18, 0.11), brown)
    c.fill(_ellipse(x, y, 0.44, 0.44, 0.09, 0.18), dark)
    c.fill(_circle(x, y, 0.6, 0.36, 0.045), (10, 10, 10))


def _draw_siren(c: _Canvas) -> None:
    """Light bar dome whose red and blue halves flash in turn, with a glow on the lit side."""
    x, y = c.x, c.y
    lit_left = int(np.floor(c.t * 4.0 + c.phase / np.pi)) % 2 == 0
    red, blue = np.array((235, 30, 30), np.float32), np.array((30, 70, 240), np.float32)
    left = (x < 0)[..., None]
    bright = np.where(left, red, blue)
    dimmed = np.where(left == lit_left, bright, bright * 0.35)
    r = np.hypot(x, y - 0.05)
    lit_side = (x < 0) if lit_left else (x >= 0)
    glow = 0.55 * np.exp(-(((r - 0.78) / 0.14) ** 2)) * lit_side
    c.paint(glow, red if lit_left else blue)
    c.fill(_box(x, y, 0.0, -0.55, 0.62, 0.14, 0.04), (60, 60, 70))
    c.fill(np.maximum(_circle(x, y, 0.0, 0.05, 0.6), -0.42 - y), dimmed)
    c.fill(_ellipse(x, y, -0.22 if lit_left else 0.22, 0.3, 0.1, 0.16), (255, 235, 235), 0.7)


def _draw_rain(c: _Canvas) -> None:
    """Dark cloud raining a field of light-blue streaks that fall downwards."""
    x, y, t = c.x, c.y, c.t
    cloud = (70, 80, 115)
    c.fill(_ellipse(x, y, 0.0, 0.6, 0.95, 0.33), cloud, 0.9)
    c.fill(_circle(x, y, -0.35, 0.78, 0.3), cloud, 0.9)
    c.fill(_circle(x, y, 0.3, 0.75, 0.33), cloud, 0.9)
    column = (x + 0.25 * y) * 7.0
    cell = np.floor(column)
    across = np.abs(column - cell - 0.5)
    fall = y * 1.6 + t * 2.5 + _hash(cell) + c.phase
    along = fall - np.floor(fall)
    streaks = (across < 0.16) & (along < 0.5)
    region = c.coverage(_box(x, y, 0.0, -0.25, 0.85, 0.62, 0.1))
    c.paint(region * 0.25, cloud)
    c.paint(region * streaks * 0.95, _PALETTE["rain"])


def _draw_wind(c: _Canvas) -> None:
    """Three pale mint gusts: wavy bands whose waves travel sideways."""
    x, y, t, ph = c.x, c.y, c.t, c.phase
    shade = (0.85 + 0.15 * np.sin(10 * x - 8 * t))[..., None]
    colour = np.array(_PALETTE["wind"], np.float32) * shade
    right = 0.95
    for k, yk in enumerate((0.45, 0.0, -0.45)):
        left = -0.95 + 0.24 * k  # gusts of different lengths
        centre = yk + 0.14 * np.sin(3.2 * x - 5.0 * t + ph + k)
        span = np.abs(x - (left + right) / 2) - (right - left) / 2
        band = np.maximum(np.abs(y - centre) - 0.075, span)
        c.fill(band, colour, 0.9)
        end_y = yk + 0.14 * np.sin(3.2 * right - 5.0 * t + ph + k)
        curl = np.maximum(np.abs(_circle(x, y, right, end_y + 0.15, 0.15)) - 0.06, right - x)
        c.fill(curl, colour, 0.9)


def _draw_birdsong(c: _Canvas) -> None:
    """Lime songbird flapping its wing, with a note rising from its beak."""
    x, t, ph = c.x, c.t, c.phase
    y = c.y + 0.1 - 0.08 * np.abs(np.sin(2 * np.pi * 1.2 * t + ph))
    lime = _PALETTE["birdsong"]
    note_rise = (t * 0.8 + ph / (2 * np.pi)) % 1.0
    ny = 0.45 + 0.35 * note_rise
    c.fill(_circle(x, y, 0.78, ny, 0.09), (60, 90, 20), 1.0 - 0.6 * note_rise)
    c.fill(_segment(x, y, (0.86, ny), (0.86, ny + 0.3), 0.03), (60, 90, 20), 1.0 - 0.6 * note_rise)
    c.fill(_segment(x, y, (-0.45, -0.05), (-0.85, -0.22), 0.08), (100, 160, 30))
    c.fill(_ellipse(x, y, 0.0, 0.0, 0.48, 0.32), lime)
    c.fill(_ellipse(x, y, 0.05, -0.12, 0.3, 0.16), (230, 240, 120))
    c.fill(_circle(x, y, 0.42, 0.25, 0.22), lime)
    c.fill(_segment(x, y, (0.6, 0.25), (0.82, 0.2), 0.05), (245, 150, 30))
    c.fill(_circle(x, y, 0.48, 0.31, 0.045), (10, 10, 10))
    wx, wy = _rotate(x, y, -0.05, 0.1, 0.6 * np.sin(2 * np.pi * 3.0 * t + ph))
    c.fill(_ellipse(wx, wy, -0.2, 0.15, 0.32, 0.13), (100, 160, 30))


def _draw_footsteps(c: _Canvas) -> None:
    """Pair of charcoal shoe prints stepping in turn; the newest print is the darkest."""
    x, y = c.x, c.y
    step = int(np.floor(c.t * 2.0 + c.phase / np.pi))
    for side in (-1, 1):
        newest = (step % 2 == 0) == (side < 0)
        fx, fy = 0.27 * side, 0.3 if newest else -0.3
        sole = np.minimum(
            _ellipse(x, y, fx, fy + 0.15, 0.17, 0.32), _ellipse(x, y, fx, fy - 0.35, 0.14, 0.15)
        )
        c.fill(sole - 0.05, (230, 200, 140), 0.9 if newest else 0.4)  # sandy rim for contrast
        c.fill(sole, _PALETTE["footsteps"], 1.0 if newest else 0.45)
        treads = np.abs(np.sin(18 * y)) < 0.3
        c.paint(c.coverage(sole + 0.05) * treads * (0.6 if newest else 0.25), (90, 90, 95))


def _draw_church_bell(c: _Canvas) -> None:
    """Golden bell swinging under a wooden yoke, its clapper lagging behind."""
    x, y, t, ph = c.x, c.y, c.t, c.phase
    swing = 0.4 * np.sin(2 * np.pi * 0.7 * t + ph)
    c.fill(_box(x, y, 0.0, 0.95, 0.45, 0.07, 0.02), (110, 70, 35))
    bx, by = _rotate(x, y, 0.0, 0.9, swing)
    cx, cy = _rotate(x, y, 0.0, 0.9, 1.6 * swing)
    c.fill(_circle(cx, cy, 0.0, -0.72, 0.12), (70, 55, 30))
    half_width = 0.22 + 0.5 * ((0.65 - by) / 1.25) ** 2
    body = np.maximum(np.maximum(np.abs(bx) - half_width, by - 0.65), -0.6 - by) * 0.8
    c.fill(np.minimum(body, _circle(bx, by, 0.0, 0.62, 0.24)), _PALETTE["church_bell"])
    c.fill(np.maximum(body, -(by + 0.45)), (190, 140, 20))
    c.fill(_ellipse(bx, by, -0.2, 0.12, 0.07, 0.33), (255, 240, 150), 0.7)


def _draw_car_engine(c: _Canvas) -> None:
    """Orange car shaking with its idling engine, wheels and grey exhaust puffs."""
    t, ph = c.t, c.phase
    x = c.x + 0.015 * np.sin(2 * np.pi * 13.1 * t)
    y = c.y - 0.03 * np.sin(2 * np.pi * 11.3 * t + ph)
    orange = _PALETTE["car_engine"]
    for i in range(3):
        p = (t * 0.8 + i / 3 + ph / (2 * np.pi)) % 1.0
        c.fill(
            _circle(x, y, -0.95 - 0.25 * p, -0.3 + 0.4 * p, 0.08 + 0.12 * p),
            (170, 170, 170),
            0.6 * (1 - p),
        )
    c.fill(_box(x, y, 0.0, -0.12, 0.9, 0.24, 0.08), orange)
    c.fill(_box(x, y, -0.05, 0.25, 0.5, 0.2, 0.12), orange)
    c.fill(_box(x, y, -0.28, 0.27, 0.19, 0.12, 0.04), (170, 210, 235))
    c.fill(_box(x, y, 0.2, 0.27, 0.19, 0.12, 0.04), (170, 210, 235))
    c.fill(_circle(x, y, 0.85, -0.05, 0.06), (255, 240, 120))
    spin = 6.0 * t + ph
    for wx in (-0.55, 0.55):
        c.fill(_circle(x, y, wx, -0.38, 0.21), (25, 25, 25))
        c.fill(_circle(x, y, wx, -0.38, 0.08), (160, 160, 160))
        tip = (wx + 0.15 * np.cos(spin), -0.38 + 0.15 * np.sin(spin))
        c.fill(_segment(x, y, (wx, -0.38), tip, 0.025), (160, 160, 160))


def _draw_helicopter(c: _Canvas) -> None:
    """Grey helicopter with a tail boom, skids and a rotating rotor line."""
    x, y, t, ph = c.x, c.y, c.t, c.phase
    grey, dark = _PALETTE["helicopter"], (50, 50, 55)
    y = y + 0.05
    c.fill(_segment(x, y, (0.35, 0.02), (1.1, 0.15), 0.07), grey)
    c.fill(_segment(x, y, (1.05, 0.1), (1.15, 0.35), 0.05), grey)
    tail = 9.0 * t + ph
    c.fill(
        _segment(
            x,
            y,
            (1.12 - 0.18 * np.cos(tail), 0.3 - 0.18 * np.sin(tail)),
            (1.12 + 0.18 * np.cos(tail), 0.3 + 0.18 * np.sin(tail)),
            0.03,
        ),
        dark,
    )
    c.fill(_segment(x, y, (-0.55, -0.58), (0.35, -0.58), 0.035), dark)
    for sx in (-0.3, 0.1):
        c.fill(_segment(x, y, (sx, -0.3), (sx, -0.58), 0.03), dark)
    c.fill(_ellipse(x, y, -0.1, -0.05, 0.55, 0.33), grey)
    c.fill(_ellipse(x, y, -0.33, 0.0, 0.2, 0.17), (170, 210, 235))
    c.fill(_segment(x, y, (-0.1, 0.25), (-0.1, 0.42), 0.04), dark)
    angle = 2 * np.pi * 0.6 * t + ph
    dx, dy = 0.88 * np.cos(angle), 0.88 * np.sin(angle)
    c.fill(_segment(x, y, (-0.1 - dx, 0.42 - dy), (-0.1 + dx, 0.42 + dy), 0.04), dark)


def _draw_speech_babble(c: _Canvas) -> None:
    """Two white speech bubbles filled with grey text; the one speaking pops forward."""
    x, y, t = c.x, c.y, c.t
    turn = int(np.floor(t * 1.3 + c.phase / np.pi)) % 2
    bubbles = (
        (-0.35, 0.32, 0.55, 0.32, (-0.45, 0.0), (-0.65, -0.3)),
        (0.4, -0.35, 0.5, 0.28, (0.55, -0.6), (0.75, -0.85)),
    )
    for i, (bx, by, hw, hh, tail_a, tail_b) in enumerate(bubbles):
        speaking = i == turn
        s = 1.08 if speaking else 1.0
        shape = np.minimum(
            _box(x, y, bx, by, hw * s, hh * s, 0.15), _segment(x, y, tail_a, tail_b, 0.07)
        )
        c.fill(shape - 0.04, (80, 80, 90), 1.0 if speaking else 0.6)
        c.fill(shape, _PALETTE["speech_babble"], 1.0 if speaking else 0.75)
        row = (y - by) * 4.5
        in_row = np.abs(row - np.floor(row) - 0.5) < 0.16
        word = x * 3.0 + 0.37 * np.floor(t * 2.0) * speaking + 0.5 * i
        in_word = (word - np.floor(word)) < 0.7
        inner = c.coverage(_box(x, y, bx, by, hw * s - 0.12, hh * s - 0.1))
        c.paint(inner * in_row * in_word, (60, 60, 75))


def _draw_hand_claps(c: _Canvas) -> None:
    """Two peach hands, fingers up, that meet and part; a yellow burst flashes as they meet."""
    x, y, t, ph = c.x, c.y, c.t, c.phase
    gap = 0.04 + 0.34 * np.abs(np.cos(np.pi * 2.2 * t + ph))
    peach, crease = _PALETTE["hand_claps"], (200, 125, 100)
    for side in (-1, 1):
        hx = side * (gap + 0.2)
        rx, ry = _rotate(x, y, hx, -0.6, -0.15 * side)  # hands lean towards each other
        thumb = _segment(rx, ry, (hx + 0.16 * side, -0.3), (hx + 0.3 * side, -0.08), 0.05)
        hand = np.minimum(_box(rx, ry, hx, -0.2, 0.17, 0.22, 0.1), thumb)
        for dx, length in zip((-0.12, -0.04, 0.04, 0.12), (0.27, 0.34, 0.36, 0.3), strict=True):
            finger_x = hx + dx * side  # the longest fingers in the middle, the little one inside
            hand = np.minimum(hand, _segment(rx, ry, (finger_x, -0.05), (finger_x, length), 0.042))
        c.fill(hand, peach)
        c.fill(np.maximum(np.abs(ry + 0.15) - 0.022, np.abs(rx - hx) - 0.1), crease)
    burst = max(0.0, 1.0 - gap / 0.15)
    if burst > 0:
        for angle in (0.5, np.pi / 2, np.pi - 0.5):  # three rays above the meeting palms
            ca, sa = np.cos(angle), np.sin(angle)
            ray = _segment(x, y, (0.45 * ca, 0.2 + 0.45 * sa), (0.8 * ca, 0.2 + 0.8 * sa), 0.05)
            c.fill(ray, (255, 245, 150), burst)


def _draw_drum_kit(c: _Canvas) -> None:
    """Crimson bass drum and tom that pulse on each hit, with a tilting golden cymbal."""
    x, y, t, ph = c.x, c.y, c.t, c.phase
    hit = float(np.exp(-5.0 * ((t * 2.0 + ph / (2 * np.pi)) % 1.0)))
    crimson = _PALETTE["drum_kit"]
    c.fill(_segment(x, y, (-0.62, 0.5), (-0.62, -0.75), 0.025), (150, 150, 150))
    cx, cy = _rotate(x, y, -0.62, 0.55, 0.35 * hit)
    c.fill(_ellipse(cx, cy, -0.62, 0.55, 0.38, 0.06), (225, 185, 50))
    r = 0.5 * (1 + 0.08 * hit)
    c.fill(_circle(x, y, 0.0, -0.3, r), crimson)
    c.fill(_circle(x, y, 0.0, -0.3, 0.72 * r), (205, 60, 90))
    c.fill(_circle(x, y, 0.0, -0.3, 0.2 * r), crimson)
    c.fill(_box(x, y, 0.65, 0.05, 0.22, 0.14, 0.03), crimson)
    c.fill(_ellipse(x, y, 0.65, 0.19 + 0.03 * hit, 0.22, 0.06), (235, 220, 200))


def _draw_plucked_string(c: _Canvas) -> None:
    """Violet guitar whose strings vibrate after each pluck."""
    x, y, t, ph = c.x, c.y, c.t, c.phase
    env = float(np.exp(-4.0 * ((t * 0.9 + ph / (2 * np.pi)) % 1.0)))
    c.fill(_box(x, y, 0.0, 0.7, 0.09, 0.45), (90, 55, 30))
    c.fill(_box(x, y, 0.0, 1.17, 0.13, 0.1, 0.03), (60, 35, 20))
    body = np.minimum(_circle(x, y, 0.0, -0.4, 0.45), _circle(x, y, 0.0, 0.05, 0.34))
    c.fill(body, _PALETTE["plucked_string"])
    c.fill(_circle(x, y, 0.0, -0.12, 0.13), (40, 20, 50))
    c.fill(_box(x, y, 0.0, -0.58, 0.17, 0.035), (60, 35, 20))
    mode = np.sin(np.pi * np.clip((y + 0.58) / 1.73, 0, 1))  # fundamental: still at both ends
    sway = 0.09 * env * np.cos(2 * np.pi * 7.3 * t) * mode
    for x0 in (-0.045, 0.0, 0.045):
        string = np.maximum(np.abs(x - x0 - sway) - 0.014, np.abs(y - 0.29) - 0.87)
        c.fill(string, (240, 230, 200), 0.9)


def _draw_running_water(c: _Canvas) -> None:
    """Cyan stream with bright wave crests flowing to the right."""
    x, y, t, ph = c.x, c.y, c.t, c.phase
    centre = 0.15 * np.sin(2.2 * x + ph)
    stream = np.maximum(np.abs(y - centre) - 0.34 * (1 - 0.2 * x * x), np.abs(x) - 1.1)
    c.fill(stream, _PALETTE["running_water"])
    c.fill(np.maximum(np.abs(y - centre) - 0.12, np.abs(x) - 1.0), (10, 140, 170), 0.6)
    crest = np.sin(9.0 * x - 9.0 * t + 4.0 * (y - centre) + ph)
    c.paint(c.coverage(stream) * np.clip((crest - 0.6) * 4.0, 0.0, 1.0), (205, 245, 250))


def _draw_alarm_beeps(c: _Canvas) -> None:
    """Magenta alarm box whose lamp blinks and which sends out rings on each beep."""
    x, y = c.x, c.y
    beep = int(np.floor(c.t * 4.0 + c.phase / np.pi)) % 2 == 0
    if beep:
        for radius in (0.78, 0.98):
            ring = np.maximum(np.abs(_circle(x, y, 0.0, -0.1, radius)) - 0.045, 0.5 - np.abs(x))
            c.fill(ring, (255, 120, 220))
    c.fill(_box(x, y, 0.0, -0.15, 0.5, 0.45, 0.1), _PALETTE["alarm_beeps"])
    grille = _circle(x, y, 0.0, -0.25, 0.25)
    c.fill(grille, (60, 20, 50))
    slots = np.sin(40.0 * np.hypot(x, y + 0.25)) > 0.2
    c.paint(c.coverage(grille + 0.03) * slots, (150, 60, 130))
    c.fill(_circle(x, y, 0.0, 0.43, 0.16), (255, 250, 200) if beep else (120, 80, 110))


def _draw_crowd(c: _Canvas) -> None:
    """Five navy figures in two rows swaying out of step, one waving an arm."""
    x, y, t, ph = c.x, c.y, c.t, c.phase
    navy = np.array(_PALETTE["crowd"], np.float32)
    skin = (205, 155, 120)
    people = (
        (-0.55, 0.22, 0.85),
        (0.0, 0.25, 0.85),
        (0.55, 0.2, 0.85),
        (-0.28, -0.22, 1.0),
        (0.3, -0.25, 1.0),
    )
    for i, (px, py, s) in enumerate(people):
        sway = 0.05 * np.sin(2 * np.pi * 0.9 * t + 1.3 * i + ph)
        shade = navy * (0.8 + 0.1 * (i % 3))
        cx = px + sway
        if i == 2:
            wave = 0.25 * np.sin(2 * np.pi * 1.5 * t + ph)
            arm = _segment(x, y, (cx + 0.1, py - 0.1), (cx + 0.3 + wave * 0.5, py + 0.35), 0.05)
            c.fill(arm, shade)
        c.fill(_box(x, y, cx, py - 0.3 * s, 0.15 * s, 0.3 * s, 0.12 * s), shade)
        c.fill(_circle(x, y, cx, py + 0.13 * s, 0.13 * s), skin)


_DRAWERS: dict[str, Callable[[_Canvas], None]] = {
    "dog_bark": _draw_dog_bark,
    "siren": _draw_siren,
    "rain": _draw_rain,
    "wind": _draw_wind,
    "birdsong": _draw_birdsong,
    "footsteps": _draw_footsteps,
    "church_bell": _draw_church_bell,
    "car_engine": _draw_car_engine,
    "helicopter": _draw_helicopter,
    "speech_babble": _draw_speech_babble,
    "hand_claps": _draw_hand_claps,
    "drum_kit": _draw_drum_kit,
    "plucked_string": _draw_plucked_string,
    "running_water": _draw_running_water,
    "alarm_beeps": _draw_alarm_beeps,
    "crowd": _draw_crowd,
}


# --------------------------------------------------------------------------------------
# Background
# --------------------------------------------------------------------------------------

# (zenith, horizon, ground near the horizon, ground below, mountains) per sky mood.
_SKIES: tuple[tuple[RGB, RGB, RGB, RGB, RGB], ...] = (
    ((55, 105, 185), (175, 205, 235), (110, 110, 80), (70, 65, 50), (95, 110, 135)),  # clear day
    ((60, 60, 120), (235, 160, 110), (95, 85, 70), (55, 45, 40), (85, 70, 95)),  # dusk
    ((120, 125, 135), (190, 192, 195), (100, 105, 90), (60, 62, 55), (110, 115, 120)),  # overcast
)


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angle difference wrapped to (-pi, pi], so features cross the seam seamlessly."""
    return np.mod(angle + np.pi, 2 * np.pi) - np.pi


def _sky(
    az: np.ndarray,
    el: np.ndarray,
    zenith: np.ndarray,
    horizon: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Sky (H, W, 3): gradient from the horizon to the zenith colour, a sun and clouds."""
    s = np.clip(el / (np.pi / 2), 0.0, 1.0)[..., None] ** 0.6
    img = horizon * (1 - s) + zenith * s
    sun_az, sun_el = rng.uniform(-np.pi, np.pi), rng.uniform(0.3, 1.0)
    cos_sun = np.cos(el) * np.cos(sun_el) * np.cos(az - sun_az) + np.sin(el) * np.sin(sun_el)
    ang = np.arccos(np.clip(cos_sun, -1, 1))
    glow = np.clip(0.35 * np.exp(-ang / 0.2) + np.clip((0.06 - ang) / 0.01, 0, 1), 0, 1)[..., None]
    img = img * (1 - glow) + glow * np.array((255, 245, 210))
    for _ in range(int(rng.integers(3, 7))):  # soft lumpy clouds, Gaussian in (az, el)
        caz, cel = rng.uniform(-np.pi, np.pi), rng.uniform(0.15, 0.9)
        wa, we = rng.uniform(0.2, 0.5), rng.uniform(0.04, 0.09)
        daz = _wrap(az - caz) * np.cos(el)
        lump = 1 + 0.3 * np.sin(25 * daz + rng.uniform(0, 6))
        a = 0.8 * np.exp(-((daz / wa) ** 2) - ((el - cel) / (we * lump)) ** 2)[..., None]
        img = img * (1 - a) + a * np.array((245, 245, 250))
    return img


def _mountains(
    img: np.ndarray, az: np.ndarray, el: np.ndarray, colour: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Paint a ridge 2..12 degrees high (a periodic sum of sines of azimuth) over ``img``."""
    ridge = np.full(az.shape[1], 0.1)
    for k in range(1, 9):
        ridge += rng.uniform(0, 0.05) / np.sqrt(k) * np.sin(k * az[0] + rng.uniform(0, 2 * np.pi))
    ridge = np.clip(ridge, 0.035, 0.21)
    facet = 0.85 + 0.15 * np.sin(17 * az + 40 * el)
    is_mountain = ((el >= 0) & (el < ridge))[..., None]
    snow = ((el > ridge - 0.025) & (ridge > 0.15))[..., None]
    rock = colour * (facet * (0.8 + 0.2 * (el / 0.2)))[..., None]
    return np.where(is_mountain, np.where(snow, np.array((235, 238, 245)), rock), img)


def _ground(
    img: np.ndarray,
    az: np.ndarray,
    el: np.ndarray,
    near: np.ndarray,
    far: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Paint the ground plane 1.6 m below the camera: perspective texture and a path."""
    depth = 1.6 / np.tan(np.clip(-el, 1e-3, None))  # metres along the ground
    gx, gy = depth * np.cos(az), depth * np.sin(az)
    tex = np.sin(1.7 * gx + 0.4) * np.sin(1.3 * gy + 1.1) + 0.5 * np.sin(4.1 * gx - 3.3 * gy)
    fade = np.clip(-el / 0.3, 0, 1)  # texture would alias near the horizon
    g = np.clip(-el / (np.pi / 2), 0, 1)[..., None]
    ground = (near * (1 - g) + far * g) * (1 + 0.08 * tex * fade)[..., None]
    # A straight path passing a few metres beside the camera, horizon to horizon.
    path_dir, path_offset = rng.uniform(-np.pi, np.pi), rng.uniform(3.0, 8.0)
    across = np.abs(-gx * np.sin(path_dir) + gy * np.cos(path_dir) - path_offset)
    on_path = (across < 1.2)[..., None]
    ground = np.where(on_path, ground * 0.6 + 0.4 * np.array((170, 150, 115)), ground)
    return np.where((el < 0)[..., None], ground, img)


def _skyline(
    img: np.ndarray, az: np.ndarray, el: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Paint trees and houses standing on the horizon."""
    for _ in range(int(rng.integers(4, 9))):
        taz = rng.uniform(-np.pi, np.pi)
        tall = rng.uniform(0.06, 0.16)
        daz = np.abs(_wrap(az - taz))
        if rng.uniform() < 0.6:
            canopy = (el > tall * 0.3) & (el < tall) & (daz < 0.35 * (tall - el))
            trunk = (el >= 0) & (el <= tall * 0.3) & (daz < 0.008)
            img = np.where(trunk[..., None], np.array((80, 55, 35)), img)
            img = np.where(canopy[..., None], np.array((40, 85, 45)), img)
        else:
            half = rng.uniform(0.04, 0.09)
            wall = (el >= 0) & (el < tall * 0.6) & (daz < half)
            roof = (el >= tall * 0.6) & (el < tall) & (daz < half * (tall - el) / (tall * 0.4))
            window = wall & (np.sin(az * 180) > 0.4) & (np.sin(el * 150) > 0.3)
            img = np.where(wall[..., None], np.array((190, 170, 140)) * rng.uniform(0.8, 1.1), img)
            img = np.where(roof[..., None], np.array((140, 60, 45)), img)
            img = np.where(window[..., None], np.array((60, 70, 90)), img)
    return img


@lru_cache(maxsize=8)
def _background(seed: int, width: int, height: int) -> np.ndarray:
    """Read-only static background (height, width, 3) float32 in 0..255, deterministic by seed.

    Sky gradient with a sun and clouds above a mountain ridge, trees and houses on the
    horizon, and a ground plane with perspective texture and a path. Every feature is a
    function of direction (azimuth terms are periodic), so the seam is invisible.
    """
    rng = np.random.default_rng(seed)
    u = np.arange(width) + 0.5
    v = np.arange(height) + 0.5
    az_row, el_col = equirect_to_direction(u[None, :], v[:, None], width, height)  # (1, W), (H, 1)
    az = np.broadcast_to(az_row, (height, width))
    el = np.broadcast_to(el_col, (height, width))
    mood = _SKIES[int(rng.integers(len(_SKIES)))]
    jitter = rng.uniform(0.9, 1.1, size=3)
    zenith, horizon, ground_near, ground_far, mountain = (np.array(m, float) * jitter for m in mood)
    # Each layer only touches its own band of rows: sky above the horizon, ground below,
    # ridge and skyline within 12 degrees above it (the features are elementwise in az, el).
    upper = slice(0, height // 2 + 1)
    lower = slice(height // 2 - 1, height)
    band = slice(int(np.floor((0.5 - 0.22 / np.pi) * height)), height // 2 + 1)
    img = np.empty((height, width, 3))
    img[upper] = _sky(az[upper], el[upper], zenith, horizon, rng)
    img[band] = _mountains(img[band], az[band], el[band], mountain, rng)
    img[lower] = _ground(img[lower], az[lower], el[lower], ground_near, ground_far, rng)
    img[band] = _skyline(img[band], az[band], el[band], rng)
    out = np.ascontiguousarray(np.clip(img, 0, 255), dtype=np.float32)
    out.flags.writeable = False
    return out


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def _animation_params(seed: int) -> tuple[float, float, float]:
    """Phase (rad), tempo factor and shade factor of an object, from its seed."""
    rng = np.random.default_rng(seed)
    phase, tempo, tone = rng.uniform((0.0, 0.85, 0.9), (2 * np.pi, 1.15, 1.05))
    return float(phase), float(tempo), float(tone)


def _draw_object(
    frame: np.ndarray,
    dirs: np.ndarray,
    class_name: str,
    azimuth: float,
    elevation: float,
    distance: float,
    t: float,
    anim: tuple[float, float, float],
    pulse: float = 0.0,
) -> None:
    """Composite one object into ``frame`` (H, W, 3) float32 in place; ``pulse`` in [0, 1]."""
    height, width = frame.shape[:2]
    radius = float(angular_radius(class_name, distance)) * (1.0 + PULSE_SCALE * pulse)
    rows, cols = _window(azimuth, elevation, _SHAPE_EXTENT * radius, width, height)
    x, y = _local_coords(dirs[rows][:, cols], _tangent_basis(azimuth, elevation), radius)
    phase, tempo, tone = anim
    soft = (np.pi / height) / radius  # one pixel in object radii
    canvas = _Canvas(x, y, t * tempo, phase, soft, tone * (1.0 + PULSE_BRIGHTEN * pulse))
    _DRAWERS[class_name](canvas)
    a = canvas.alpha.reshape(*x.shape, 1)
    rgb = canvas.rgb.reshape(*x.shape, 3)
    if isinstance(cols, slice):  # a view: blend in place
        view = frame[rows, cols]
        view *= 1.0 - a
        view += rgb
    else:  # wrapped across the seam: gather, blend, scatter
        frame[rows, cols] = frame[rows, cols] * (1.0 - a) + rgb


def render_frames(
    objects: Sequence[VisualObject],
    n_frames: int,
    width: int = 256,
    height: int = 128,
    fps: float = 4.0,
    *,
    background_seed: int,
) -> np.ndarray:
    """Render the equirectangular frames (n_frames, height, width, 3) uint8 of a clip.

    objects: every visual in the scene, sounding or not; each trajectory must have
    n_frames samples. Frame i shows time i / fps seconds (drives the animations). In
    each frame the objects are composited far to near over a static background chosen
    by ``background_seed``. Deterministic in all arguments.
    """
    if int(n_frames) != n_frames or n_frames < 1:
        raise InputError(f"n_frames must be a positive integer, got {n_frames}")
    if int(width) != width or int(height) != height or width < 8 or height < 4:
        raise InputError(f"frame size must be integers >= 8 x 4, got {width} x {height}")
    if not np.isfinite(fps) or fps <= 0:
        raise InputError(f"fps must be a positive finite number, got {fps}")
    n_frames, width, height = int(n_frames), int(width), int(height)
    for i, obj in enumerate(objects):
        if not isinstance(obj, VisualObject):
            raise InputError(f"objects[{i}] must be a VisualObject, got {type(obj).__name__}")
        if obj.n_frames != n_frames:
            raise InputError(
                f"objects[{i}] ({obj.class_name}) has {obj.n_frames} trajectory samples, "
                f"expected one per frame ({n_frames})"
            )
    background = _background(int(background_seed), width, height)
    dirs = _pixel_grid(width, height)
    anims = [_animation_params(obj.seed) for obj in objects]
    distances = np.array([obj.distance for obj in objects]).reshape(len(objects), n_frames)
    out = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    for i in range(n_frames):
        frame = background.copy()
        for k in np.argsort(-distances[:, i], kind="stable"):  # far to near
            obj = objects[k]
            _draw_object(
                frame,
                dirs,
                obj.class_name,
                obj.azimuth[i],
                obj.elevation[i],
                obj.distance[i],
                i / fps,
                anims[k],
                0.0 if obj.pulse is None else float(obj.pulse[i]),
            )
        np.clip(np.rint(frame), 0, 255, out=frame)
        out[i] = frame
    return out


# --------------------------------------------------------------------------------------
# Ground-truth markers
# --------------------------------------------------------------------------------------

# 3 x 5 pixel font for marker labels (rows top to bottom, '#' = ink).
_FONT: dict[str, tuple[str, ...]] = {
    "A": (".#.", "#.#", "###", "#.#", "#.#"),
    "B": ("##.", "#.#", "##.", "#.#", "##."),
    "C": (".##", "#..", "#..", "#..", ".##"),
    "D": ("##.", "#.#", "#.#", "#.#", "##."),
    "E": ("###", "#..", "##.", "#..", "###"),
    "F": ("###", "#..", "##.", "#..", "#.."),
    "G": (".##", "#..", "#.#", "#.#", ".##"),
    "H": ("#.#", "#.#", "###", "#.#", "#.#"),
    "I": ("###", ".#.", ".#.", ".#.", "###"),
    "J": ("..#", "..#", "..#", "#.#", ".#."),
    "K": ("#.#", "#.#", "##.", "#.#", "#.#"),
    "L": ("#..", "#..", "#..", "#..", "###"),
    "M": ("#.#", "###", "###", "#.#", "#.#"),
    "N": ("##.", "#.#", "#.#", "#.#", "#.#"),
    "O": (".#.", "#.#", "#.#", "#.#", ".#."),
    "P": ("##.", "#.#", "##.", "#..", "#.."),
    "Q": (".#.", "#.#", "#.#", "##.", ".##"),
    "R": ("##.", "#.#", "##.", "#.#", "#.#"),
    "S": (".##", "#..", ".#.", "..#", "##."),
    "T": ("###", ".#.", ".#.", ".#.", ".#."),
    "U": ("#.#", "#.#", "#.#", "#.#", "###"),
    "V": ("#.#", "#.#", "#.#", "#.#", ".#."),
    "W": ("#.#", "#.#", "###", "###", "#.#"),
    "X": ("#.#", "#.#", ".#.", "#.#", "#.#"),
    "Y": ("#.#", "#.#", ".#.", ".#.", ".#."),
    "Z": ("###", "..#", ".#.", "#..", "###"),
    "0": ("###", "#.#", "#.#", "#.#", "###"),
    "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("##.", "..#", ".#.", "#..", "###"),
    "3": ("##.", "..#", ".#.", "..#", "##."),
    "4": ("#.#", "#.#", "###", "..#", "..#"),
    "5": ("###", "#..", "##.", "..#", "##."),
    "6": (".##", "#..", "###", "#.#", "###"),
    "7": ("###", "..#", ".#.", ".#.", ".#."),
    "8": ("###", "#.#", "###", "#.#", "###"),
    "9": ("###", "#.#", "###", "..#", "##."),
    "_": ("...", "...", "...", "...", "###"),
    "-": ("...", "...", "###", "...", "..."),
    ".": ("...", "...", "...", "...", ".#."),
    " ": ("...", "...", "...", "...", "..."),
    "+": ("...", ".#.", "###", ".#.", "..."),
    ":": ("...", ".#.", "...", ".#.", "..."),
    "/": ("..#", "..#", ".#.", "#..", "#.."),
    "?": ("##.", "..#", ".#.", "...", ".#."),
}


def _text_mask(text: str) -> np.ndarray:
    """Boolean ink mask (5, 4 * len(text) - 1) of ``text`` in the 3 x 5 font."""
    glyphs = [
        np.array([[ch == "#" for ch in row] for row in _FONT.get(c, _FONT["?"])])
        for c in text.upper()
    ]
    gap = np.zeros((5, 1), dtype=bool)
    parts: list[np.ndarray] = []
    for g in glyphs:
        parts.extend([g, gap])
    return np.hstack(parts[:-1]) if parts else np.zeros((5, 0), dtype=bool)


def _stamp(frame: np.ndarray, mask: np.ndarray, top: int, left: int, colour: np.ndarray) -> None:
    """Set the pixels of ``mask`` (h, w) at (top, left) to ``colour``, wrapping columns."""
    height, width = frame.shape[:2]
    r, c = np.nonzero(mask)
    r = r + top
    keep = (r >= 0) & (r < height)
    frame[r[keep], np.mod(c[keep] + left, width)] = colour


def _marker_colour(label: str) -> np.ndarray:
    """Class colour of a marker (white for other labels), lightened when too dark to see."""
    colour = np.array(_PALETTE.get(label, (255, 255, 255)), dtype=np.float64)
    if colour @ np.array((0.299, 0.587, 0.114)) < 60:  # navy, charcoal: half way to white
        colour = 0.5 * (colour + 255)
    return np.round(colour).astype(np.uint8)


def draw_markers(
    frame: np.ndarray,
    points: Sequence[tuple[float, float, str]],
    ring_radius: float | None = None,
) -> np.ndarray:
    """Copy of ``frame`` (H, W, 3) uint8 with ground-truth markers at the given directions.

    points: (azimuth, elevation, label) with angles in radians. Each marker is a ring
    with four crosshair ticks, drawn in direction space (so it wraps at the seam and
    stays round near the poles), outlined in black, coloured with class_colour(label)
    when the label is a sound class (white otherwise), and labelled in a 3 x 5 font.
    ring_radius: angular radius in radians; default 3.5 pixel heights.
    """
    img = np.asarray(frame)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InputError(f"frame must be (H, W, 3) uint8, got shape {img.shape} dtype {img.dtype}")
    out = img.copy()
    height, width = out.shape[:2]
    px = np.pi / height  # one pixel height in radians
    radius = 3.5 * px if ring_radius is None else float(ring_radius)
    dirs = _pixel_grid(width, height)
    for i, point in enumerate(points):
        if len(point) != 3:
            raise InputError(f"points[{i}] must be (azimuth, elevation, label), got {point!r}")
        az, el, label = float(point[0]), float(point[1]), str(point[2])
        if not (np.isfinite(az) and np.isfinite(el)) or abs(el) > np.pi / 2 + 1e-9:
            raise InputError(f"points[{i}] has an invalid direction ({az}, {el}) radians")
        rows, cols = _window(az, el, 1.8 * radius + 2 * px, width, height)
        x, y = _local_coords(dirs[rows][:, cols], _tangent_basis(az, el), 1.0)
        dist = np.hypot(x, y)
        ring = np.abs(dist - radius)
        ticks = np.where(np.abs(x) > np.abs(y), np.abs(y), np.abs(x))  # distance to the cross
        tick = (ticks < 0.5 * px) & (dist > radius) & (dist < 1.8 * radius)
        ink = (ring < 0.6 * px) | tick
        near_tick = (dist > radius - px) & (dist < 1.8 * radius + px)
        outline = (ring < 1.6 * px) | ((ticks < 1.5 * px) & near_tick)
        colour = _marker_colour(label)
        patch = out[rows, cols]
        patch[outline] = 0
        patch[ink] = colour
        out[rows, cols] = patch
        if label:
            mask = _text_mask(label)
            u, v = direction_to_equirect(az, el, width, height)
            top = int(np.round(float(v))) + int(np.ceil(1.8 * radius / px))
            if top + 6 > height:  # no room below (south pole): write above instead
                top = int(np.round(float(v))) - int(np.ceil(1.8 * radius / px)) - 6
            left = int(np.round(float(u))) - mask.shape[1] // 2
            shadow = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), dtype=bool)
            for dr in range(3):
                for dc in range(3):
                    shadow[dr : dr + 5, dc : dc + mask.shape[1]] |= mask
            _stamp(out, shadow, top - 1, left - 1, np.zeros(3, dtype=np.uint8))
            _stamp(out, mask, top, left, colour)
    return out


# --------------------------------------------------------------------------------------
# mp4 files
# --------------------------------------------------------------------------------------


def _video_codec() -> str:
    """libx264 when this PyAV build has it (smaller, sharper files), else mpeg4."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float = 4.0) -> None:
    """Write frames (n, H, W, 3) uint8 RGB to an mp4 file, atomically.

    H.264 (libx264, yuv420p, CRF 18) or MPEG-4 part 2 when libx264 is missing; H and W
    must be even (4:2:0 chroma). The file appears under ``path`` only once complete: it
    is written to a temporary file in the same directory and then renamed.
    """
    video = np.asarray(frames)
    if video.ndim != 4 or video.shape[3] != 3 or video.dtype != np.uint8 or video.shape[0] < 1:
        raise InputError(
            f"frames must be (n >= 1, H, W, 3) uint8, got shape {video.shape} dtype {video.dtype}"
        )
    n, height, width = video.shape[:3]
    if height % 2 or width % 2:
        raise InputError(f"mp4 frame size must be even (yuv420p), got {width} x {height}")
    if not np.isfinite(fps) or fps <= 0:
        raise InputError(f"fps must be a positive finite number, got {fps}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InputError(f"cannot write video {path}: directory {directory} does not exist")
    rate = Fraction(float(fps)).limit_denominator(1001)
    codec = _video_codec()
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".mp4", dir=directory)
    os.close(fd)
    try:
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            # One encoder thread: the corpus runs one worker process per core.
            stream.thread_count = 1
            if codec == "libx264":
                stream.options = {"preset": "veryfast", "crf": "18"}
            else:
                stream.bit_rate = 40 * width * height  # ~1.3 Mbit/s at 256 x 128
            for i in range(n):
                frame = av.VideoFrame.from_ndarray(video[i], format="rgb24")
                frame.pts = i
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
