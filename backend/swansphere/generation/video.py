"""Reading video files (PyAV, which bundles FFmpeg) into RGB frames for conditioning."""

from __future__ import annotations

import os

import av
import numpy as np

from swansphere.errors import InputError


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a video file into (frames (n, H, W, 3) uint8 RGB, fps).

    Raises InputError naming the path and the reason when the file is missing, not a
    video, corrupt or empty.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"cannot read video {path}: no such file")
    try:
        with av.open(path, mode="r") as container:
            if not container.streams.video:
                raise InputError(f"cannot read video {path}: it has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except InputError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"cannot read video {path}: {exc}") from exc
    if not frames:
        raise InputError(f"cannot read video {path}: it holds no decodable frames")
    if rate is None or float(rate) <= 0:
        raise InputError(f"cannot read video {path}: its frame rate is unknown")
    return np.stack(frames), float(rate)


__all__ = ["read_video"]
