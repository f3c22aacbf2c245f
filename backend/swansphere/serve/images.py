"""Camera images: a cheap header probe at ingest, the full decode only for frames used.

Engines send 30-120 frames/s but the model uses one frame per patch (5.4/s for tiny), so
ingest only checks an image (format, size) and keeps the newest; the generation thread
decodes the one it uses. JPEGs decode with DCT scaling (``draft``) straight to about the
model's resolution, which is much cheaper than a full-size decode.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from swansphere.errors import InputError
from swansphere.serve.types import EncodedImage

MAX_PIXELS = 8192 * 4096
MIN_SIDE = 2


def _check_size(width: int, height: int, what: str) -> None:
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InputError(f"{what} is too small: {width}x{height} pixels")
    if width * height > MAX_PIXELS:
        raise InputError(f"{what} is too large: {width}x{height} pixels (limit 8192x4096)")


def probe_image(image: EncodedImage, equirect: bool) -> EncodedImage:
    """Check an image's header (and a raw image's byte count); returns it with its size.

    Raises :class:`InputError` naming the problem: unreadable bytes, a format other than
    the one declared, a size outside 2x2..8192x4096, or an equirectangular image whose
    width is not twice its height (a panorama spans 360 x 180 degrees).
    """
    what = f"{image.kind} image"
    if image.kind == "raw":
        w, h = image.width, image.height
        _check_size(w, h, what)
        if len(image.data) != w * h * 3:
            raise InputError(
                f"raw RGB image of {w}x{h} needs {w * h * 3} bytes, got {len(image.data)}"
            )
    elif image.kind in ("jpeg", "png"):
        from PIL import Image, UnidentifiedImageError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img = Image.open(io.BytesIO(image.data))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InputError(f"{what} is not a readable image ({len(image.data)} bytes)") from exc
        expected = {"jpeg": "JPEG", "png": "PNG"}[image.kind]
        if img.format != expected:
            raise InputError(f"{what} holds {img.format} data, not {expected}")
        w, h = img.size
        _check_size(w, h, what)
    else:
        raise InputError(f"unknown image kind {image.kind!r}; use jpeg, png or raw")
    if equirect and w != 2 * h:
        raise InputError(f"an equirectangular image must be twice as wide as high, got {w}x{h}")
    return EncodedImage(image.kind, image.data, w, h)


def decode_image(image: EncodedImage, max_width: int | None = None) -> np.ndarray:
    """Decode to (H, W, 3) uint8 RGB. JPEGs are DCT-scaled down to no less than
    ``max_width`` wide when that is much smaller than the image (1/2, 1/4 or 1/8)."""
    if image.kind == "raw":
        rgb = np.frombuffer(image.data, dtype=np.uint8).reshape(image.height, image.width, 3)
        return rgb.copy()  # writable, as torch.from_numpy wants
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(image.data))
            if max_width and image.kind == "jpeg" and img.size[0] > max_width:
                scale = img.size[0] / max_width
                img.draft("RGB", (int(img.size[0] / scale), int(img.size[1] / scale)))
            rgb = np.array(img.convert("RGB"))  # writable, as torch.from_numpy wants
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{image.kind} image could not be decoded: {exc}") from exc
    return rgb
