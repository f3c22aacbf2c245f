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
is the video side's. With ``weighings``, ``weighings`` holds the three scores under each
candidate share of the parts (:data:`WEIGHING_GRID`) from the same embeddings, and
``chosen`` the one :func:`choose_weighing` picks: the part weights are settings chosen
after training (``swansphere bundle --tune``), so they are chosen on clips the evaluation
that follows never sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from swansphere.errors import InputError
from swansphere.foa.rotation import foa_rotation_matrix, ypr_to_matrix
from swansphere.models.svac import SVAC, SVACConfig

from ..data.dataset import ClipDataset, TorchClipDataset, frame_indices
from ..losses.svac import aligned_similarity

# What the SVAC is held to (the encoders issue): retrieval among 64, the true FOA against
# its 7 yaw rotations, the true alignment against 7 circular shifts.
SVAC_TARGETS = {"r_at_1": 0.5, "rotation_top1": 0.9, "shift_top1": 0.8}

# Candidate (spatial_weight, activity_weight) shares, fixed before any were measured:
# spatial 0.2-0.6 by 0.1, activity 0.15-0.6 by 0.15, content (the rest) at least 0.1.
WEIGHING_GRID: tuple[tuple[float, float], ...] = tuple(
    (w, u) for w in (0.2, 0.3, 0.4, 0.5, 0.6) for u in (0.15, 0.3, 0.45, 0.6) if w + u <= 0.9 + 1e-9
)


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


def retrieval_top1(sim: torch.Tensor, candidates: int) -> float:
    """Share of videos (rows of the (N, N) video x audio similarity) whose own audio is the
    most similar among ``candidates`` clips: itself and the next ones, circularly."""
    n = sim.shape[0]
    pools = (torch.arange(n)[:, None] + torch.arange(candidates)[None, :]) % n
    return float((sim.gather(1, pools).argmax(1) == 0).double().mean())


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
    weighings: bool = False,
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
    picture can.

    With ``weighings`` (a model with more than one part), ``weighings`` lists each
    :data:`WEIGHING_GRID` candidate with its scores (:func:`reweighed_scores`) and
    ``chosen`` is the one :func:`choose_weighing` picks by ``targets``."""
    model.eval()
    if weighings and len(model.config.parts()) < 2:
        raise InputError("this SVAC has one part (no spatial code, no activity map): no weighing")
    video_emb, audio_emb, foa, video, metas = embed_clips(model, root, split, max_clips)
    n = video_emb.shape[0]
    k = min(candidates, n)
    sim = aligned_similarity(video_emb[:, None], audio_emb[None, :])  # (N, N)
    parts = {"all": slice(None)}
    if len(model.config.parts()) > 1:
        parts |= model.config.parts()
    rotation_hits = {name: [] for name in parts}
    shift_hits = {name: [] for name in parts}
    # Each part's similarities alone, (8,) per clip: any other weighing is a sum of them.
    part_rotation = {name: [] for name in parts if name != "all"}
    part_shift = {name: [] for name in parts if name != "all"}
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
            rotation = aligned_similarity(video_emb[i, None, :, part], a_rot[..., part])
            shift = aligned_similarity(video_emb[i, None, :, part], a_shift[..., part])
            rotation_hits[name].append(int(torch.argmax(rotation)) == 0)
            shift_hits[name].append(int(torch.argmax(shift)) == 0)
            if name != "all":
                part_rotation[name].append(rotation)
                part_shift[name].append(shift)
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
        "r_at_1": retrieval_top1(sim, k),
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
    if weighings:
        similarities = PartSimilarities(
            retrieval={  # aligned_similarity of every pair, without the (N, N, T, E) product
                name: torch.einsum("ite,jte->ij", video_emb[..., part], audio_emb[..., part])
                / video_emb.shape[1]
                for name, part in model.config.parts().items()
            },
            rotation={name: torch.stack(got) for name, got in part_rotation.items()},
            shift={name: torch.stack(got) for name, got in part_shift.items()},
            candidates=k,
        )
        trained = part_weights(model.config.spatial_weight, model.config.activity_weight)
        scored = [
            {**part_weights(w, u), **reweighed_scores(similarities, trained, part_weights(w, u))}
            for w, u in candidate_weighings(model.config)
        ]
        result["weights"] = trained  # what the scores at the top were measured with
        result["weighings"] = scored
        result["chosen"] = choose_weighing(scored, trained)
        result["targets"] = dict(SVAC_TARGETS)
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


@dataclass(frozen=True)
class PartSimilarities:
    """Each part's aligned similarities alone (:func:`aligned_similarity` over its
    dimensions of the joint embedding, its weight included): ``retrieval`` (N, N) video
    rows x audio columns, ``rotation`` (N, 8) against the 8 yaw rotations (0 degrees
    first), ``shift`` (N, 8) against the 8 circular shifts (none first); keyed by part
    name (content, spatial, activity). ``candidates``: the retrieval pool size."""

    retrieval: dict[str, torch.Tensor]
    rotation: dict[str, torch.Tensor]
    shift: dict[str, torch.Tensor]
    candidates: int


def part_weights(spatial_weight: float, activity_weight: float) -> dict[str, float]:
    """The share of the similarity each part takes: content what the other two leave."""
    return {
        "content_weight": round(1.0 - spatial_weight - activity_weight, 6),
        "spatial_weight": spatial_weight,
        "activity_weight": activity_weight,
    }


def candidate_weighings(config: SVACConfig) -> list[tuple[float, float]]:
    """The :data:`WEIGHING_GRID` candidates a model can take: a part it lacks stays at 0
    (then its share is spread over the grid of the others), and its own weighing is
    always a candidate."""
    has_spatial, has_activity = config.spatial_weight > 0, config.activity_weight > 0
    grid = {(w if has_spatial else 0.0, u if has_activity else 0.0) for w, u in WEIGHING_GRID}
    grid.add((config.spatial_weight, config.activity_weight))
    return sorted(grid)


def reweighed_scores(
    similarities: PartSimilarities, trained: dict[str, float], weights: dict[str, float]
) -> dict[str, float]:
    """r_at_1, rotation_top1 and shift_top1 of the embedding with its parts weighed
    ``weights`` instead of ``trained`` (``part_weights`` dicts). The joint embedding
    concatenates sqrt(share) x each part, so the aligned similarity is the sum of the
    parts' and a part's scales by new share / trained share: no need to embed again."""

    def combined(per_part: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(
            per_part[name] * (weights[f"{name}_weight"] / trained[f"{name}_weight"])
            for name in per_part
        )

    return {
        "r_at_1": retrieval_top1(combined(similarities.retrieval), similarities.candidates),
        "rotation_top1": float((combined(similarities.rotation).argmax(1) == 0).double().mean()),
        "shift_top1": float((combined(similarities.shift).argmax(1) == 0).double().mean()),
    }


def weighing_margin(scores: dict[str, float], targets: dict[str, float] = SVAC_TARGETS) -> float:
    """The worst of the scores relative to its target (score / target): above 1, every
    target is met."""
    return min(scores[name] / target for name, target in targets.items())


def choose_weighing(
    scored: list[dict[str, float]],
    trained: dict[str, float],
    targets: dict[str, float] = SVAC_TARGETS,
) -> dict[str, float]:
    """The candidate (a ``part_weights`` dict with its scores) with the best worst margin
    to the targets (:func:`weighing_margin`); ties go to the best mean margin, then to
    the weighing nearest the trained one."""

    def key(entry: dict[str, float]) -> tuple[float, float, float]:
        mean = sum(entry[name] / target for name, target in targets.items()) / len(targets)
        distance = sum(abs(entry[name] - trained[name]) for name in trained)
        return (weighing_margin(entry, targets), mean, -distance)

    best = max(scored, key=key)
    return {**best, "margin": weighing_margin(best, targets)}
