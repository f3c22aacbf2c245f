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
clips. With ``oracles`` (procedural clips), ``oracle`` holds the same scores with video
sides that know clip.json's sounding sources (:func:`oracle_parts`): how much of a miss
is the video side's.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from swansphere.foa.rotation import foa_rotation_matrix, ypr_to_matrix
from swansphere.models.svac import SVAC

from ..data.dataset import ClipDataset, TorchClipDataset, frame_indices
from ..losses.svac import aligned_similarity


def svac_window(config) -> tuple[int, int]:
    """(audio samples, video frames) of one SVAC window: 4 s at 4 fps, whole latent frames."""
    samples = int(4.0 * config.sample_rate) // config.latent_hop * config.latent_hop
    return samples, 16


@torch.no_grad()
def embed_clips(model: SVAC, root: Path, split: str | None, max_clips: int):
    """Video and audio embeddings (N, Ta, E), the raw FOA windows (N, 4, T), the videos
    and the clips' metadata (clip.json), of the first window of each clip."""
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
    metas = [clips[i].meta for i in range(n)]
    return torch.cat(video_emb), torch.cat(audio_emb), foa, video, metas


def oracle_parts(
    model: SVAC, meta: dict, n_audio_frames: int, knowledge: str = "signal"
) -> dict[str, torch.Tensor]:
    """The spatial code and activity map ((Ta, dim) each, scaled and standardised as in
    the joint embedding) of a video side that knows where clip.json's sounding sources
    are and how they pulse, for the clip's first SVAC window; empty for a clip without
    them (another corpus) or a model without the part. ``knowledge``: how loud each source
    is known to be, "signal" (its drawn level and signal power) or "video" (its class's
    typical power, which a picture can tell;
    :func:`~.generator.sounding_deliveries`).

    * ``spatial``: the saliency is the sources' map over the token grid, each source's
      delivered power (pulse relative to its clip mean) spread by the direction cue's
      von Mises kernel, averaged over each tubelet's frames
      (:func:`~..losses.svac.source_saliency_map`);
    * ``activity``: the sources' activity map (:func:`~..losses.svac.source_activity_map`).
    """
    from swansphere.foa.panorama import grid_directions
    from swansphere.models.svac import replicate_to_audio_rate, standardise_over_time

    from ..losses.svac import source_activity_map, source_saliency_map

    config = model.config
    shot = meta.get("video") or {}
    fps, count = float(shot.get("fps") or 0.0), int(shot.get("frames") or 0)
    if fps <= 0 or count <= 0 or not meta.get("sources"):
        return {}
    samples, frames = svac_window(config)
    shown = frame_indices(0.0, samples / config.sample_rate, frames, fps, count)
    step, frame = (config.video_tubelet, 1) if config.frame_timestamps else (None, None)
    out = {}
    if model.spatial is not None:
        directions = grid_directions(*model.video_encoder.grid)
        cells = source_saliency_map(meta, shown / fps, directions, config.video_tubelet, knowledge)
        if cells is not None:
            code = model.spatial.video(torch.from_numpy(cells)[None])
            code = replicate_to_audio_rate(code, n_audio_frames, step)[0]
            out["spatial"] = math.sqrt(config.spatial_weight) * code
    if model.activity is not None:
        maps = source_activity_map(meta, shown / fps, config.spatial_order, knowledge=knowledge)
        if maps is not None:
            raw = torch.from_numpy(maps)[None] * model.activity._gains()
            raw = replicate_to_audio_rate(raw, n_audio_frames, frame)
            out["activity"] = math.sqrt(config.activity_weight) * standardise_over_time(raw)[0]
    return out


def _top1(video: torch.Tensor, candidates: torch.Tensor, part: slice) -> bool:
    """Whether candidate 0 of (K, T, E) is the most similar to video (T, E) over ``part``."""
    return int(torch.argmax(aligned_similarity(video[None, :, part], candidates[..., part]))) == 0


def _oracle_similarities(
    known: dict[str, torch.Tensor],
    video: torch.Tensor,
    candidates: torch.Tensor,
    parts: dict[str, slice],
) -> dict[str, torch.Tensor]:
    """Aligned similarities (K,) of the oracle parts ``known`` (:func:`oracle_parts`) to
    the K candidates (K, T, E), alone and combined: the similarity over several parts is
    the sum of theirs (a dot product over concatenated dimensions)."""
    oracle = {
        name: aligned_similarity(part[None], candidates[..., parts[name]])
        for name, part in known.items()
    }
    if len(oracle) == 2:
        learned = {
            name: aligned_similarity(video[None, :, parts[name]], candidates[..., parts[name]])
            for name in oracle
        }
        oracle["spatial_and_activity"] = oracle["spatial"] + oracle["activity"]
        oracle["activity_with_learned_spatial"] = oracle["activity"] + learned["spatial"]
        oracle["spatial_with_learned_activity"] = oracle["spatial"] + learned["activity"]
    return oracle


@torch.no_grad()
def evaluate_svac(
    model: SVAC,
    root: Path,
    split: str | None = "test",
    max_clips: int = 128,
    candidates: int = 64,
    oracles: bool = False,
) -> dict:
    """The metrics of the module docstring. With a spatial code or an activity map,
    ``parts`` also holds rotation_top1 and shift_top1 measured on each part's dimensions
    alone (``rotation_top1_content``, ``..._spatial``, ``..._activity``); with a spatial
    code, ``saliency`` the first frames (k, H, W, 3) uint8 of up to 4 clips with the video
    saliency (k, rows, cols) of their first step, for plots.

    With ``oracles``, ``oracle`` holds the rotation and shift scores of the parts whose
    video side knows the sounding sources (:func:`oracle_parts`), alone (``..._spatial``,
    ``..._activity``), together (``..._spatial_and_activity``) and each beside the other
    part as learned (``..._activity_with_learned_spatial``,
    ``..._spatial_with_learned_activity``), over the ``clips`` that have sources; the
    same names with ``video_`` before the part (``rotation_top1_video_spatial``, ...) for
    oracles that know each source's loudness only as its class's typical power, as a
    picture can."""
    model.eval()
    video_emb, audio_emb, foa, video, metas = embed_clips(model, root, split, max_clips)
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
    oracle_hits: dict[str, list[bool]] = {}
    oracle_clips = 0
    for i in range(n):
        rotated = torch.einsum("rkc,ct->rkt", torch.from_numpy(rotations).float(), foa[i].float())
        a_rot = model.embed_audio(rotated)
        t = foa.shape[-1]
        shifts = torch.stack([torch.roll(foa[i], s * t // 8, dims=-1) for s in range(8)])
        a_shift = model.embed_audio(shifts)
        for name, part in parts.items():
            rotation_hits[name].append(_top1(video_emb[i], a_rot, part))
            shift_hits[name].append(_top1(video_emb[i], a_shift, part))
        for knowledge, prefix in (("signal", ""), ("video", "video_")) if oracles else ():
            known = oracle_parts(model, metas[i], video_emb.shape[1], knowledge)
            for kind, audio in (("rotation", a_rot), ("shift", a_shift)):
                similarities = _oracle_similarities(known, video_emb[i], audio, parts)
                for name, sim_of in similarities.items():
                    oracle_hits.setdefault(f"{kind}_top1_{prefix}{name}", []).append(
                        int(torch.argmax(sim_of)) == 0
                    )
            oracle_clips += bool(known) and knowledge == "signal"
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
    if oracles:
        result["oracle"] = {"clips": oracle_clips} | {
            name: float(np.mean(got)) for name, got in oracle_hits.items()
        }
    if model.spatial is not None:
        examples = video[:4]
        saliency = model.code_saliency(examples)[:, 0]  # the one the code reads
        rows, cols = model.video_encoder.grid
        frames = examples[:, 0].permute(0, 2, 3, 1)
        if frames.dtype != torch.uint8:
            frames = (frames.clamp(0, 1) * 255).round().to(torch.uint8)
        result["saliency"] = {
            "frames": frames.numpy(),
            "maps": saliency.reshape(-1, rows, cols).numpy(),
        }
    return result
