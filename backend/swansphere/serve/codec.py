"""The one place protobuf meets the domain: ``decode_*`` wire -> plain values, ``encode_*``
plain values -> wire. Servicers decode, call :mod:`swansphere.serve.live`, encode.

Decoders raise :class:`swansphere.serve.types.ServeError` (a gRPC status name in
``code``) or :class:`swansphere.errors.InputError` (INVALID_ARGUMENT) naming the field.
"""

from __future__ import annotations

import math

import numpy as np

from swansphere.captions import SceneObject
from swansphere.errors import InputError
from swansphere.foa.formats import OUTPUT_FORMATS
from swansphere.serve._generated import swansphere_pb2 as pb
from swansphere.serve.render import encode_pcm
from swansphere.serve.types import (
    OUTPUT_SAMPLE_RATES,
    AudioBlock,
    CameraView,
    EncodedImage,
    FrameUpdate,
    Notice,
    OutputSpec,
    SessionSpec,
)

FORMAT_TO_NAME = {
    pb.OUTPUT_FORMAT_UNSPECIFIED: "binaural",
    pb.OUTPUT_FORMAT_FOA: "foa",
    pb.OUTPUT_FORMAT_BINAURAL: "binaural",
    pb.OUTPUT_FORMAT_STEREO: "stereo",
    pb.OUTPUT_FORMAT_SURROUND_5_1: "5.1",
    pb.OUTPUT_FORMAT_SURROUND_7_1_4: "7.1.4",
}
NAME_TO_FORMAT = {name: value for value, name in FORMAT_TO_NAME.items() if value}
SAMPLE_FORMAT_TO_NAME = {
    pb.SAMPLE_FORMAT_UNSPECIFIED: "float32",
    pb.SAMPLE_FORMAT_FLOAT32: "float32",
    pb.SAMPLE_FORMAT_INT16: "int16",
}
NAME_TO_SAMPLE_FORMAT = {"float32": pb.SAMPLE_FORMAT_FLOAT32, "int16": pb.SAMPLE_FORMAT_INT16}
LEVELS = {
    "info": pb.Event.LEVEL_INFO,
    "warning": pb.Event.LEVEL_WARNING,
    "error": pb.Event.LEVEL_ERROR,
}
MAX_CAPTION_CHARS = 10_000
MAX_OBJECTS = 64
assert set(NAME_TO_FORMAT) == set(OUTPUT_FORMATS)


def decode_quaternion(q: pb.Quaternion, what: str) -> np.ndarray:
    """(w, x, y, z) float64; NaN/Inf or zero norm raise InputError naming ``what``."""
    v = np.array([q.w, q.x, q.y, q.z], dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise InputError(f"{what} quaternion has NaN/Inf components: {v.tolist()}")
    if np.linalg.norm(v) < 1e-6:
        raise InputError(f"{what} quaternion has (near) zero norm: {v.tolist()}")
    return v


def _vector(v: pb.Vector3, what: str) -> tuple[float, float, float]:
    t = (float(v.x), float(v.y), float(v.z))
    if not all(math.isfinite(x) for x in t):
        raise InputError(f"{what} has NaN/Inf components: {list(t)}")
    return t


def _enum(value: int, table: dict, what: str) -> str:
    if value not in table:
        raise InputError(f"unknown {what} {value}")
    return table[value]


def decode_output_spec(c: pb.SessionConfig, hrtfs: dict[str, str] | None = None) -> OutputSpec:
    """Output part of a config. ``hrtfs``: names the server offers -> SOFA paths."""
    from swansphere.serve.types import ModelNotFoundError

    rate = c.sample_rate or 48000
    if rate not in OUTPUT_SAMPLE_RATES:
        raise InputError(f"sample_rate must be 44100 or 48000 Hz, got {rate}")
    chunk = c.chunk_samples or 1024
    if not 32 <= chunk <= 4096:
        raise InputError(f"chunk_samples must be 32..4096, got {chunk}")
    hrtf = None
    if c.hrtf and c.hrtf != "default":
        if c.hrtf not in (hrtfs or {}):
            offered = ", ".join(["default", *sorted(hrtfs or {})])
            raise ModelNotFoundError(f"unknown HRTF {c.hrtf!r}; this server offers: {offered}")
        hrtf = hrtfs[c.hrtf]
    return OutputSpec(
        format=_enum(c.format, FORMAT_TO_NAME, "output format"),
        sample_rate=rate,
        sample_format=_enum(c.sample_format, SAMPLE_FORMAT_TO_NAME, "sample format"),
        chunk_samples=chunk,
        hrtf=hrtf,
    )


def decode_session_config(c: pb.SessionConfig, hrtfs: dict[str, str] | None = None) -> SessionSpec:
    """SessionConfig -> SessionSpec (ranges of steps/guidance/duration are checked by the
    generator's own SessionConfig when the session is built)."""
    if len(c.caption) > MAX_CAPTION_CHARS:
        raise InputError(
            f"caption is {len(c.caption)} characters; the limit is {MAX_CAPTION_CHARS}"
        )
    lead_ms = c.lead_ms or 100.0
    if not (math.isfinite(lead_ms) and 0 <= lead_ms <= 5000):
        raise InputError(f"lead_ms must be in [0, 5000], got {c.lead_ms}")
    if c.pacing not in (pb.PACING_UNSPECIFIED, pb.PACING_REALTIME, pb.PACING_AS_FAST_AS_POSSIBLE):
        raise InputError(f"unknown pacing {c.pacing}")
    return SessionSpec(
        model=c.model,
        seed=int(c.seed) if c.HasField("seed") else 0,
        steps=int(c.steps) if c.HasField("steps") else None,
        guidance_text=float(c.guidance_text) if c.HasField("guidance_text") else None,
        guidance_video=float(c.guidance_video) if c.HasField("guidance_video") else None,
        duration_s=float(c.duration_s) if c.HasField("duration_s") else None,
        caption=c.caption or None,
        head=decode_quaternion(c.head, "head") if c.HasField("head") else None,
        realtime=c.pacing != pb.PACING_AS_FAST_AS_POSSIBLE,
        lead_s=lead_ms / 1e3,
        output=decode_output_spec(c, hrtfs),
    )


def decode_image(image: pb.Image) -> EncodedImage:
    kind = image.WhichOneof("data")
    if kind is None:
        raise InputError("camera image is empty: set jpeg, png or raw")
    if kind == "raw":
        return EncodedImage("raw", image.raw.rgb, image.raw.width, image.raw.height)
    return EncodedImage(kind, getattr(image, kind))


def decode_frame(f: pb.Frame) -> FrameUpdate:
    """Frame -> FrameUpdate. Structural problems raise InputError naming the field; image
    contents are checked by the session (header probe)."""
    image = view = caption = objects = head = None
    horizon = 5.0
    if f.HasField("camera"):
        if not f.camera.HasField("image"):
            raise InputError("camera frame has no image")
        image = decode_image(f.camera.image)
        if f.camera.WhichOneof("projection") == "view":
            v = f.camera.view
            if not v.HasField("orientation"):
                raise InputError("field-of-view frame needs the camera orientation")
            view = CameraView(decode_quaternion(v.orientation, "camera"), float(v.hfov_deg))
    if f.HasField("caption"):
        if len(f.caption.text) > MAX_CAPTION_CHARS:
            raise InputError(
                f"caption is {len(f.caption.text)} characters; the limit is {MAX_CAPTION_CHARS}"
            )
        caption = f.caption.text
    if f.HasField("scene"):
        if len(f.scene.objects) > MAX_OBJECTS:
            raise InputError(f"at most {MAX_OBJECTS} scene objects, got {len(f.scene.objects)}")
        horizon = f.scene.horizon_s or 5.0
        if not (math.isfinite(horizon) and 0 < horizon <= 600):
            raise InputError(f"horizon_s must be in (0, 600] seconds, got {f.scene.horizon_s}")
        objects = tuple(
            SceneObject(
                o.label,
                _vector(o.position, f"position of object {k}"),
                _vector(o.velocity, f"velocity of object {k}"),
            )
            for k, o in enumerate(f.scene.objects)
        )
    if f.HasField("head"):
        head = decode_quaternion(f.head, "head")
    return FrameUpdate(
        sequence=int(f.sequence),
        capture_time_s=float(f.capture_time_s),
        image=image,
        view=view,
        caption=caption,
        objects=objects,
        horizon_s=float(horizon),
        head=head,
    )


def encode_started(session_id: str, model: str, live) -> pb.ServerMessage:
    o = live.spec.output
    return pb.ServerMessage(
        started=pb.SessionStarted(
            session_id=session_id,
            model=model,
            sample_rate=o.sample_rate,
            channels=live.channels,
            layout=list(live.layout),
            format=NAME_TO_FORMAT[o.format],
            sample_format=NAME_TO_SAMPLE_FORMAT[o.sample_format],
            chunk_samples=o.chunk_samples,
            model_sample_rate=live.gen.sample_rate,
            patch_samples=live.gen.patch_samples,
        )
    )


def encode_audio(block: AudioBlock, spec: OutputSpec, layout: tuple[str, ...]) -> pb.AudioChunk:
    channels, frames = block.pcm.shape
    return pb.AudioChunk(
        sequence=block.sequence,
        sample_offset=block.sample_offset,
        sample_rate=spec.sample_rate,
        channels=channels,
        layout=list(layout),
        format=NAME_TO_FORMAT[spec.format],
        sample_format=NAME_TO_SAMPLE_FORMAT[spec.sample_format],
        frames=frames,
        pcm=encode_pcm(block.pcm, spec.sample_format),
    )


def encode_stats(stats: dict) -> pb.Stats:
    fields = {f.name for f in pb.Stats.DESCRIPTOR.fields}
    return pb.Stats(**{k: v for k, v in stats.items() if k in fields})


def encode_event(notice: Notice) -> pb.Event:
    event = pb.Event(level=LEVELS[notice.level], code=notice.code, message=notice.message)
    if notice.sequence is not None:
        event.sequence = notice.sequence
    if notice.stats is not None:
        event.stats.CopyFrom(encode_stats(notice.stats))
    return event


def encode_notice(notice: Notice) -> pb.ServerMessage:
    return pb.ServerMessage(event=encode_event(notice))


def encode_block(block: AudioBlock, spec: OutputSpec, layout: tuple[str, ...]) -> pb.ServerMessage:
    return pb.ServerMessage(audio=encode_audio(block, spec, layout))
