"""SVAC evaluation on held-out clips (first window of each clip).

* ``r_at_1``: video-to-audio retrieval: for each clip's video, is its own audio the most
  similar among ``candidates`` clips (itself and the next ones)? Aligned similarity =
  mean over time of the frame-wise dot product (the cosine for unit frames).
* ``rotation_top1``: is the true FOA more similar to the video than its 7 yaw rotations
  by 45, 90, ..., 315 degrees?
* ``shift_top1``: is the true alignment more similar than the 7 circular time shifts by
  1/8, ..., 7/8 of the window?

The result also holds ``similarity``, the (N, N) video x audio matrix, for plots; with a
spatial code or an activity map, the rotation and shift scores of each part of the
embedding alone (content, spatial, activity); with a spatial code, saliency maps of a few
clips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from swansphere.foa.rotation import foa_rotation_matrix, ypr_to_matrix
from swansphere.models.svac import SVAC

from ..data.dataset import ClipDataset, TorchClipDataset
from ..losses.svac import aligned_similarity


def svac_window(config) -> tuple[int, int]:
    """(audio samples, video frames) of one SVAC window: 4 s at 4 fps, whole latent frames."""
    samples = int(4.0 * config.sample_rate) // config.latent_hop * config.latent_hop
    return samples, 16


@torch.no_grad()
def embed_clips(model: SVAC, root: Path, split: str | None, max_clips: int):
    """Video and audio embeddings (N, Ta, E) plus the raw FOA windows (N, 4, T)."""
    config = model.config
    samples, frames = svac_window(config)
    clips = ClipDataset(root, split=split, require_video=True)
    data = TorchClipDataset(
        clips,
        num_samples=samples,
        sample_rate=config.sample_rate,
        num_frames=frames,
        frame_size=(config.video_width, config.video_height),
    )
    n = min(len(data), max_clips)
    if n < 2:
        raise ValueError(f"need at least 2 clips with video under {root}/{split or ''}")
    items = [data[i] for i in range(n)]
    foa = torch.stack([it["foa"] for it in items])
    video = torch.stack([it["video"] for it in items])
    video_emb, audio_emb = [], []
    for i in range(0, n, 16):
        v, a = model(video[i : i + 16], foa[i : i + 16])
        video_emb.append(v)
        audio_emb.append(a)
    return torch.cat(video_emb), torch.cat(audio_emb), foa, video


def _top1(video: torch.Tensor, candidates: torch.Tensor, part: slice) -> bool:
    """Whether candidate 0 of (K, T, E) is the most similar to video (T, E) over ``part``."""
    return int(torch.argmax(aligned_similarity(video[None, :, part], candidates[..., part]))) == 0


@torch.no_grad()
def evaluate_svac(
    model: SVAC, root: Path, split: str | None = "test", max_clips: int = 128, candidates: int = 64
) -> dict:
    """The metrics of the module docstring. With a spatial code or an activity map,
    ``parts`` also holds rotation_top1 and shift_top1 measured on each part's dimensions
    alone (``rotation_top1_content``, ``..._spatial``, ``..._activity``); with a spatial
    code, ``saliency`` the first frames (k, H, W, 3) uint8 of up to 4 clips with the video
    saliency (k, rows, cols) of their first step, for plots."""
    model.eval()
    video_emb, audio_emb, foa, video = embed_clips(model, root, split, max_clips)
    n = video_emb.shape[0]
    k = min(candidates, n)
    sim = aligned_similarity(video_emb[:, None], audio_emb[None, :])  # (N, N)
    hits = []
    for i in range(n):
        pool = [(i + j) % n for j in range(k)]
        hits.append(int(torch.argmax(sim[i, pool])) == 0)
    parts = {"all": slice(None)}
    if len(model.config.parts()) > 1:
        parts |= model.config.parts()
    rotation_hits = {name: [] for name in parts}
    shift_hits = {name: [] for name in parts}
    rotations = np.stack([foa_rotation_matrix(ypr_to_matrix(45.0 * r, 0, 0)) for r in range(8)])
    for i in range(n):
        rotated = torch.einsum("rkc,ct->rkt", torch.from_numpy(rotations).float(), foa[i].float())
        a_rot = model.embed_audio(rotated)
        t = foa.shape[-1]
        shifts = torch.stack([torch.roll(foa[i], s * t // 8, dims=-1) for s in range(8)])
        a_shift = model.embed_audio(shifts)
        for name, part in parts.items():
            rotation_hits[name].append(_top1(video_emb[i], a_rot, part))
            shift_hits[name].append(_top1(video_emb[i], a_shift, part))
    result = {
        "clips": n,
        "candidates": k,
        "r_at_1": float(np.mean(hits)),
        "rotation_top1": float(np.mean(rotation_hits["all"])),
        "shift_top1": float(np.mean(shift_hits["all"])),
        "chance": {"r_at_1": 1.0 / k, "rotation_top1": 1 / 8, "shift_top1": 1 / 8},
        "similarity": sim.numpy(),  # (N, N) video rows x audio columns
    }
    if len(parts) > 1:
        result["parts"] = {
            f"{metric}_{name}": float(np.mean(hits_of[name]))
            for metric, hits_of in (("rotation_top1", rotation_hits), ("shift_top1", shift_hits))
            for name in parts
            if name != "all"
        }
    if model.spatial is not None:
        examples = video[:4]
        saliency = model.video_saliency(examples)[:, 0]
        rows, cols = model.video_encoder.grid
        frames = examples[:, 0].permute(0, 2, 3, 1)
        if frames.dtype != torch.uint8:
            frames = (frames.clamp(0, 1) * 255).round().to(torch.uint8)
        result["saliency"] = {
            "frames": frames.numpy(),
            "maps": saliency.reshape(-1, rows, cols).numpy(),
        }
    return result
