"""Spatial captions: structured what / when / where of a scene -> natural-language text.

The SwanSphere paper (appendix A.2) captions its training clips automatically: a DoA
trajectory per source is written as JSON and handed, with the video and audio, to a
captioner. This module holds the data model of that JSON, the geometry that turns a track
into words, a default template captioner, and the plug-in point for any other captioner
(an LLM or MLLM client). The gRPC server uses the same code to caption what a game engine
knows about its scene (labelled objects with positions and velocities).

Conventions (as everywhere in SwanSphere): axes x front, y left, z up; azimuth
counter-clockwise from the front (positive = left) and elevation up, in radians unless a
name ends in ``_deg``; distances in metres, or relative (dimensionless, e.g. the DoA
trajectory's inverse-square-law distance). "Clockwise" is as seen from above.

Pieces, from data to text:

- :class:`TrackPoint`, :class:`SourceDescription`, :class:`SceneDescription` -- frozen
  dataclasses; ``SceneDescription.to_json()`` is the structured JSON any captioner receives.
- :func:`coarse_region` -- the six coarse regions (the rule is documented there);
  :func:`direction_phrase` -- finer wording that always contains its coarse region's word;
  :func:`describe_motion` -- static / moving / passing / circling, approaching / receding,
  rising / descending.
- :class:`Captioner` (protocol), :class:`TemplateCaptioner` (default, no model needed),
  :class:`CallableCaptioner` (wraps ``fn(json_dict) -> str``: the plug-in point).
- :func:`regions_in_caption` / :func:`region_mentions` -- parse coarse regions back out of
  a caption (used by the ``region_accuracy`` evaluation).
- Builders: :func:`scene_from_objects` (game-engine objects), :func:`scene_from_trajectories`
  (``swansphere.foa.doa.Trajectory.to_json()`` segment lists), :func:`scene_from_clip_metadata`
  (ground-truth tracks of a corpus clip.json); :func:`caption_scene_objects` in one call.

Labels: any short string naming a sound ("siren", "a siren", "dog_bark", "PoliceSiren").
snake_case and CamelCase become words; a caller may pass a ``phrases`` dict (label ->
noun phrase) for its own class vocabulary. Labels are limited to :data:`MAX_LABEL_CHARS`
characters: a longer one is rejected with :class:`InputError`, not truncated, because a
label is a class name and a cut-off one would put half a word into a caption.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from swansphere.errors import InputError, require_finite
from swansphere.foa.encode import direction_to_vector, vector_to_direction

# --------------------------------------------------------------------------- constants

REGIONS: tuple[str, ...] = ("front", "left", "back", "right", "above", "below")

# Coarse-region rule (see coarse_region): elevation beyond +-45 deg is above / below;
# otherwise the azimuth sector: front |az| <= 45, left 45 < az <= 135, right
# -135 <= az < -45, back |az| > 135.
ELEVATION_LIMIT_DEG = 45.0
FRONT_LIMIT_DEG = 45.0
BACK_LIMIT_DEG = 135.0
# Values within this many degrees of a boundary count as on it, so deg2rad(45) -> front
# even though its radian value is not exactly pi / 4 in binary.
_BOUNDARY_TOLERANCE_DEG = 1e-9

# Motion classification (see describe_motion).
MOVING_EXCURSION_DEG = 20.0  # farthest point from the start at least this far -> moving
CIRCLING_TRAVEL_DEG = 270.0  # net azimuth travel beyond this -> circling
CIRCLING_MAX_ELEVATION_DEG = 70.0  # azimuth steps nearer the poles do not count as travel
VERTICAL_CHANGE_DEG = 20.0  # end minus start elevation beyond this -> rising / descending
DISTANCE_RATIO = 1.5  # distance change by this factor -> approaching / receding
DIFFUSE_THRESHOLD = 0.7  # mean diffuseness at least this -> heard "all around"

# Input limits: a label names a class; a scene comes from a client and must stay small.
MAX_LABEL_CHARS = 100
MAX_SOURCES = 256
MAX_POINTS = 10_000

# Seed used when a captioner is called with rng=None, so captions are reproducible.
DEFAULT_SEED = 0

# Engine objects: the track is sampled every OBJECT_STEP_S over the horizon.
OBJECT_STEP_S = 0.25
MAX_OBJECT_POINTS = 401
MIN_OBJECT_DISTANCE_M = 1e-6  # nearer than this to the listener a point has no direction
DEFAULT_HORIZON_S = 5.0

# Modifier thresholds of the finer wording (degrees).
_CENTRED_DEG = 15.0  # this close to a region's centre: no sideways modifier
_ELEVATION_HINT_DEG = 12.0  # above this (and up to 45) a horizontal source gets "slightly above"
_ELEVATION_HIGH_DEG = 30.0  # above this: "above ear level"
_ZENITH_DEG = 75.0  # above this: "directly overhead", no azimuth modifier


# --------------------------------------------------------------------------- validation


def _finite_float(name: str, value: Any) -> float:
    """``value`` as a float; InputError naming ``name`` if it is not a finite number."""
    if isinstance(value, str):
        raise InputError(f"{name} must be a number, got the string {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{name} must be finite (not NaN or Inf), got {value!r}")
    return number


def _check_label(label: Any, name: str = "label") -> str:
    """The label with whitespace collapsed; InputError if empty, too long or unprintable."""
    if not isinstance(label, str):
        raise InputError(f"{name} must be a string, got {type(label).__name__}")
    text = " ".join(label.split())
    if not text:
        raise InputError(f"{name} is empty; give the sound a name such as 'siren'")
    if len(text) > MAX_LABEL_CHARS:
        raise InputError(
            f"{name} is {len(text)} characters long; at most {MAX_LABEL_CHARS} are accepted "
            f"(a label names a sound class, e.g. 'siren'; it starts {text[:30]!r})"
        )
    if not text.isprintable():
        raise InputError(f"{name} {text!r} contains control characters")
    if not any(ch.isalnum() for ch in text):
        raise InputError(f"{name} {text!r} holds no letter or digit")
    return text


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A Generator: rng itself, a new one from an int seed, or one from DEFAULT_SEED."""
    if rng is None:
        return np.random.default_rng(DEFAULT_SEED)
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise InputError(f"rng must be a numpy Generator, an int seed or None, got {rng!r}")


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class TrackPoint:
    """One keyframe of a source's track.

    t_s: seconds from the start of the scene (>= 0).
    azimuth, elevation: radians (module conventions); azimuth is wrapped to [-pi, pi],
        elevation must lie in [-pi/2, pi/2].
    distance: metres or relative (> 0), or None when unknown.
    diffuseness: in [0, 1] (1 = isotropic diffuse field), or None when unknown; a DoA
        trajectory provides it, ground truth does not.
    """

    t_s: float
    azimuth: float
    elevation: float
    distance: float | None = None
    diffuseness: float | None = None

    def __post_init__(self) -> None:
        t = _finite_float("t_s", self.t_s)
        if t < 0:
            raise InputError(f"t_s must be >= 0 seconds, got {t}")
        # math.remainder is exact for values already in [-pi, pi], so boundary values survive.
        az = math.remainder(_finite_float("azimuth", self.azimuth), 2 * math.pi)
        el = _finite_float("elevation", self.elevation)
        if abs(el) > math.pi / 2 + 1e-9:
            raise InputError(
                f"elevation must lie in [-pi/2, pi/2] radians, got {el} "
                f"({math.degrees(el):.1f} deg)"
            )
        el = min(max(el, -math.pi / 2), math.pi / 2)
        dist = self.distance
        if dist is not None:
            dist = _finite_float("distance", dist)
            if dist <= 0:
                raise InputError(f"distance must be > 0 (metres or relative), got {dist}")
        diff = self.diffuseness
        if diff is not None:
            diff = _finite_float("diffuseness", diff)
            if not 0.0 <= diff <= 1.0:
                raise InputError(f"diffuseness must lie in [0, 1], got {diff}")
        for name, value in (("t_s", t), ("azimuth", az), ("elevation", el)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "distance", dist)
        object.__setattr__(self, "diffuseness", diff)

    def to_json(self) -> dict[str, float]:
        """Keys t_s, azimuth_deg, elevation_deg, and distance / diffuseness when known."""
        data = {
            "t_s": self.t_s,
            "azimuth_deg": math.degrees(self.azimuth),
            "elevation_deg": math.degrees(self.elevation),
        }
        if self.distance is not None:
            data["distance"] = self.distance
        if self.diffuseness is not None:
            data["diffuseness"] = self.diffuseness
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "track point") -> TrackPoint:
        """Inverse of :meth:`to_json`; InputError naming ``where`` for a missing key."""
        if not isinstance(data, Mapping):
            raise InputError(f"{where} must be a JSON object, got {type(data).__name__}")
        for key in ("t_s", "azimuth_deg", "elevation_deg"):
            if key not in data:
                raise InputError(f"{where} lacks key {key!r}")
        return cls(
            _finite_float(f"{where} t_s", data["t_s"]),
            math.radians(_finite_float(f"{where} azimuth_deg", data["azimuth_deg"])),
            math.radians(_finite_float(f"{where} elevation_deg", data["elevation_deg"])),
            data.get("distance"),
            data.get("diffuseness"),
        )


@dataclass(frozen=True)
class SourceDescription:
    """What a source is and where it is when: a label and its track (keyframes, linear between).

    The source sounds from its first keyframe's time to its last; a track of a single point
    is a static source heard throughout the scene. ``points`` may be given as any sequence
    of :class:`TrackPoint` in time order (non-decreasing t_s); it is stored as a tuple.
    """

    label: str
    points: tuple[TrackPoint, ...]

    def __post_init__(self) -> None:
        label = _check_label(self.label)
        points = tuple(self.points) if isinstance(self.points, Iterable) else None
        if points is None:
            raise InputError(f"points of {label!r} must be a sequence of TrackPoint")
        if not points:
            raise InputError(f"source {label!r} has no track points")
        if len(points) > MAX_POINTS:
            raise InputError(f"source {label!r} has {len(points)} points; at most {MAX_POINTS}")
        for k, p in enumerate(points):
            if not isinstance(p, TrackPoint):
                raise InputError(
                    f"point {k} of {label!r} must be a TrackPoint, got {type(p).__name__}"
                )
        times = [p.t_s for p in points]
        if any(b < a for a, b in itertools.pairwise(times)):
            raise InputError(f"track points of {label!r} must be in time order, got t_s={times}")
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "points", points)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "track": [p.to_json() for p in self.points]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "source") -> SourceDescription:
        if not isinstance(data, Mapping):
            raise InputError(f"{where} must be a JSON object, got {type(data).__name__}")
        for key in ("label", "track"):
            if key not in data:
                raise InputError(f"{where} lacks key {key!r}")
        track = data["track"]
        if not isinstance(track, list):
            raise InputError(f"{where} track must be a list of points")
        return cls(
            data["label"],
            tuple(TrackPoint.from_json(p, f"{where} point {k}") for k, p in enumerate(track)),
        )


@dataclass(frozen=True)
class SceneDescription:
    """A scene of ``duration_s`` seconds and its sources: the structured input of a captioner.

    At least one source (a scene with none has nothing to caption) and at most
    :data:`MAX_SOURCES`; every track point must fall within [0, duration_s].
    """

    duration_s: float
    sources: tuple[SourceDescription, ...]

    def __post_init__(self) -> None:
        duration = _finite_float("duration_s", self.duration_s)
        if duration <= 0:
            raise InputError(f"duration_s must be > 0 seconds, got {duration}")
        if not isinstance(self.sources, Iterable):
            raise InputError("sources must be a sequence of SourceDescription")
        sources = tuple(self.sources)
        if not sources:
            raise InputError("a scene needs at least one source; got zero sources")
        if len(sources) > MAX_SOURCES:
            raise InputError(f"a scene holds at most {MAX_SOURCES} sources, got {len(sources)}")
        for k, s in enumerate(sources):
            if not isinstance(s, SourceDescription):
                raise InputError(f"source {k} must be a SourceDescription, got {type(s).__name__}")
            last = s.points[-1].t_s
            if last > duration * (1 + 1e-9) + 1e-9:
                raise InputError(
                    f"source {k} ({s.label!r}) has a point at {last} s, after the scene's end "
                    f"({duration} s)"
                )
        object.__setattr__(self, "duration_s", duration)
        object.__setattr__(self, "sources", sources)

    def active_span(self, index: int) -> tuple[float, float]:
        """(start, end) seconds when source ``index`` sounds; a one-point track: the whole scene."""
        points = self.sources[index].points
        if len(points) == 1:
            return 0.0, self.duration_s
        return points[0].t_s, points[-1].t_s

    def to_json(self, include_summary: bool = False) -> dict[str, Any]:
        """The structured spatial JSON (plain types, ready for ``json.dumps``)::

            {"duration_s": 10.0,
             "convention": "...",                      # the angle convention, in words
             "sources": [{"label": "siren",
                          "track": [{"t_s": 0.0, "azimuth_deg": 120.0, "elevation_deg": 5.0,
                                     "distance": 4.0, "diffuseness": 0.1}, ...],
                          "summary": {...}}]}          # only with include_summary

        The summary per source (what the template captioner itself works from) holds
        start_s, end_s, timing ("throughout", "early", "late", "middle") and the
        :meth:`Motion.to_json` fields; it spares an LLM captioner the geometry.
        :meth:`from_json` ignores "convention" and "summary".
        """
        sources = []
        for k, source in enumerate(self.sources):
            entry = source.to_json()
            if include_summary:
                start, end = self.active_span(k)
                entry["summary"] = {
                    "start_s": start,
                    "end_s": end,
                    "timing": _timing_kind(start, end, self.duration_s),
                    **describe_motion(source.points).to_json(),
                }
            sources.append(entry)
        return {
            "duration_s": self.duration_s,
            "convention": (
                "azimuth_deg counter-clockwise from the front (positive = left, negative = "
                "right, +-180 = behind); elevation_deg up from the horizontal plane; "
                "distance in metres or relative; t_s in seconds from the start"
            ),
            "sources": sources,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> SceneDescription:
        """Inverse of :meth:`to_json`; also takes the JSON text."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise InputError(f"scene JSON does not parse: {exc}") from None
        if not isinstance(data, Mapping):
            raise InputError(f"scene JSON must be an object, got {type(data).__name__}")
        for key in ("duration_s", "sources"):
            if key not in data:
                raise InputError(f"scene JSON lacks key {key!r}")
        if not isinstance(data["sources"], list):
            raise InputError("scene JSON 'sources' must be a list")
        return cls(
            data["duration_s"],
            tuple(
                SourceDescription.from_json(s, f"source {k}") for k, s in enumerate(data["sources"])
            ),
        )


# --------------------------------------------------------------------------- geometry


def _wrap_deg(degrees: float) -> float:
    """Angle in [-180, 180] degrees (exact for values already inside)."""
    return math.remainder(degrees, 360.0)


def _azimuth_sector(azimuth: float) -> str:
    """front / left / back / right by azimuth alone (radians), boundaries as coarse_region."""
    az = _wrap_deg(math.degrees(azimuth))
    tol = _BOUNDARY_TOLERANCE_DEG
    if abs(az) <= FRONT_LIMIT_DEG + tol:
        return "front"
    if abs(az) > BACK_LIMIT_DEG + tol:
        return "back"
    return "left" if az > 0 else "right"


def coarse_region(azimuth: float, elevation: float) -> str:
    """The coarse region of a direction (radians): front, back, left, right, above or below.

    Rule (degrees; a value within 1e-9 deg of a boundary counts as on it):

    - elevation > 45 -> "above"; elevation < -45 -> "below" (elevation exactly +-45 is
      decided by azimuth);
    - otherwise, azimuth wrapped to [-180, 180]: |az| <= 45 -> "front";
      45 < az <= 135 -> "left"; -135 <= az < -45 -> "right"; |az| > 135 -> "back".

    So az 45 is front, az 135 is left, az -135 is right, az +-180 is back.
    """
    az = _finite_float("azimuth", azimuth)
    el = math.degrees(_finite_float("elevation", elevation))
    if el > ELEVATION_LIMIT_DEG + _BOUNDARY_TOLERANCE_DEG:
        return "above"
    if el < -ELEVATION_LIMIT_DEG - _BOUNDARY_TOLERANCE_DEG:
        return "below"
    return _azimuth_sector(az)


# Finer wording. Every phrase for a region contains that region's word (or a synonym the
# parser knows) as its head; modifiers use forms the parser recognises as modifiers
# ("slightly to the left", ", towards the back", "above ear level", compounds such as
# "front left" and "behind on the right"), so each phrase parses back to its region only.
_BASE_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "front": {
        "at": ("in front", "ahead", "in front of you"),
        "from": ("from the front", "from ahead", "from in front"),
        "to": ("to the front", "round to the front", "round in front of you"),
    },
    "back": {
        "at": ("behind", "behind you", "at the back"),
        "from": ("from behind", "from the back", "from the rear"),
        "to": ("round behind you", "to the back", "to the rear"),
    },
    "left": {
        "at": ("on the left", "to the left", "on your left"),
        "from": ("from the left", "from your left"),
        "to": ("to the left", "over to the left", "to your left"),
    },
    "right": {
        "at": ("on the right", "to the right", "on your right"),
        "from": ("from the right", "from your right"),
        "to": ("to the right", "over to the right", "to your right"),
    },
    "above": {
        "at": ("above", "overhead", "above you"),
        "from": ("from above", "from overhead"),
        "to": ("up overhead", "up above you"),
    },
    "below": {
        "at": ("below", "beneath you", "below you"),
        "from": ("from below", "from beneath"),
        "to": ("down below", "down beneath you"),
    },
}
_CENTRED_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "front": {"at": ("straight ahead", "directly in front"), "from": ("from straight ahead",)},
    "back": {"at": ("directly behind", "straight behind you"), "from": ("from directly behind",)},
    "left": {"at": ("directly to the left", "directly on your left"), "from": ()},
    "right": {"at": ("directly to the right", "directly on your right"), "from": ()},
}
_ZENITH_PHRASES: dict[str, tuple[str, ...]] = {
    "above": ("directly overhead", "overhead", "straight above you", "high above you"),
    "below": ("directly below", "straight beneath you", "underneath you", "below you"),
}
# Path wording: "passes from the left across the front to the right".
_VIA_PHRASES: dict[str, tuple[str, ...]] = {
    "front": ("across the front", "in front of you"),
    "back": ("round behind you", "behind you"),
    "left": ("via the left", "past your left"),
    "right": ("via the right", "past your right"),
    "above": ("over your head", "overhead"),
    "below": ("underneath you", "beneath you"),
}
_CENTRE_DEG = {"front": 0.0, "left": 90.0, "back": 180.0, "right": -90.0}
_CCW_NEIGHBOUR = {"front": "left", "left": "back", "back": "right", "right": "front"}
_CW_NEIGHBOUR = {"front": "right", "right": "back", "back": "left", "left": "front"}
_FORMS = ("at", "from", "to")


def _sideways_phrases(region: str, toward: str, form: str) -> tuple[str, ...]:
    """Wording of a horizontal ``region`` shifted towards its neighbour region ``toward``."""
    if region in ("front", "back"):
        side = toward  # left or right
        if region == "front":
            table = {
                "at": (
                    f"in front, slightly to the {side}",
                    f"ahead and a little to the {side}",
                    f"at the front {side}",
                    f"in front and slightly to the {side}",
                ),
                "from": (f"from the front {side}", f"from ahead and slightly to the {side}"),
                "to": (f"to the front {side}", f"round to the front {side}"),
            }
        else:
            table = {
                "at": (
                    f"behind on the {side}",
                    f"behind you, slightly to the {side}",
                    f"at the back {side}",
                    f"behind you on the {side}",
                ),
                "from": (f"from behind on the {side}", f"from the back {side}"),
                "to": (f"round behind you on the {side}", f"to the back {side}"),
            }
        return table[form]
    # region is left or right; toward is front or back
    adverb, noun = ("ahead", "front") if toward == "front" else ("behind", "back")
    table = {
        "at": (
            f"on the {region}, slightly {adverb}",
            f"to the {region} and a little {adverb}",
            f"slightly {adverb} on the {region}",
            f"on the {region}, towards the {noun}",
        ),
        "from": (f"from slightly {adverb} on the {region}", *_BASE_PHRASES[region]["from"]),
        "to": _BASE_PHRASES[region]["to"],
    }
    return table[form]


def _elevation_modifiers(elevation_deg: float) -> tuple[str, ...]:
    """Modifiers for a horizontal-region source that is somewhat raised or lowered."""
    if elevation_deg > _ELEVATION_HIGH_DEG:
        return ("above ear level", "well above ear level", "raised high")
    if elevation_deg > _ELEVATION_HINT_DEG:
        return ("slightly above", "a little above", "slightly raised")
    if elevation_deg < -_ELEVATION_HIGH_DEG:
        return ("below ear level", "well below ear level", "low down")
    if elevation_deg < -_ELEVATION_HINT_DEG:
        return ("slightly below", "a little below", "slightly low")
    return ()


def direction_phrase(
    azimuth: float,
    elevation: float,
    form: str = "at",
    rng: np.random.Generator | int | None = None,
    detail: bool = True,
) -> str:
    """A finer wording of a direction (radians), e.g. "in front, slightly to the right".

    form: "at" ("behind on the left"), "from" ("from behind on the left") or "to"
    ("round behind you on the left"); "at" carries the most detail (sideways and, with
    ``detail``, height modifiers; ``detail=False`` keeps a phrase short inside a longer
    sentence). The phrase always parses back to exactly ``coarse_region(azimuth,
    elevation)`` with :func:`regions_in_caption`. Deterministic given ``rng`` (None: the
    default seed).
    """
    if form not in _FORMS:
        raise InputError(f"form must be one of {_FORMS}, got {form!r}")
    generator = _as_rng(rng)
    region = coarse_region(azimuth, elevation)
    az_deg = _wrap_deg(math.degrees(azimuth))
    el_deg = math.degrees(elevation)
    if region in ("above", "below"):
        if form == "at" and abs(el_deg) >= _ZENITH_DEG:
            return _pick(generator, _ZENITH_PHRASES[region])
        head = _pick(generator, _BASE_PHRASES[region][form])
        if form != "at":
            return head
        sector = _azimuth_sector(azimuth)
        adverb = {"front": "in front", "back": "behind"}.get(sector, f"to the {sector}")
        return _pick(generator, (f"{head}, towards the {sector}", f"{head} and slightly {adverb}"))
    offset = _wrap_deg(az_deg - _CENTRE_DEG[region])  # > 0: turned counter-clockwise
    if abs(offset) <= _CENTRED_DEG:
        options = _BASE_PHRASES[region][form] + _CENTRED_PHRASES[region].get(form, ())
    else:
        toward = _CCW_NEIGHBOUR[region] if offset > 0 else _CW_NEIGHBOUR[region]
        options = _sideways_phrases(region, toward, form)
    phrase = _pick(generator, options)
    height = _elevation_modifiers(el_deg) if form == "at" and detail else ()
    if height:
        if "," in phrase or " and " in phrase:  # never "a, b, c" or "a and b and c"
            joint = " and " if "," in phrase else ", "
        else:
            joint = _pick(generator, (", ", " and "))
        phrase = f"{phrase}{joint}{_pick(generator, height)}"
    return phrase


@dataclass(frozen=True)
class Motion:
    """How a source moves, from :func:`describe_motion`.

    kind: "static" (never farther than MOVING_EXCURSION_DEG from where it starts),
        "circling" (net azimuth travel beyond CIRCLING_TRAVEL_DEG), "passing" (moving, and
        it ends in another coarse region than it starts in) or "moving" (moving within
        one region, or away and back).
    start_region, end_region: coarse regions of the start and end directions; for a static
        source both are the region of its dominant direction.
    via_region: "passing": region of the path's midpoint (by angle travelled) when it is
        neither the start nor the end region; "moving": region of the point farthest from
        the start when it differs from the start region; else None.
    start_azimuth, start_elevation, end_azimuth, end_elevation: radians. For a static
        source both are its dominant direction (the track point nearest the mean direction).
    excursion_deg: largest angle between the start and any later point.
    azimuth_travel_deg: net signed azimuth travel (> 0 counter-clockwise seen from above),
        summed over steps whose ends both lie within CIRCLING_MAX_ELEVATION_DEG of the
        horizontal (near the poles azimuth is meaningless).
    distance_trend: "approaching" (end distance <= start / DISTANCE_RATIO), "receding"
        (end >= start * DISTANCE_RATIO), "passing by" (closest point nearer than both ends
        by that ratio), "steady", or None when the track has no distances.
    vertical: "rising" / "descending" (end minus start elevation beyond
        VERTICAL_CHANGE_DEG) or "level".
    diffuse: mean diffuseness (of the points that have one) >= DIFFUSE_THRESHOLD.
    """

    kind: str
    start_region: str
    end_region: str
    via_region: str | None
    start_azimuth: float
    start_elevation: float
    end_azimuth: float
    end_elevation: float
    excursion_deg: float
    azimuth_travel_deg: float
    distance_trend: str | None
    vertical: str
    diffuse: bool

    @property
    def rotation(self) -> str:
        """ "anticlockwise" or "clockwise" (seen from above) by the sign of the azimuth travel."""
        return "anticlockwise" if self.azimuth_travel_deg > 0 else "clockwise"

    def to_json(self) -> dict[str, Any]:
        """Plain-typed fields, angles in degrees (keys ending in _deg)."""
        return {
            "motion": self.kind,
            "start_region": self.start_region,
            "end_region": self.end_region,
            "via_region": self.via_region,
            "start_azimuth_deg": math.degrees(self.start_azimuth),
            "start_elevation_deg": math.degrees(self.start_elevation),
            "end_azimuth_deg": math.degrees(self.end_azimuth),
            "end_elevation_deg": math.degrees(self.end_elevation),
            "excursion_deg": self.excursion_deg,
            "azimuth_travel_deg": self.azimuth_travel_deg,
            "rotation": self.rotation if self.kind == "circling" else None,
            "distance_trend": self.distance_trend,
            "vertical": self.vertical,
            "diffuse": self.diffuse,
        }


def _distance_trend(distances: list[float | None]) -> str | None:
    if len(distances) < 2 or any(d is None for d in distances):
        return None
    d = np.asarray(distances, dtype=np.float64)
    first, last, nearest = d[0], d[-1], float(np.min(d))
    if nearest * DISTANCE_RATIO <= first and nearest * DISTANCE_RATIO <= last:
        return "passing by"
    if last * DISTANCE_RATIO <= first:
        return "approaching"
    if last >= first * DISTANCE_RATIO:
        return "receding"
    return "steady"


def _angles(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angles (radians) between unit vectors (n, 3) and (n or 1, 3); atan2 of |u x v| and
    u . v stays exact for small angles, where arccos(u . v) loses half the digits."""
    return np.arctan2(np.linalg.norm(np.cross(u, v), axis=-1), np.sum(u * v, axis=-1))


def describe_motion(points: Sequence[TrackPoint]) -> Motion:
    """Classify a track (TrackPoints in time order) as static, moving, passing or circling.

    See :class:`Motion` for every field and threshold. Example: a source going from
    azimuth 90 deg through 0 to -90 deg is "passing" from "left" to "right" via "front".
    """
    pts = tuple(points)
    if not pts or not all(isinstance(p, TrackPoint) for p in pts):
        raise InputError("describe_motion needs a non-empty sequence of TrackPoint")
    az = np.array([p.azimuth for p in pts])
    el = np.array([p.elevation for p in pts])
    vectors = direction_to_vector(az, el)  # (n, 3)
    from_start = np.degrees(_angles(vectors, vectors[0][None, :]))
    excursion = float(np.max(from_start))

    steps = np.diff(np.unwrap(az))
    horizontal = np.abs(np.degrees(el)) <= CIRCLING_MAX_ELEVATION_DEG
    counted = horizontal[:-1] & horizontal[1:]
    travel = float(np.degrees(np.sum(steps[counted])))

    vertical_change = math.degrees(pts[-1].elevation - pts[0].elevation)
    vertical = (
        "rising"
        if vertical_change > VERTICAL_CHANGE_DEG
        else "descending"
        if vertical_change < -VERTICAL_CHANGE_DEG
        else "level"
    )
    diffuseness = [p.diffuseness for p in pts if p.diffuseness is not None]
    diffuse = bool(diffuseness) and float(np.mean(diffuseness)) >= DIFFUSE_THRESHOLD
    trend = _distance_trend([p.distance for p in pts])

    start, end = pts[0], pts[-1]
    via = None
    if excursion < MOVING_EXCURSION_DEG:
        kind = "static"
        # An actual track point, not the mean itself, so a constant track keeps its exact
        # angles (a recomputed mean could fall just across a region boundary).
        mean = vectors.mean(axis=0)
        start = end = pts[int(np.argmax(vectors @ mean))]
    elif abs(travel) > CIRCLING_TRAVEL_DEG:
        kind = "circling"
    else:
        start_region = coarse_region(start.azimuth, start.elevation)
        end_region = coarse_region(end.azimuth, end.elevation)
        if start_region != end_region:
            kind = "passing"
            path = np.concatenate([[0.0], np.cumsum(_angles(vectors[1:], vectors[:-1]))])
            mid = pts[int(np.searchsorted(path, path[-1] / 2))]
            via = coarse_region(mid.azimuth, mid.elevation)
            via = None if via in (start_region, end_region) else via
        else:
            kind = "moving"
            far = pts[int(np.argmax(from_start))]
            via = coarse_region(far.azimuth, far.elevation)
            via = None if via == start_region else via
    return Motion(
        kind=kind,
        start_region=coarse_region(start.azimuth, start.elevation),
        end_region=coarse_region(end.azimuth, end.elevation),
        via_region=via,
        start_azimuth=start.azimuth,
        start_elevation=start.elevation,
        end_azimuth=end.azimuth,
        end_elevation=end.elevation,
        excursion_deg=excursion,
        azimuth_travel_deg=travel,
        distance_trend=trend,
        vertical=vertical,
        diffuse=diffuse,
    )


# --------------------------------------------------------------------------- parsing


def _region_of_word(word: str) -> str:
    word = " ".join(word.split())
    if word in ("in front", "ahead", "forward", "front"):
        return "front"
    if word in ("behind", "back", "rear"):
        return "back"
    if word in ("above", "up"):
        return "above"
    if word in ("below", "down", "beneath"):
        return "below"
    return word  # left, right


# Modifiers refine a head ("in front, slightly to the left"): they count only in a clause
# that names no region otherwise ("a dog barks slightly to the left").
_WEAK_PATTERNS = (
    re.compile(
        r"\b(?:slightly|a little|a bit|somewhat|just)\s+(?:(?:to|towards|on)\s+(?:the|your)\s+)?"
        r"(left|right|ahead|forward|in\s+front|front|behind|back|rear|above|below|up|down|beneath)\b"
    ),
    re.compile(
        r"(?:,|\band|\bslightly|\ba little)\s+towards?\s+(?:the\s+|your\s+)?"
        r"(front|back|rear|left|right)\b"
    ),
    re.compile(r"\b(above|below)\s+(?:ear|head)\s+level\b"),
    re.compile(r"\b(left|right)\s+of\s+cent(?:re|er)\b"),
)
# Compounds name one region: "front left" is front, "behind on the right" is back.
_COMPOUND_PATTERNS = (
    re.compile(r"\b(front|back|rear)[- ](?:left|right)\b"),
    re.compile(
        r"\b(behind|in\s+front|ahead)(?:\s+of)?(?:\s+you|\s+the\s+listener)?,?\s+on\s+"
        r"(?:the|your)\s+(?:left|right)\b"
    ),
)
# Words that look spatial but are not: removed before heads are searched.
_NON_SPATIAL = (
    re.compile(r"\bback[- ]and[- ]forth\b"),
    re.compile(
        r"\b(?:come|comes|coming|came|go|goes|going|went|turn|turns|turning|turned|fade|fades|"
        r"fading|faded|bring|brings|brought)\s+back\b"
    ),
    re.compile(r"\babove\s+all\b(?=\s*(?:[,.;:!?]|$|else\b))"),  # not "above all the way"
    re.compile(r"\ball\s+right\b"),
    re.compile(r"\b(?:is|are|was|were|be|been|being|has|have|had)\s+left\b"),
)
_HEADS = re.compile(
    r"\b(?P<front>in\s+front|ahead|front)\b"
    r"|\b(?P<back>behind|rear|back)\b"
    r"|\b(?P<left>left)\b"
    r"|\b(?P<right>right)\b"
    r"|\b(?P<above>above|overhead|up\s+high|high\s+up|over\s+(?:your|the\s+listener's|my)\s+head)\b"
    r"|\b(?P<below>below|beneath|underneath|underfoot|under\s+(?:your|the\s+listener's|my)\s+feet)\b"
)
# "right" as an intensifier ("right behind you", "right away") is not a direction unless it
# follows an article or preposition ("on the right", "to your right").
_RIGHT_SPATIAL_BEFORE = frozenset(
    "the your to on from and or front back rear far my his her their its".split()
)
_RIGHT_INTENSIFIED = re.compile(
    r"\s+(?:in\s+front|behind|above|below|overhead|beneath|under|underneath|next|beside|by|"
    r"over|at|on|in|into|through|after|before|away|now|then|here|there|ahead|around|along|up|"
    r"down|across|near|close)\b"
)
_CLAUSE_SPLIT = re.compile(r"[.;!?\n]+|\b(?:while|whilst|meanwhile|then|whereas)\b")


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + " " * (end - start) + text[end:]


def _clause_regions(clause: str) -> list[str]:
    """Regions named in one clause, in order: its heads, or its modifiers if it has no head."""
    text = clause
    for pattern in _NON_SPATIAL:
        for m in pattern.finditer(text):
            text = _blank(text, m.start(), m.end())
    weak: list[tuple[int, str]] = []
    for pattern in _WEAK_PATTERNS:
        for m in pattern.finditer(text):
            weak.append((m.start(), _region_of_word(m.group(1))))
            text = _blank(text, m.start(), m.end())
    strong: list[tuple[int, str]] = []
    for pattern in _COMPOUND_PATTERNS:
        for m in pattern.finditer(text):
            strong.append((m.start(), _region_of_word(m.group(1))))
            text = _blank(text, m.start(), m.end())
    for m in _HEADS.finditer(text):
        region = m.lastgroup or ""
        if region == "right":
            before = text[: m.start()].split()
            spatial_before = bool(before) and before[-1] in _RIGHT_SPATIAL_BEFORE
            if not spatial_before and _RIGHT_INTENSIFIED.match(text, m.end()):
                continue
        strong.append((m.start(), region))
    chosen = strong or weak
    return [region for _, region in sorted(chosen)]


def region_mentions(text: str, ignore: Iterable[str] = ()) -> list[str]:
    """Coarse regions named in a caption, in order of mention (repeats kept).

    Recognised (case-insensitive): front ("in front", "ahead", "front"), back ("behind",
    "back", "rear"), left, right, above ("above", "overhead", "up high", "over your head"),
    below ("below", "beneath", "underneath", "underfoot"). Compounds count once for their
    first word ("front left" -> front, "behind on the right" -> back). Modifiers ("slightly
    to the left", ", towards the back", "above ear level", "left of centre") count only in a
    clause (split at . ; ! ? and at while / meanwhile / then / whereas) that names no region
    otherwise. Non-spatial uses are skipped: "back and forth", "comes back", "right away",
    "right behind you" (the intensifier), "all right", "above all", "has left".
    ``ignore``: phrases removed first, e.g. labels that contain a region word ("rear door").
    """
    if not isinstance(text, str):
        raise InputError(f"caption must be a string, got {type(text).__name__}")
    lowered = text.lower()
    for phrase in ignore:
        if phrase:
            lowered = lowered.replace(str(phrase).lower(), " ")
    regions: list[str] = []
    for clause in _CLAUSE_SPLIT.split(lowered):
        regions.extend(_clause_regions(clause))
    return regions


def regions_in_caption(text: str, ignore: Iterable[str] = ()) -> set[str]:
    """The set of coarse regions a caption names; see :func:`region_mentions` for the rules."""
    return set(region_mentions(text, ignore))


# --------------------------------------------------------------------------- wording


@dataclass(frozen=True)
class _Family:
    """Verbs for a family of sound labels, found by keywords among the label's words."""

    keywords: frozenset[str]
    sound_verbs: tuple[str, ...]  # base forms; conjugated by _conjugate
    move_verbs: tuple[str, ...] = ("move", "pass", "travel")
    # A sound noun after a source noun is dropped: "dog bark" -> "a dog" + "barks".
    strip: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()


def _family(
    keywords: str, sound: str, move: str = "move,pass,travel", strip: str = "", sources: str = ""
) -> _Family:
    return _Family(
        frozenset(keywords.split()),
        tuple(sound.split(",")),
        tuple(move.split(",")),
        frozenset(strip.split()),
        frozenset(sources.split()),
    )


# First family with a keyword among the label's words wins (so "running water" is water).
_FAMILIES: tuple[_Family, ...] = (
    _family(
        "dog dogs puppy puppies hound bark barks barking woof",
        "bark,yelp,woof",
        "move,run,pass",
        "bark barks barking",
        "dog dogs puppy puppies hound",
    ),
    _family("siren sirens ambulance police", "wail,blare,sound", "pass,move,race"),
    _family(
        "alarm alarms beep beeps beeping beeper",
        "beep,sound,ring",
        strip="beep beeps beeping",
        sources="alarm alarms clock",
    ),
    _family("bell bells chime chimes gong", "ring,chime,toll"),
    _family(
        "rain rainfall drizzle downpour raindrops", "fall,patter,pour down", "move,sweep,drift"
    ),
    _family("wind breeze gust gusts gale", "blow,howl,whistle", "sweep,move,blow"),
    _family("water stream river brook waterfall fountain waves surf creek", "flow,trickle,rush"),
    _family(
        "bird birds songbird chirp chirping tweet tweeting", "sing,chirp,twitter", "fly,flit,move"
    ),
    _family("birdsong song music melody singing", "ring out,drift,sound", "drift,move,travel"),
    _family("footsteps footstep steps walking feet boots", "tap,patter,sound", "walk,move,pass"),
    _family(
        "car cars engine engines truck lorry motorcycle motorbike vehicle bus traffic tractor "
        "train",
        "rumble,roar,hum",
        "drive,pass,move",
    ),
    _family(
        "helicopter plane airplane aeroplane aircraft jet drone",
        "drone,roar,thrum",
        "fly,pass,sweep",
    ),
    _family("crowd audience fans spectators", "cheer,murmur,roar"),
    _family(
        "speech talking talk voice voices conversation chatter chattering babble people person "
        "man woman child children speaker",
        "murmur,chatter,be heard",
        strip="talking talk chatter chattering speaking",
        sources="people man woman person child children voices",
    ),
    _family("clap claps clapping applause", "ring out,sound,echo"),
    _family("drum drums percussion", "play,pound,thump"),
    _family("guitar string strings harp plucked piano violin cello ukulele", "play,ring out,sound"),
    _family("thunder thunderclap", "rumble,crash,roll"),
    _family("fire fireplace campfire flames", "crackle,pop,hiss"),
    _family("machine machinery fan motor generator drill", "hum,whir,buzz"),
)
_FALLBACK = _family("", "be heard,sound,can be heard")

_DETERMINERS = frozenset(
    "a an the some two three four five several many his her their my your our this that these "
    "those one another".split()
)
_PLURAL_NOUNS = frozenset("people children men women feet geese mice police cattle".split())
_MASS_NOUNS = frozenset(
    "rain wind water birdsong music speech babble traffic thunder applause noise static hail snow "
    "laughter chatter rustling ambience fire surf rainfall drizzle steam gunfire machinery "
    "construction wildlife audio sound news cheering singing whistling crackling".split()
)


@dataclass(frozen=True)
class _Subject:
    text: str  # noun phrase, e.g. "a siren", "footsteps"
    plural: bool
    family: _Family

    @property
    def pronoun(self) -> str:
        return "they" if self.plural else "it"


def _words(text: str) -> list[str]:
    """Display words: snake_case and CamelCase split, lower-cased except acronyms ("TV")."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text.replace("_", " "))
    return [w if (w.isupper() and len(w) > 1) else w.lower() for w in spaced.split()]


def _subject(label: str, phrases: Mapping[str, str] | None) -> _Subject:
    text = label
    if phrases:
        text = phrases.get(label, phrases.get(" ".join(_words(label)), label))
    words = _words(text)
    keys = [re.sub(r"[^a-z0-9']", "", w.lower()) for w in words]
    family = next((f for f in _FAMILIES if f.keywords.intersection(keys)), _FALLBACK)
    has_det = keys[0] in _DETERMINERS and len(words) > 1
    start = 1 if has_det else 0
    content = keys[start:]
    if len(content) >= 2 and content[-1] in family.strip and content[-2] in family.sources:
        words, keys, content = words[:-1], keys[:-1], content[:-1]
    head = content[-1]
    if len(content) >= 2 and head.endswith("ing"):
        head = content[-2]  # "people talking": the head noun is "people"
    plural = head in _PLURAL_NOUNS or (
        head.endswith("s")
        and not head.endswith(("ss", "us", "is"))
        and len(head) > 3
        and head not in _MASS_NOUNS
    )
    phrase = " ".join(words)
    if not has_det:
        mass = head in _MASS_NOUNS or (len(content) == 1 and head.endswith("ing"))
        if not (plural or mass):
            phrase = f"{_indefinite_article(words[0])} {phrase}"
    return _Subject(phrase, plural, family)


def _indefinite_article(word: str) -> str:
    w = word.lower()
    if w.startswith(("hour", "honest", "heir")):
        return "an"
    if w[:1] in "aeiou" and not w.startswith(("uni", "use", "usu", "eu", "one", "ufo")):
        return "an"
    return "a"


def label_phrase(label: str, phrases: Mapping[str, str] | None = None) -> str:
    """The noun phrase a caption uses for ``label``: "siren" -> "a siren", "dog_bark" ->
    "a dog", "footsteps" -> "footsteps", "rain" -> "rain". ``phrases`` maps labels (as given
    or in words) to the caller's own noun phrases, which get the same treatment."""
    return _subject(_check_label(label), phrases).text


def _conjugate(verb: str, plural: bool) -> str:
    """Present tense of a base-form verb phrase for a singular or plural subject."""
    first, _, rest = verb.partition(" ")
    tail = f" {rest}" if rest else ""
    if first == "be":
        return ("are" if plural else "is") + tail
    if plural or first in ("can", "may", "will"):
        return verb
    if first == "have":
        return "has" + tail
    if first.endswith(("s", "sh", "ch", "x", "z", "o")):
        return f"{first}es{tail}"
    if first.endswith("y") and first[-2:-1] not in "aeiou":
        return f"{first[:-1]}ies{tail}"
    return f"{first}s{tail}"


# --------------------------------------------------------------------------- timing


def _timing_kind(start: float, end: float, duration: float) -> str:
    """ "throughout", "early", "late" or "middle" by the active span's fractions of the scene."""
    f0, f1 = start / duration, end / duration
    if f0 <= 0.1 and f1 >= 0.9:
        return "throughout"
    if f0 <= 0.1:
        return "early"
    if f1 >= 0.9:
        return "late"
    return "middle"


def _seconds(value: float) -> str:
    """'about'-style number: one decimal below 1 s, halves below 10 s, whole seconds above."""
    if value < 1:
        number = f"{value:.1f}"
    elif value < 10:
        number = f"{round(value * 2) / 2:g}"
    else:
        number = f"{round(value):d}"
    return number


def _unit(number: str) -> str:
    return "second" if number == "1" else "seconds"


def _timing_phrases(start: float, end: float, duration: float) -> tuple[str, list[str], list[str]]:
    """(kind, clause-final phrases, sentence-initial phrases) for an active span (seconds)."""
    kind = _timing_kind(start, end, duration)
    f0, f1 = start / duration, end / duration
    t0, t1 = _seconds(start), _seconds(end)
    if kind == "throughout":
        return kind, ["throughout", "the whole time", "all the way through"], ["Throughout"]
    if kind == "early":
        suffix = ["at first", "early on", f"for about the first {t1} {_unit(t1)}"]
        prefix = ["At first", "Early on", f"For about the first {t1} {_unit(t1)}"]
        if 0.35 <= f1 <= 0.65:
            suffix.append("during the first half")
            prefix.append("During the first half")
        return kind, suffix, prefix
    if kind == "late":
        suffix = [f"after about {t0} {_unit(t0)}", "later on", f"from about {t0} {_unit(t0)} on"]
        prefix = [f"After about {t0} {_unit(t0)}", "Later on"]
        if 0.35 <= f0 <= 0.65:
            suffix.append("in the second half")
            prefix.append("In the second half")
        if f0 >= 0.7:
            suffix.append("towards the end")
            prefix.append("Towards the end")
        return kind, suffix, prefix
    suffix = [f"from about {t0} to {t1} seconds", f"between about {t0} and {t1} seconds"]
    prefix = [f"From about {t0} to {t1} seconds", f"Between about {t0} and {t1} seconds"]
    if f0 >= 0.2 and f1 <= 0.8:
        suffix.append("in the middle")
        prefix.append("In the middle")
    return kind, suffix, prefix


# --------------------------------------------------------------------------- captioners


@runtime_checkable
class Captioner(Protocol):
    """Anything that turns a scene into a caption. Implement this to plug in your own.

    ``rng`` makes template wording reproducible; model-based captioners may ignore it.
    """

    def caption(self, scene: SceneDescription, rng: np.random.Generator | None = None) -> str: ...


@dataclass(frozen=True)
class _SourceInfo:
    subject: _Subject
    motion: Motion
    start_s: float
    end_s: float
    duration_s: float


def _static_clause(info: _SourceInfo, rng: np.random.Generator, initial: bool) -> tuple[str, bool]:
    """(clause, begins with an adverbial) for a source that stays in one direction."""
    s, m = info.subject, info.motion
    subj = s.text
    verb = _conjugate(_pick(rng, s.family.sound_verbs), s.plural)
    trend = m.distance_trend
    # A trend adds its own phrase ("getting closer"), so the location is kept short then.
    plain_trend = trend in (None, "steady")
    at = direction_phrase(m.start_azimuth, m.start_elevation, "at", rng, detail=plain_trend)
    frm = direction_phrase(m.start_azimuth, m.start_elevation, "from", rng)
    if m.diffuse:
        plain = [
            f"{subj} {verb} all around, strongest {at}",
            f"{subj} {verb} all around you, mostly {frm}",
            f"{subj} {_conjugate('surround', s.plural)} you, loudest {at}",
        ]
        return _pick(rng, plain), False
    if trend == "approaching":
        plain = [
            f"{subj} {_conjugate(_pick(rng, ('approach', 'draw near')), s.plural)} {frm}",
            f"{subj} {verb} {at}, getting closer",
            f"{subj} {verb} {at}, coming closer",
        ]
    elif trend == "receding":
        plain = [
            f"{subj} {verb} {at}, moving away",
            f"{subj} {_conjugate(_pick(rng, ('recede', 'move away')), s.plural)} {at}",
            f"{subj} {verb} {at} and {_conjugate('fade', s.plural)} into the distance",
        ]
    elif trend == "passing by":
        plain = [
            f"{subj} {_conjugate('pass', s.plural)} close by {at}",
            f"{subj} {verb} {at} and {_conjugate('pass', s.plural)} close by",
        ]
    else:
        plain = [
            f"{subj} {verb} {at}",
            f"{subj} {_conjugate('can be heard', s.plural)} {at}",
            f"{subj} {verb} {frm}",
        ]
    prefixed = [f"{at}, {subj} {verb}", f"You hear {subj} {at}"]
    if initial and plain_trend and rng.random() < 0.4:
        return _pick(rng, prefixed), True
    return _pick(rng, plain), False


def _moving_clause(info: _SourceInfo, rng: np.random.Generator, initial: bool) -> tuple[str, bool]:
    """(clause, begins with an adverbial) for a moving, passing or circling source."""
    s, m = info.subject, info.motion
    subj = s.text
    verb = _conjugate(_pick(rng, s.family.sound_verbs), s.plural)
    if m.vertical == "rising":
        move_base = _pick(rng, ("rise", "climb", "ascend"))
    elif m.vertical == "descending":
        move_base = _pick(rng, ("descend", "drop", "sink"))
    else:
        move_base = _pick(rng, s.family.move_verbs)
    move = _conjugate(move_base, s.plural)
    at_start = direction_phrase(m.start_azimuth, m.start_elevation, "at", rng, detail=False)
    from_start = direction_phrase(m.start_azimuth, m.start_elevation, "from", rng)
    at_end = direction_phrase(m.end_azimuth, m.end_elevation, "at", rng, detail=False)
    to_end = direction_phrase(m.end_azimuth, m.end_elevation, "to", rng)

    if m.kind == "circling":
        circle = _conjugate(_pick(rng, ("circle", "go round", "wheel round")), s.plural)
        ending = f", ending {at_end}" if m.end_region != m.start_region else ""
        plain = [
            f"{subj} {circle} you {m.rotation}, starting {at_start}{ending}",
            f"{subj} {verb} as {s.pronoun} {circle} you {m.rotation}, starting {at_start}{ending}",
        ]
        prefixed = [f"Starting {at_start}, {subj} {circle} you {m.rotation}{ending}"]
    elif m.kind == "moving":
        if m.via_region is not None:
            # Away and back: name the turning region and, by "returns ...", the end region.
            via = _pick(rng, _BASE_PHRASES[m.via_region]["to"])
            back = f"{_conjugate('return', s.plural)} {to_end}"
            plain = [
                f"{subj} {move} {from_start} {via} and {back}",
                f"{subj} {verb} {at_start} and {move} {via} before returning {to_end}",
            ]
            prefixed = [f"Starting {at_start}, {subj} {move} {via} and {back}"]
        else:
            drift = _conjugate(_pick(rng, ("drift", "move", "wander")), s.plural)
            plain = [
                f"{subj} {verb} {at_start}, moving about",
                f"{subj} {drift} around {at_start}",
            ]
            if m.vertical != "level":
                plain.append(f"{subj} {move} {at_start}")
            prefixed = [f"{at_start}, {subj} {drift} around"]
    else:  # passing
        via = f" {_pick(rng, _VIA_PHRASES[m.via_region])}" if m.via_region else ""
        path = f"{from_start}{via} {to_end}"
        if m.distance_trend in ("approaching", "passing by"):
            approach = _conjugate(_pick(rng, ("approach", "come in")), s.plural)
            plain = [
                f"{subj} {approach} {from_start} and {move}{via} {to_end}",
                f"{subj} {verb} as {s.pronoun} {approach} {from_start} and {move}{via} {to_end}",
            ]
        elif m.distance_trend == "receding":
            plain = [
                f"{subj} {move} {path}, moving away",
                f"{subj} {verb} as {s.pronoun} {move} {path} and {_conjugate('fade', s.plural)}",
            ]
        else:
            plain = [
                f"{subj} {verb} {from_start} and {move}{via} {to_end}",
                f"{subj} {move} {path}",
                f"{subj} {verb} as {s.pronoun} {move} {path}",
            ]
        prefixed = [f"Starting {at_start}, {subj} {move}{via} {to_end}"]
    if initial and rng.random() < 0.3:
        return _pick(rng, prefixed), True
    return _pick(rng, plain), False


def _clause(info: _SourceInfo, rng: np.random.Generator, initial: bool) -> str:
    """One source's clause with its optional timing phrase (what, where, when)."""
    if info.motion.kind == "static":
        clause, prefixed = _static_clause(info, rng, initial)
    else:
        clause, prefixed = _moving_clause(info, rng, initial)
    kind, suffixes, prefixes = _timing_phrases(info.start_s, info.end_s, info.duration_s)
    if kind == "throughout" and (info.motion.kind != "static" or rng.random() < 0.5):
        # "Throughout" is the default reading; said only sometimes, and never of a moving
        # source, whose motion already spans the scene ("passes to the right the whole time").
        return clause
    if initial and not prefixed and kind != "throughout" and rng.random() < 0.4:
        return f"{_pick(rng, prefixes)}, {clause}"
    joint = ", " if "," in clause else " "
    return f"{clause}{joint}{_pick(rng, suffixes)}"


def _sentence(text: str) -> str:
    return f"{text[0].upper()}{text[1:]}."


def _overlapping(spans: Sequence[tuple[float, float]]) -> bool:
    """True if every pair of spans shares some time."""
    return max(a for a, _ in spans) < min(b for _, b in spans)


@dataclass(frozen=True)
class TemplateCaptioner:
    """Default captioner: template sentences with varied wording, no model needed.

    phrases: optional label -> noun phrase (e.g. a corpus' class vocabulary); labels not in
        it are turned into words ("dog_bark" -> "a dog", "PoliceSiren" -> "a police siren").
    max_sources: sources described one by one (in the scene's order); the rest are
        counted ("2 more sounds can be heard.").

    Every caption names, for each described source, the coarse region of its start (for a
    static source its dominant direction) and, for a moving one, of its end, in wording that
    :func:`regions_in_caption` parses back; a passing source's path may also name the region
    it passes through. Wording varies by sentence frame, verbs per label family ("barks" /
    "yelps", "wails" / "blares"; "is heard" / "sounds" for unknown labels), location
    synonyms, the order of simultaneous sources and optional timing phrases ("at first",
    "after about 3 seconds", "throughout"). Deterministic given ``rng``; ``rng=None`` uses
    :data:`DEFAULT_SEED`.
    """

    phrases: Mapping[str, str] | None = field(default=None, hash=False)
    max_sources: int = 6

    def __post_init__(self) -> None:
        if self.phrases is not None:
            if not isinstance(self.phrases, Mapping):
                raise InputError("phrases must be a mapping of label -> noun phrase")
            checked = {
                _check_label(k, "phrases key"): _check_label(v, f"phrase for {k!r}")
                for k, v in self.phrases.items()
            }
            object.__setattr__(self, "phrases", checked)
        if (
            isinstance(self.max_sources, bool)
            or not isinstance(self.max_sources, int)
            or self.max_sources < 1
        ):
            raise InputError(f"max_sources must be a positive integer, got {self.max_sources!r}")

    def caption(self, scene: SceneDescription, rng: np.random.Generator | int | None = None) -> str:
        """A caption of ``scene``: one or more sentences naming what, where and when."""
        if not isinstance(scene, SceneDescription):
            raise InputError(f"scene must be a SceneDescription, got {type(scene).__name__}")
        generator = _as_rng(rng)
        infos = [
            _SourceInfo(
                _subject(source.label, self.phrases),
                describe_motion(source.points),
                *scene.active_span(k),
                scene.duration_s,
            )
            for k, source in enumerate(scene.sources)
        ]
        shown, hidden = infos[: self.max_sources], len(infos) - self.max_sources
        spans = [(i.start_s, i.end_s) for i in shown]
        together = len(shown) > 1 and _overlapping(spans)
        if together:
            order = generator.permutation(len(shown))  # simultaneous: any order reads right
            shown = [shown[int(k)] for k in order]
        else:
            shown = sorted(shown, key=lambda i: i.start_s)  # stable: keeps the scene's order
        text = self._join(shown, generator, together)
        if hidden > 0:
            more = "Another sound" if hidden == 1 else f"{hidden} more sounds"
            text += f" {more} can be heard."
        return text

    @staticmethod
    def _join(infos: list[_SourceInfo], rng: np.random.Generator, together: bool) -> str:
        """Clauses joined into sentences: two sources may share a sentence ("... while ...");
        three or more get a sentence each (their clauses carry commas of their own), the
        second one opened by "Meanwhile," when all of them sound at once."""
        if len(infos) == 1:
            return _sentence(_clause(infos[0], rng, initial=True))
        if len(infos) == 2 and rng.random() < 2 / 3:
            first = _clause(infos[0], rng, initial=True)
            second = _clause(infos[1], rng, initial=False)
            if together:
                joint = _pick(rng, (" while ", ", while ", ", and ", ", and meanwhile "))
            else:
                joint = _pick(rng, (", then ", ", and then ", ", and "))
            return _sentence(f"{first}{joint}{second}")
        meanwhile = len(infos) > 2 and together and rng.random() < 0.5
        sentences = []
        for k, info in enumerate(infos):
            if k == 1 and meanwhile:
                sentences.append(_sentence(f"meanwhile, {_clause(info, rng, initial=False)}"))
            else:
                sentences.append(_sentence(_clause(info, rng, initial=True)))
        return " ".join(sentences)


@dataclass(frozen=True)
class CallableCaptioner:
    """Adapter that makes any function ``fn(scene_json: dict) -> str`` a :class:`Captioner`.

    This is the plug-in point for model-based captioners. ``fn`` receives
    ``scene.to_json(include_summary=...)`` -- a fresh dict of plain types (see
    :meth:`SceneDescription.to_json`) -- and returns the caption. For example, with an LLM
    client::

        def llm_caption(scene_json: dict) -> str:
            prompt = "Describe where each sound is and how it moves, in one sentence:\\n"
            return client.complete(prompt + json.dumps(scene_json))

        captioner = CallableCaptioner(llm_caption)
        caption_scene_objects(objects, captioner=captioner)

    An MLLM that also looks at the video or listens to the audio can be wrapped the same way
    by closing over those inputs. The ``rng`` argument of :meth:`caption` is not passed on.
    A result that is not a non-empty string raises :class:`InputError`.
    """

    fn: Callable[[dict[str, Any]], str]
    include_summary: bool = True

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise InputError(f"fn must be callable, got {type(self.fn).__name__}")

    def caption(self, scene: SceneDescription, rng: np.random.Generator | None = None) -> str:
        if not isinstance(scene, SceneDescription):
            raise InputError(f"scene must be a SceneDescription, got {type(scene).__name__}")
        text = self.fn(scene.to_json(include_summary=self.include_summary))
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"captioner function must return a non-empty string, got {text!r}")
        return text.strip()


# --------------------------------------------------------------------------- builders


def _vector3(name: str, value: Any) -> np.ndarray:
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be three numbers (x, y, z), got {value!r}") from None
    if v.shape != (3,):
        raise InputError(f"{name} must be three numbers (x, y, z), got shape {v.shape}")
    require_finite(name, v)
    return v


@dataclass(frozen=True)
class SceneObject:
    """A sounding object as a game engine knows it, in the listener's ambisonic frame.

    label: the sound's name. position: (x, y, z) metres relative to the listener at t = 0
    (x front, y left, z up; convert engine coordinates first, e.g. with
    ``swansphere.foa.engines.unity_position`` / ``unreal_position`` and the listener's
    inverse rotation). velocity: (x, y, z) m/s, constant over the horizon. start_s / end_s:
    when it sounds (defaults: from 0 to the end of the scene).
    """

    label: str
    position: tuple[float, float, float]
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)
    start_s: float = 0.0
    end_s: float | None = None

    def __post_init__(self) -> None:
        label = _check_label(self.label)
        position = _vector3(f"position of {label!r}", self.position)
        velocity = _vector3(f"velocity of {label!r}", self.velocity)
        start = _finite_float(f"start_s of {label!r}", self.start_s)
        if start < 0:
            raise InputError(f"start_s of {label!r} must be >= 0, got {start}")
        end = self.end_s
        if end is not None:
            end = _finite_float(f"end_s of {label!r}", end)
            if end <= start:
                raise InputError(f"end_s of {label!r} ({end}) must be after start_s ({start})")
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "position", tuple(float(x) for x in position))
        object.__setattr__(self, "velocity", tuple(float(x) for x in velocity))
        object.__setattr__(self, "start_s", start)
        object.__setattr__(self, "end_s", end)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "object") -> SceneObject:
        """From {"label", "position", optional "velocity", "start_s", "end_s"}; other keys
        are rejected (a misspelt "velocty" must not silently make a moving object static)."""
        if not isinstance(data, Mapping):
            raise InputError(f"{where} must be a dict or SceneObject, got {type(data).__name__}")
        allowed = {"label", "position", "velocity", "start_s", "end_s"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise InputError(f"{where} has unknown keys {unknown}; accepted: {sorted(allowed)}")
        for key in ("label", "position"):
            if key not in data:
                raise InputError(f"{where} lacks key {key!r}")
        return cls(
            data["label"],
            data["position"],
            data.get("velocity", (0.0, 0.0, 0.0)),
            data.get("start_s", 0.0),
            data.get("end_s"),
        )


def _object_track(obj: SceneObject, duration: float, where: str) -> tuple[TrackPoint, ...]:
    """Keyframes of ``obj`` over its active span, extrapolated linearly from t = 0."""
    start = obj.start_s
    end = duration if obj.end_s is None else min(obj.end_s, duration)
    if start >= duration:
        raise InputError(f"{where} starts at {start} s, at or after the scene's end ({duration} s)")
    velocity = np.asarray(obj.velocity)
    moving = bool(np.any(velocity != 0))
    count = min(MAX_OBJECT_POINTS, max(2, math.ceil((end - start) / OBJECT_STEP_S) + 1))
    times = np.linspace(start, end, count if moving else 2)
    positions = np.asarray(obj.position)[None, :] + times[:, None] * velocity[None, :]  # (n, 3)
    distances = np.linalg.norm(positions, axis=1)
    keep = distances > MIN_OBJECT_DISTANCE_M  # at the listener a point has no direction
    if not np.any(keep):
        raise InputError(
            f"{where} ({obj.label!r}) is at the listener's position the whole time, so it has "
            "no direction"
        )
    azimuth, elevation = vector_to_direction(positions[keep])
    return tuple(
        TrackPoint(float(t), float(a), float(e), float(d))
        for t, a, e, d in zip(times[keep], azimuth, elevation, distances[keep], strict=True)
    )


def scene_from_objects(
    objects: Sequence[Mapping[str, Any] | SceneObject], duration_s: float = DEFAULT_HORIZON_S
) -> SceneDescription:
    """A scene from game-engine objects (dicts or :class:`SceneObject`), over ``duration_s``.

    Each object's track is extrapolated from its position at t = 0 with its constant
    velocity, sampled every OBJECT_STEP_S (at most MAX_OBJECT_POINTS points); points within
    MIN_OBJECT_DISTANCE_M of the listener are left out. Distances are in metres.
    """
    duration = _finite_float("duration_s", duration_s)
    if duration <= 0:
        raise InputError(f"duration_s must be > 0 seconds, got {duration}")
    if isinstance(objects, Mapping | str) or not isinstance(objects, Iterable):
        raise InputError("objects must be a list of dicts or SceneObject")
    items = list(objects)
    if not items:
        raise InputError("objects is empty; a scene needs at least one sounding object")
    sources = []
    for k, item in enumerate(items):
        obj = item if isinstance(item, SceneObject) else SceneObject.from_dict(item, f"object {k}")
        sources.append(SourceDescription(obj.label, _object_track(obj, duration, f"object {k}")))
    return SceneDescription(duration, tuple(sources))


def caption_scene_objects(
    objects: Sequence[Mapping[str, Any] | SceneObject],
    captioner: Captioner | None = None,
    rng: np.random.Generator | None = None,
    duration_s: float = DEFAULT_HORIZON_S,
) -> str:
    """Caption game-engine objects in one call (captioner None: a :class:`TemplateCaptioner`).

    duration_s: the horizon in seconds over which each object's motion is extrapolated.
    """
    chosen = TemplateCaptioner() if captioner is None else captioner
    if not isinstance(chosen, Captioner):
        raise InputError(f"captioner must have a caption(scene, rng) method, got {chosen!r}")
    return chosen.caption(scene_from_objects(objects, duration_s), rng)


def _segments(trajectory: Any, where: str) -> list[Mapping[str, Any]]:
    """Segment dicts of a DoA trajectory given as a list of dicts or an object with to_json()."""
    data = trajectory.to_json() if hasattr(trajectory, "to_json") else trajectory
    if isinstance(data, Mapping | str) or not isinstance(data, Iterable):
        raise InputError(f"{where} must be a list of segment dicts or have to_json()")
    segments = list(data)
    if not segments:
        raise InputError(f"{where} has no segments")
    for k, seg in enumerate(segments):
        if not isinstance(seg, Mapping):
            raise InputError(f"{where} segment {k} must be a dict, got {type(seg).__name__}")
        for key in ("start_s", "end_s", "azimuth_deg", "elevation_deg"):
            if key not in seg:
                raise InputError(f"{where} segment {k} lacks key {key!r}")
    return segments


def _trajectory_points(segments: list[Mapping[str, Any]], where: str) -> list[TrackPoint]:
    """One point at each segment's midpoint, plus the first segment's start and the last
    segment's end (so the active span covers the whole trajectory)."""
    points = []
    previous_end = -math.inf
    for k, seg in enumerate(segments):
        name = f"{where} segment {k}"
        start = _finite_float(f"{name} start_s", seg["start_s"])
        end = _finite_float(f"{name} end_s", seg["end_s"])
        if end < start or start < previous_end - 1e-9:
            raise InputError(
                f"{name} spans {start}..{end} s; segments must be in time order with end >= start"
            )
        previous_end = end
        az = math.radians(_finite_float(f"{name} azimuth_deg", seg["azimuth_deg"]))
        el = math.radians(_finite_float(f"{name} elevation_deg", seg["elevation_deg"]))
        distance, diffuseness = seg.get("distance"), seg.get("diffuseness")
        times = [(start + end) / 2]
        if k == 0:
            times.insert(0, start)
        if k == len(segments) - 1:
            times.append(end)
        points.extend(TrackPoint(t, az, el, distance, diffuseness) for t in times)
    return points


def scene_from_trajectories(
    labels: Sequence[str], trajectories: Sequence[Any], duration_s: float | None = None
) -> SceneDescription:
    """A scene from one DoA trajectory per label.

    trajectories: segment lists as written by ``swansphere.foa.doa.Trajectory.to_json()``
    (dicts with start_s, end_s, azimuth_deg, elevation_deg and optional distance and
    diffuseness), or objects with such a ``to_json()``. Each segment becomes a point at its
    midpoint; the first and last segments also give points at their outer edges.
    duration_s: the scene length; None takes the latest segment end.
    """
    if isinstance(labels, str):
        raise InputError("labels must be a list of strings, one per trajectory, not one string")
    labels, trajectories = list(labels), list(trajectories)
    if len(labels) != len(trajectories):
        raise InputError(
            f"got {len(labels)} labels for {len(trajectories)} trajectories; "
            "give one label per trajectory"
        )
    if not labels:
        raise InputError("no trajectories given; a scene needs at least one source")
    sources, latest = [], 0.0
    for k, (label, trajectory) in enumerate(zip(labels, trajectories, strict=True)):
        where = f"trajectory {k} ({label!r})"
        points = _trajectory_points(_segments(trajectory, where), where)
        latest = max(latest, points[-1].t_s)
        sources.append(SourceDescription(label, tuple(points)))
    return SceneDescription(latest if duration_s is None else duration_s, tuple(sources))


def scene_from_clip_metadata(meta: Mapping[str, Any]) -> SceneDescription:
    """A scene from a corpus clip.json with ground-truth tracks (``sources[*].trajectory``).

    Each source's label is its "class"; its keyframes (t, azimuth_deg, elevation_deg,
    distance_m) become track points. Distractors are silent and left out. A real clip
    without ground truth has no sources: use :func:`scene_from_trajectories` on its DoA.
    """
    if not isinstance(meta, Mapping):
        raise InputError(f"clip metadata must be a dict, got {type(meta).__name__}")
    entries = meta.get("sources") or []
    if not entries:
        raise InputError(
            f"clip {meta.get('id', '?')!r} has no ground-truth sources; caption it from its "
            "DoA trajectory with scene_from_trajectories"
        )
    if "duration_s" not in meta:
        raise InputError("clip metadata lacks key 'duration_s'")
    sources = []
    for k, entry in enumerate(entries):
        where = f"clip source {k}"
        if not isinstance(entry, Mapping) or "class" not in entry or "trajectory" not in entry:
            raise InputError(f"{where} must be a dict with 'class' and 'trajectory'")
        track = entry["trajectory"]
        keys = ("t", "azimuth_deg", "elevation_deg")
        if not isinstance(track, Mapping) or any(key not in track for key in keys):
            raise InputError(f"{where} trajectory needs keys {keys}")
        columns = [list(track[key]) for key in keys]
        distances = list(track.get("distance_m") or [None] * len(columns[0]))
        if len({len(c) for c in (*columns, distances)}) != 1:
            raise InputError(f"{where} trajectory columns differ in length")
        points = tuple(
            TrackPoint(
                t,
                math.radians(_finite_float(f"{where} azimuth_deg", a)),
                math.radians(_finite_float(f"{where} elevation_deg", e)),
                d,
            )
            for t, a, e, d in zip(*columns, distances, strict=True)
        )
        sources.append(SourceDescription(entry["class"], points))
    return SceneDescription(meta["duration_s"], tuple(sources))
