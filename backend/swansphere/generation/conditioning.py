"""What a game engine has, turned into what the generator is conditioned on.

- An equirectangular panorama, or a field-of-view frame plus the camera's orientation
  and field of view, which :func:`view_to_panorama` projects into the panorama canvas so
  that each pixel lands at the direction it shows (DESIGN.md section 3 axes and
  :mod:`swansphere.foa.panorama` image convention).
- Video tokens of one frame (:func:`frame_cues`): SVAC VideoMAE patch tokens of the
  frame alone (repeated over the encoder's window), so a frame's tokens never depend on
  later frames and streaming equals offline.
- Where the sound is likely to be (:class:`SaliencyWindow`): SVAC's spatial-code saliency
  of each patch's frame, which looks at what departs from the recent frames (what pulses
  or moves). SVAC measured departures from the clip's mean; a stream has no clip, so the
  mean here runs over the frames of the last ``window`` patches, the patch's own included.
  Offline generation, streaming and the training features all push the same per-patch
  frames through the same window, so they agree.
- Caption tokens: the text encoder's last hidden states (:meth:`CaptionEncoder.encode_tokens`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from swansphere.errors import InputError, require_finite
from swansphere.foa.panorama import pixel_directions
from swansphere.foa.rotation import normalize_quaternion, quat_to_matrix

MAX_FRAME_PIXELS = 8192 * 4096  # larger frames are refused (an 8K panorama is the limit)


def check_rgb_frame(frame: np.ndarray, what: str = "frame") -> np.ndarray:
    """A frame as a C-contiguous uint8 array (H, W, 3), RGB.

    Accepts uint8, or float in [0, 1]; (H, W) greyscale is expanded to RGB. Anything else
    (RGBA, BGR cannot be told apart: callers convert), wrong rank, empty or oversize frames
    raise :class:`InputError` naming the shape or dtype.
    """
    f = np.asarray(frame)
    if f.ndim == 2:
        f = np.repeat(f[..., None], 3, axis=-1)
    if f.ndim != 3 or f.shape[-1] != 3:
        raise InputError(f"{what} must be an RGB image (H, W, 3), got shape {f.shape}")
    if f.shape[0] < 2 or f.shape[1] < 2:
        raise InputError(f"{what} is too small: {f.shape[1]}x{f.shape[0]} pixels")
    if f.shape[0] * f.shape[1] > MAX_FRAME_PIXELS:
        raise InputError(f"{what} is too large: {f.shape[1]}x{f.shape[0]} pixels (limit 8192x4096)")
    if f.dtype == np.uint8:
        return np.ascontiguousarray(f)
    if np.issubdtype(f.dtype, np.floating):
        require_finite(what, f)
        if f.min() < 0 or f.max() > 1:
            raise InputError(
                f"float {what} must hold values in [0, 1], got [{f.min():.3g}, {f.max():.3g}]"
            )
        return np.ascontiguousarray(np.round(f * 255).astype(np.uint8))
    raise InputError(f"{what} must be uint8 or float in [0, 1], got dtype {f.dtype}")


def panorama_canvas(frame: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """An equirectangular RGB frame (H, W, 3) (see :func:`check_rgb_frame`) as the uint8
    tensor (3, h, w) of the canvas ``size`` = (h, w) that the video encoder takes: resized
    (bilinear, antialiased) in PyTorch's uint8 kernel, whose fixed-point result is within 1
    of the float resize rounded (on 7 % of a noise frame's pixels) and which takes 2.7 ms
    instead of 131 ms for a 4096 x 2048 panorama on one CPU thread. The generator's and
    the direction cue's training data go through it too (as :func:`panorama_canvases`), so
    they see what serving sees (the shipped bundle's were made with the float resize; its
    cue scores the same on either, to 0.01 degrees)."""
    return panorama_canvases([frame], size)[0]


def panorama_canvases(
    frames: Sequence[np.ndarray] | np.ndarray, size: tuple[int, int]
) -> torch.Tensor:
    """Equirectangular frames of one size (each as :func:`check_rgb_frame` takes it) as
    canvases (N, 3, h, w): :func:`panorama_canvas` of each, in one resize (a frame's result
    does not depend on the others)."""
    checked = [check_rgb_frame(f, "panorama") for f in frames]
    if not checked or any(f.shape != checked[0].shape for f in checked):
        shapes = sorted({f.shape for f in checked})
        raise InputError(f"panoramas must be one or more frames of one size, got {shapes}")
    video = torch.from_numpy(np.stack(checked)).permute(0, 3, 1, 2)
    if tuple(video.shape[2:]) == tuple(size):
        return video
    return torch.nn.functional.interpolate(
        video, size=tuple(size), mode="bilinear", align_corners=False, antialias=True
    )


def view_to_panorama(
    frame: np.ndarray,
    orientation: np.ndarray,
    hfov_deg: float,
    width: int,
    height: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Project a pinhole camera frame into an equirectangular canvas.

    frame: (h, w, 3) uint8 RGB, row 0 at the top, column 0 at the left of the picture.
    orientation: the camera's unit quaternion (w, x, y, z) in the ambisonic frame (x front,
    y left, z up); identity looks along +x with z up. hfov_deg: horizontal field of view
    in degrees (0, 180); the vertical one follows from the aspect ratio (square pixels).
    Returns (canvas (height, width, 3) uint8, seen (height, width) bool): canvas pixels
    outside the view are black and ``seen`` False. Nearest-neighbour sampling.
    """
    frame = check_rgb_frame(frame, "field-of-view frame")
    q = np.asarray(orientation, dtype=np.float64)
    if q.shape != (4,):
        raise InputError(
            f"camera orientation must be a quaternion (w, x, y, z), got shape {q.shape}"
        )
    require_finite("camera orientation", q)
    rot = quat_to_matrix(normalize_quaternion(q))
    if not (isinstance(hfov_deg, (int, float)) and math.isfinite(hfov_deg) and 0 < hfov_deg < 180):
        raise InputError(f"horizontal field of view must be in (0, 180) degrees, got {hfov_deg!r}")
    h, w = frame.shape[:2]
    tan_h = math.tan(math.radians(hfov_deg) / 2)
    tan_v = tan_h * h / w
    dirs = pixel_directions(width, height) @ rot  # world -> camera: R^T d for each row d
    fwd, left, up = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = -left / fwd / tan_h  # -1 at the left edge of the picture, +1 at the right
        y = -up / fwd / tan_v  # -1 at the top, +1 at the bottom
    seen = (fwd > 1e-6) & (np.abs(x) <= 1) & (np.abs(y) <= 1)
    cols = np.clip(((x + 1) / 2 * w).astype(np.int64), 0, w - 1)
    rows = np.clip(((y + 1) / 2 * h).astype(np.int64), 0, h - 1)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    canvas[seen] = frame[rows[seen], cols[seen]]
    return canvas, seen


@dataclass(frozen=True)
class FrameCues:
    """What the generator takes of N single frames: SVAC's VideoMAE ``tokens`` (N, G,
    video_dim) and its spatial code's own ``patch_embeddings`` (N, G, video_dim) of the
    same pixels, or None when they are not needed (a generator without saliency input);
    the ``canvases`` themselves (N, 3, h, w) uint8 when the video direction cue reads
    them (:mod:`swansphere.models.direction`), else None."""

    tokens: torch.Tensor
    patch_embeddings: torch.Tensor | None = None
    canvases: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, index: slice | torch.Tensor) -> FrameCues:
        local, canvases = self.patch_embeddings, self.canvases
        return FrameCues(
            self.tokens[index],
            None if local is None else local[index],
            None if canvases is None else canvases[index],
        )

    @staticmethod
    def cat(parts: list[FrameCues]) -> FrameCues:
        """The cues of several batches of frames, in order."""

        def joined(name: str) -> torch.Tensor | None:
            have = [getattr(p, name) for p in parts if getattr(p, name) is not None]
            return torch.cat(have) if have and len(have) == len(parts) else None

        tokens = torch.cat([p.tokens for p in parts])
        return FrameCues(tokens, joined("patch_embeddings"), joined("canvases"))


@torch.inference_mode()
def frame_cues(svac, frames: torch.Tensor, patch_embeddings: bool = False) -> FrameCues:
    """:class:`FrameCues` of N single equirectangular frames (N, 3, H, W) (uint8 RGB or
    float in [0, 1]): each frame is encoded alone, repeated over the VideoMAE window, so its
    tokens depend on nothing else; with ``patch_embeddings`` also the spatial code's
    embeddings (its tubelet of the one frame)."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise InputError(f"frames must be a tensor (N, 3, H, W), got {tuple(frames.shape)}")
    encoder = svac.video_encoder
    pixels = encoder.pixels(frames[:, None].expand(-1, encoder.window, -1, -1, -1))
    tokens = encoder.encode(pixels)[:, 0].float()
    if not patch_embeddings:
        return FrameCues(tokens)
    if svac.spatial is None:
        raise InputError("this SVAC has no spatial code, so it gives no saliency")
    local = svac.spatial.pixel_tokens(pixels[:, : svac.spatial.tubelet])[:, 0].float()
    return FrameCues(tokens, local)


class SaliencyWindow:
    """SVAC saliency (1, G) of each patch's frame, in patch order (see the module docstring).

    :meth:`push` takes the cues (N = 1) of the frame conditioning the next patch and returns
    its saliency against the mean of the last ``window`` pushed frames, its own included
    (the first patch's frame departs from nothing: its saliency is its look alone).
    """

    def __init__(self, svac, window: int) -> None:
        if window < 1:
            raise InputError(f"the saliency window must be at least one patch, got {window}")
        if svac.spatial is None:
            raise InputError("this SVAC has no spatial code, so it gives no saliency")
        self.spatial = svac.spatial
        self.recent: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=window)

    @torch.inference_mode()
    def push(self, cues: FrameCues) -> torch.Tensor:
        if cues.patch_embeddings is None or len(cues) != 1:
            raise InputError("the saliency window takes one frame's cues with patch embeddings")
        self.recent.append((cues.tokens, cues.patch_embeddings))
        tokens_mean = torch.cat([t for t, _ in self.recent]).mean(dim=0)
        local_mean = torch.cat([x for _, x in self.recent]).mean(dim=0)
        return self.spatial.saliency_against(
            cues.tokens, cues.patch_embeddings, tokens_mean, local_mean
        )

    def state(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """What :meth:`restore` needs to undo later pushes."""
        return list(self.recent)

    def restore(self, state: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.recent.clear()
        self.recent.extend(state)


def patch_saliency(svac, cues: FrameCues, window: int) -> torch.Tensor:
    """Saliency (P, G) of P patches whose frames' cues are ``cues`` (P of them, patch order,
    a frame repeated for every patch it conditions), as a stream computes it."""
    tracker = SaliencyWindow(svac, window)
    return torch.cat([tracker.push(cues[i : i + 1]) for i in range(len(cues))])


def patch_frame_index(n_patches: int, patch_seconds: float, frame_times: np.ndarray) -> np.ndarray:
    """Index of the frame that conditions each patch: the newest frame captured no later
    than the patch's midpoint (the first frame for patches before it). frame_times: sorted
    capture times in seconds."""
    times = np.asarray(frame_times, dtype=np.float64)
    if times.size == 0:
        raise InputError("no video frames to align")
    mids = (np.arange(n_patches) + 0.5) * patch_seconds
    return np.clip(np.searchsorted(times, mids, side="right") - 1, 0, times.size - 1)


def video_end_s(frame_times: Sequence[float], single_frame_s: float) -> float | None:
    """Where a video ends, in the frames' own time base (seconds): one frame interval, the
    median of the intervals between ``frame_times`` (sorted capture times), after the last
    frame; ``single_frame_s`` after it for a single frame; None without frames."""
    times = np.asarray(frame_times, dtype=np.float64)
    if times.size == 0:
        return None
    step = float(np.median(np.diff(times))) if times.size > 1 else float(single_frame_s)
    return float(times[-1]) + step


__all__ = [
    "FrameCues",
    "SaliencyWindow",
    "check_rgb_frame",
    "frame_cues",
    "panorama_canvas",
    "panorama_canvases",
    "patch_frame_index",
    "patch_saliency",
    "video_end_s",
    "view_to_panorama",
]
