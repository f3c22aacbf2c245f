"""Plain domain values the server edges (gRPC, OSC) convert their messages into.

Nothing here knows about protobuf or OSC. Orientations are unit quaternions (w, x, y, z)
in the x-front, y-left, z-up frame; times in seconds; rates in Hz.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from swansphere.errors import InputError

OK = "OK"
INVALID_ARGUMENT = "INVALID_ARGUMENT"
FAILED_PRECONDITION = "FAILED_PRECONDITION"
NOT_FOUND = "NOT_FOUND"
RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
INTERNAL = "INTERNAL"

OUTPUT_SAMPLE_RATES = (44100, 48000)
SAMPLE_FORMATS = ("float32", "int16")


class ServeError(InputError):
    """Bad request with the status a client should see (a gRPC status name in ``code``)."""

    code = INVALID_ARGUMENT

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ModelNotFoundError(ServeError):
    code = NOT_FOUND


class PreconditionError(ServeError):
    code = FAILED_PRECONDITION


class CapacityError(ServeError):
    code = RESOURCE_EXHAUSTED


def status_of(exc: BaseException) -> str:
    """gRPC status name for a domain exception: its ``code``, INVALID_ARGUMENT for other
    :class:`InputError`, INTERNAL for anything else."""
    if isinstance(exc, ServeError):
        return exc.code
    if isinstance(exc, InputError):
        return INVALID_ARGUMENT
    return INTERNAL


@dataclass(frozen=True)
class OutputSpec:
    """What the listener's side wants: format (foa|binaural|stereo|5.1|7.1.4), rate in Hz,
    sample format (float32|int16), samples per channel per chunk, HRTF SOFA path or None."""

    format: str = "binaural"
    sample_rate: int = 48000
    sample_format: str = "float32"
    chunk_samples: int = 1024
    hrtf: str | None = None


@dataclass(frozen=True)
class SessionSpec:
    """Generation and pacing settings of one session.

    model: registry name ("" = the server default). realtime: chunks leave at playback
    pace, ``lead_s`` ahead of the playback clock; otherwise as fast as they are made.
    head: initial head quaternion (w, x, y, z). duration_s: stop after this much audio.
    """

    model: str = ""
    seed: int = 0
    steps: int | None = None
    guidance_text: float | None = None
    guidance_video: float | None = None
    duration_s: float | None = None
    caption: str | None = None
    head: np.ndarray | None = None
    realtime: bool = True
    lead_s: float = 0.1
    output: OutputSpec = field(default_factory=OutputSpec)


@dataclass(frozen=True)
class EncodedImage:
    """A camera image as it arrived: kind "jpeg" | "png" | "raw" (RGB8 rows, top first).

    width/height are known for raw images; for JPEG/PNG they come from the header probe.
    """

    kind: str
    data: bytes
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class CameraView:
    """A field-of-view projection: camera orientation quaternion and horizontal FOV (deg)."""

    orientation: np.ndarray
    hfov_deg: float


@dataclass(frozen=True)
class FrameUpdate:
    """One client frame. Any of image/caption/objects/head may be None (not sent).

    view None means the image is equirectangular. caption "" clears the caption.
    objects: a list of :class:`swansphere.captions.SceneObject` to caption (``horizon_s``).
    """

    sequence: int
    capture_time_s: float
    image: EncodedImage | None = None
    view: CameraView | None = None
    caption: str | None = None
    objects: tuple | None = None
    horizon_s: float = 5.0
    head: np.ndarray | None = None


@dataclass(frozen=True)
class Notice:
    """A warning/error/info for the client: level "info"|"warning"|"error", a gRPC status
    name, the message, the frame sequence concerned (if any), optional stats."""

    level: str
    code: str
    message: str
    sequence: int | None = None
    stats: dict | None = None


@dataclass(frozen=True)
class AudioBlock:
    """Rendered output: ``pcm`` (channels, frames) float32 in [-1, 1] nominal."""

    sequence: int
    sample_offset: int
    pcm: np.ndarray
