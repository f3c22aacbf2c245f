"""SVAC contrastive loss: symmetric InfoNCE over temporally aligned similarity, four negatives.

Similarity of a video clip and an audio clip, both (T, E) sequences at the audio frame
rate: the mean over the aligned time steps of the dot product of the two frames
(:func:`aligned_similarity`); for unit frames that is the mean cosine similarity. Logits
are similarities / temperature (paper: 0.07).

Candidates per query (DESIGN.md section 4):

* video query i: its own audio (the positive), the other audio clips of the batch
  (``batch``), its audio circularly shifted in time (``time_shift``), its FOA rotated in
  3D (``rotation``);
* audio query i: its own video, the other videos of the batch (``batch``), its panorama
  rolled horizontally (``roll``).

The loss is the mean of the two cross-entropies. Each kind switches off in
:class:`NegativeConfig` for ablation. The extra negatives are embedded by the caller's
model: :func:`time_shift_negatives`, :func:`rotation_negatives` and :func:`roll_negatives`
transform the raw FOA / video, :func:`build_negatives` runs the model on them, and
:func:`svac_loss` only sees embeddings. A direction left without any negative
contributes 0 (cross-entropy over a single candidate).

Random draws come from a NumPy ``Generator`` that the caller seeds and checkpoints.
FOA is AmbiX (ACN W, Y, Z, X; SN3D) shaped (B, 4, T); video is equirectangular
(B, F, 3, H, W) with the conventions of :mod:`swansphere.foa.panorama`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from swansphere.errors import InputError
from swansphere.foa.harmonics import real_spherical_harmonics
from swansphere.foa.rotation import foa_rotation_matrix
from swansphere.models.svac import standardise_over_time

# Rejection sampling of rotations gives up after this many draws per negative.
MAX_ROTATION_DRAWS = 10_000

# A clip whose broadband intensity |mean W (X, Y, Z)| is below this fraction of mean W^2
# has no clear direction; its rotation negatives only obey the rotation-angle bound.
DIRECTION_CLARITY = 0.1


@dataclass(frozen=True)
class NegativeConfig:
    """Which negatives SVAC uses, and how many of each per clip."""

    batch: bool = True  # other clips of the batch, both directions
    time_shift: bool = True  # video query: own audio circularly shifted in time
    rotation: bool = True  # video query: own FOA rotated in 3D
    roll: bool = True  # audio query: own panorama rolled horizontally
    n_time_shift: int = 2  # shifted copies per clip
    n_rotation: int = 2  # rotated copies per clip
    n_roll: int = 2  # rolled copies per clip
    min_shift_fraction: float = 0.2  # shifts lie in [f, 1 - f] of the clip length
    min_rotation_deg: float = 45.0  # rotation angle, and clip-direction change, at least
    # Rotation angle at most: below 180 the negatives crowd near the smallest rotations a
    # clip must be told from (Haar rotations are mostly large: 82 % turn by over 90 deg).
    max_rotation_deg: float = 180.0
    min_roll_deg: float = 45.0  # roll yaw in [min, max] or [360 - max, 360 - min] degrees
    max_roll_deg: float = 180.0

    def __post_init__(self) -> None:
        for name in ("n_time_shift", "n_rotation", "n_roll"):
            if getattr(self, name) < 0:
                raise InputError(f"NegativeConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.min_shift_fraction <= 0.5:
            raise InputError(
                f"min_shift_fraction must be in (0, 0.5], got {self.min_shift_fraction}"
            )
        if not 0.0 <= self.min_rotation_deg < 180.0:
            raise InputError(f"min_rotation_deg must be in [0, 180), got {self.min_rotation_deg}")
        if not self.min_rotation_deg < self.max_rotation_deg <= 180.0:
            raise InputError(
                f"max_rotation_deg must be in (min_rotation_deg, 180] = "
                f"({self.min_rotation_deg}, 180], got {self.max_rotation_deg}"
            )
        if not 0.0 < self.min_roll_deg <= 180.0:
            raise InputError(f"min_roll_deg must be in (0, 180], got {self.min_roll_deg}")
        if not self.min_roll_deg <= self.max_roll_deg <= 180.0:
            raise InputError(
                f"max_roll_deg must be in [min_roll_deg, 180] = [{self.min_roll_deg}, 180], "
                f"got {self.max_roll_deg}"
            )

    @property
    def physical(self) -> bool:
        """Whether any physical (shift, rotation, roll) negative is on."""
        return self.time_shift or self.rotation or self.roll

    def without_physical(self) -> NegativeConfig:
        """The ablation: batch negatives only."""
        return NegativeConfig(batch=self.batch, time_shift=False, rotation=False, roll=False)


@dataclass
class SVACBatchNegatives:
    """Embeddings of the extra negatives, each (B, K, T, E) at the audio frame rate, or None."""

    shifted_audio: torch.Tensor | None = None
    rotated_audio: torch.Tensor | None = None
    rolled_video: torch.Tensor | None = None


class SVACEmbedder(Protocol):
    """What :func:`build_negatives` needs of a model (``swansphere.models.svac.SVAC`` fits)."""

    def embed_audio(self, foa: torch.Tensor) -> torch.Tensor:
        """(N, 4, T) -> (N, Ta, E)."""
        ...

    def embed_video(self, video: torch.Tensor, n_audio_frames: int | None = None) -> torch.Tensor:
        """(N, F, 3, H, W) -> (N, Ta, E)."""
        ...


# --------------------------------------------------------------------------------------
# Negative transforms of the raw inputs
# --------------------------------------------------------------------------------------


def _check_count(k: int) -> None:
    if int(k) != k or k < 1:
        raise InputError(f"the number of negatives per clip must be a positive integer, got {k}")


def _check_foa(foa: torch.Tensor) -> None:
    if not isinstance(foa, torch.Tensor) or foa.ndim != 3 or foa.shape[1] != 4:
        shape = tuple(foa.shape) if isinstance(foa, torch.Tensor) else type(foa)
        raise InputError(f"FOA must be a tensor (B, 4, T) in ACN order, got {shape}")


def time_shift_negatives(
    foa: torch.Tensor, k: int, rng: np.random.Generator, min_fraction: float = 0.2
) -> tuple[torch.Tensor, np.ndarray]:
    """k circular time shifts per clip: (B, k, 4, T) and the shifts (B, k) in samples.

    Shift s moves sample n to n + s (mod T), i.e. torch.roll by s; s is drawn uniformly
    from [ceil(min_fraction T), T - ceil(min_fraction T)].
    """
    _check_foa(foa)
    _check_count(k)
    batch, _, samples = foa.shape
    low = int(np.ceil(min_fraction * samples))
    if low < 1 or samples - low < low:
        raise InputError(
            f"cannot shift a clip of {samples} samples by at least {min_fraction} of its length"
        )
    shifts = rng.integers(low, samples - low, size=(batch, k), endpoint=True)
    out = torch.stack(
        [
            torch.stack([torch.roll(foa[b], int(shifts[b, j]), dims=-1) for j in range(k)])
            for b in range(batch)
        ]
    )
    return out, shifts


def rotation_angle_deg(matrix: np.ndarray) -> np.ndarray:
    """Rotation angle in degrees of rotation matrices (..., 3, 3)."""
    trace = np.trace(np.asarray(matrix), axis1=-2, axis2=-1)
    return np.rad2deg(np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0)))


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed (Haar) random rotation matrix (3, 3)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def clip_intensity(foa: torch.Tensor) -> torch.Tensor:
    """Broadband clip intensity (B, 3) as (x, y, z): mean over time of W (X, Y, Z)."""
    return (foa[:, :1] * foa[:, [3, 1, 2]]).mean(dim=-1)


def _draw_rotation(
    rng: np.random.Generator,
    min_angle_deg: float,
    direction: np.ndarray | None,
    max_angle_deg: float = 180.0,
) -> np.ndarray:
    cos_min = np.cos(np.deg2rad(min_angle_deg))
    for _ in range(MAX_ROTATION_DRAWS):
        r = random_rotation(rng)
        if not min_angle_deg <= rotation_angle_deg(r) <= max_angle_deg:
            continue
        if direction is not None and float(direction @ r @ direction) > cos_min:
            continue
        return r
    raise InputError(
        f"no rotation of {min_angle_deg} to {max_angle_deg} deg found in {MAX_ROTATION_DRAWS} draws"
    )


def rotation_negatives(
    foa: torch.Tensor,
    k: int,
    rng: np.random.Generator,
    min_angle_deg: float = 45.0,
    max_angle_deg: float = 180.0,
) -> tuple[torch.Tensor, np.ndarray]:
    """k random 3D rotations per clip: rotated FOA (B, k, 4, T) and the matrices (B, k, 3, 3).

    Each rotation is Haar-random with a rotation angle in [``min_angle_deg``,
    ``max_angle_deg``] (rejection sampling, so Haar-distributed within the bounds); when
    the clip has a clear direction d (broadband intensity, see :data:`DIRECTION_CLARITY`),
    it must also move d by at least ``min_angle_deg``, so that a rotation about the source
    axis (which leaves a single source where it was) is never taken as a negative. The
    matrices are scene rotations: a source at v ends up at R v, applied to the AmbiX
    channels through :func:`swansphere.foa.rotation.foa_rotation_matrix`.
    """
    _check_foa(foa)
    _check_count(k)
    batch = foa.shape[0]
    intensity = clip_intensity(foa.detach().double()).cpu().numpy()
    power = (foa.detach().double()[:, 0] ** 2).mean(dim=-1).cpu().numpy()
    matrices = np.zeros((batch, k, 3, 3))
    for b in range(batch):
        norm = float(np.linalg.norm(intensity[b]))
        clear = norm > DIRECTION_CLARITY * float(power[b]) and norm > 0
        direction = intensity[b] / norm if clear else None
        for j in range(k):
            matrices[b, j] = _draw_rotation(rng, min_angle_deg, direction, max_angle_deg)
    return rotate_foa_batch(foa, matrices), matrices


def rotate_foa_batch(foa: torch.Tensor, matrices: np.ndarray) -> torch.Tensor:
    """Rotate each clip of FOA (B, 4, T) by its K scene rotations (B, K, 3, 3): (B, K, 4, T).

    The torch counterpart of :func:`swansphere.foa.rotation.rotate_foa`, through the same
    AmbiX mixing matrices (:func:`~swansphere.foa.rotation.foa_rotation_matrix`).
    """
    _check_foa(foa)
    matrices = np.asarray(matrices, dtype=np.float64)
    if matrices.ndim != 4 or matrices.shape[0] != foa.shape[0] or matrices.shape[2:] != (3, 3):
        raise InputError(
            f"rotations must be (B, K, 3, 3) with B = {foa.shape[0]}, got {matrices.shape}"
        )
    mixing = torch.from_numpy(foa_rotation_matrix(matrices)).to(foa.device, foa.dtype)
    return torch.einsum("bkij,bjt->bkit", mixing, foa)


def roll_negatives(
    video: torch.Tensor,
    k: int,
    rng: np.random.Generator,
    min_roll_deg: float = 45.0,
    max_roll_deg: float = 180.0,
) -> tuple[torch.Tensor, np.ndarray]:
    """k horizontal panorama rolls per clip: (B, k, F, 3, H, W) and their yaws (B, k) in degrees.

    Whole-pixel rolls only: s columns with s * 360 / W in [min_roll_deg, 360 - min_roll_deg],
    uniformly; with ``max_roll_deg`` below 180 only those within max_roll_deg of no roll,
    either way half of the time. yaw = s * 360 / W. The content moves left by s columns
    (torch.roll by -s on the width axis), which is
    :func:`swansphere.foa.panorama.roll_equirect` by that yaw: the scene rotated by Rz(yaw).
    """
    if not isinstance(video, torch.Tensor) or video.ndim != 5:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video)
        raise InputError(f"video must be a tensor (B, F, C, H, W), got {shape}")
    _check_count(k)
    batch, width = video.shape[0], video.shape[-1]
    low = int(np.ceil(min_roll_deg / 360.0 * width - 1e-9))
    high = width - low
    if low < 1 or high < low:
        raise InputError(
            f"cannot roll a panorama {width} pixels wide by at least {min_roll_deg} deg"
        )
    if max_roll_deg < 180.0:
        cap = int(np.floor(max_roll_deg / 360.0 * width + 1e-9))
        if cap < low:
            raise InputError(
                f"no whole-pixel roll of a panorama {width} pixels wide lies in "
                f"[{min_roll_deg}, {max_roll_deg}] deg"
            )
        columns = rng.integers(low, cap, size=(batch, k), endpoint=True)
        columns = np.where(rng.random(size=(batch, k)) < 0.5, columns, width - columns)
    else:  # the whole range in one draw (as every run before max_roll_deg drew it)
        columns = rng.integers(low, high, size=(batch, k), endpoint=True)
    rolled = torch.stack(
        [
            torch.stack([torch.roll(video[b], -int(columns[b, j]), dims=-1) for j in range(k)])
            for b in range(batch)
        ]
    )
    return rolled, columns * 360.0 / width


def build_negatives(
    model: SVACEmbedder,
    foa: torch.Tensor,
    video: torch.Tensor,
    config: NegativeConfig,
    rng: np.random.Generator,
    n_audio_frames: int,
) -> SVACBatchNegatives:
    """Draw the physical negatives switched on in ``config`` and embed them with ``model``.

    foa (B, 4, T), video (B, F, 3, H, W): the batch; n_audio_frames: Ta of its embeddings.
    Draw order (for reproducible RNG streams): shifts, rotations, rolls.
    """
    batch = foa.shape[0]
    out = SVACBatchNegatives()

    def audio(x: torch.Tensor) -> torch.Tensor:  # (B, K, 4, T) -> (B, K, Ta, E)
        emb = model.embed_audio(x.reshape(-1, *x.shape[2:]))
        return emb.reshape(batch, x.shape[1], *emb.shape[1:])

    if config.time_shift and config.n_time_shift:
        shifted, _ = time_shift_negatives(foa, config.n_time_shift, rng, config.min_shift_fraction)
        out.shifted_audio = audio(shifted)
    if config.rotation and config.n_rotation:
        rotated, _ = rotation_negatives(
            foa, config.n_rotation, rng, config.min_rotation_deg, config.max_rotation_deg
        )
        out.rotated_audio = audio(rotated)
    if config.roll and config.n_roll:
        rolled, _ = roll_negatives(
            video, config.n_roll, rng, config.min_roll_deg, config.max_roll_deg
        )
        emb = model.embed_video(rolled.reshape(-1, *rolled.shape[2:]), n_audio_frames)
        out.rolled_video = emb.reshape(batch, config.n_roll, *emb.shape[1:])
    return out


# --------------------------------------------------------------------------------------
# Similarities and losses
# --------------------------------------------------------------------------------------


def aligned_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean over time of the dot product of aligned frames.

    a, b: (..., T, E), broadcastable in the leading dimensions -> (...). For unit frames
    this is the mean cosine similarity. Frames are not renormalised: an SVAC embedding with
    an activity map is a unit vector only on average over the clip, and its activity part
    must stay a correlation over time (see ``swansphere.models.svac.SVAC``).
    """
    if a.shape[-2:] != b.shape[-2:]:
        raise InputError(f"sequences must share (T, E); got {tuple(a.shape)} and {tuple(b.shape)}")
    return (a * b).sum(-1).mean(-1)


def similarity_matrix(video_emb: torch.Tensor, audio_emb: torch.Tensor) -> torch.Tensor:
    """S[i, j] = aligned similarity (:func:`aligned_similarity`) of video i and audio j:
    (B, T, E) x (B, T, E) -> (B, B)."""
    if video_emb.ndim != 3 or video_emb.shape != audio_emb.shape:
        raise InputError(
            f"embeddings must both be (B, T, E); got {tuple(video_emb.shape)} and "
            f"{tuple(audio_emb.shape)}"
        )
    return torch.einsum("ite,jte->ij", video_emb, audio_emb) / video_emb.shape[1]


def _own_similarity(query: torch.Tensor, extras: torch.Tensor | None, name: str) -> torch.Tensor:
    """(B, T, E) query vs its own K extra candidates (B, K, T, E) -> (B, K); (B, 0) if none."""
    if extras is None:
        return query.new_zeros(query.shape[0], 0)
    if extras.ndim != 4 or extras.shape[0] != query.shape[0] or extras.shape[2:] != query.shape[1:]:
        raise InputError(
            f"{name} must be (B, K, T, E) = ({query.shape[0]}, K, "
            f"{query.shape[1]}, {query.shape[2]}), got {tuple(extras.shape)}"
        )
    return aligned_similarity(query[:, None], extras)


def _direction(
    positive: torch.Tensor,
    batch_sims: torch.Tensor | None,
    extras: dict[str, torch.Tensor],
    temperature: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of one direction and its metrics.

    positive (B,), batch_sims (B, B) with the positive on the diagonal (or None), extras
    name -> (B, K). Metrics: top-1 accuracy against each kind and against all.
    """
    n = positive.shape[0]
    if batch_sims is not None:
        logits, target = batch_sims, torch.arange(n, device=positive.device)
    else:
        logits, target = positive[:, None], positive.new_zeros(n, dtype=torch.long)
    logits = torch.cat([logits, *extras.values()], dim=1)
    loss = F.cross_entropy(logits / temperature, target)
    metrics: dict[str, float] = {"n_logits": float(logits.shape[1])}
    with torch.no_grad():
        hardest = logits.clone()
        hardest[torch.arange(n), target] = -torch.inf
        if logits.shape[1] > 1:  # no accuracy to speak of without a negative
            metrics["top1"] = float((positive > hardest.max(dim=1).values).float().mean())
        if batch_sims is not None and n > 1:
            off = batch_sims.masked_fill(
                torch.eye(n, dtype=torch.bool, device=positive.device), -torch.inf
            )
            metrics["top1_batch"] = float((positive > off.max(dim=1).values).float().mean())
            eye = torch.eye(n, dtype=torch.bool, device=positive.device)
            metrics["sim_batch"] = float(batch_sims[~eye].mean())
        for name, sims in extras.items():
            if sims.shape[1]:
                metrics[f"top1_{name}"] = float((positive > sims.max(dim=1).values).float().mean())
                metrics[f"sim_{name}"] = float(sims.mean())
    return loss, metrics


def svac_loss(
    video_emb: torch.Tensor,
    audio_emb: torch.Tensor,
    negatives: SVACBatchNegatives | None = None,
    *,
    config: NegativeConfig | None = None,
    temperature: float = 0.07,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Symmetric InfoNCE of aligned video / audio embeddings, each (B, T, E).

    negatives: the extra negatives' embeddings; a kind is used when it is given and
    switched on in ``config`` (default: all on). valid: optional bool (B,), False for clips
    to leave out (e.g. no video). Returns (loss, metrics): loss = (v2a + a2v) / 2; metrics
    hold both losses, top-1 accuracies (overall and per kind), mean similarities and the
    logit count per query of each direction.
    """
    config = config or NegativeConfig()
    negatives = negatives or SVACBatchNegatives()
    if temperature <= 0:
        raise InputError(f"temperature must be positive, got {temperature}")
    if video_emb.ndim != 3 or video_emb.shape != audio_emb.shape:
        raise InputError(
            f"video and audio embeddings must both be (B, T, E); got "
            f"{tuple(video_emb.shape)} and {tuple(audio_emb.shape)}"
        )
    shifted = negatives.shifted_audio if config.time_shift else None
    rotated = negatives.rotated_audio if config.rotation else None
    rolled = negatives.rolled_video if config.roll else None
    if valid is not None:
        valid = valid.to(device=video_emb.device, dtype=torch.bool)
        if valid.shape != video_emb.shape[:1]:
            raise InputError(
                f"valid must be (B,) = ({video_emb.shape[0]},), got {tuple(valid.shape)}"
            )
        if not bool(valid.any()):
            raise InputError("no valid clip in the batch")
        video_emb, audio_emb = video_emb[valid], audio_emb[valid]
        shifted, rotated, rolled = (
            None if x is None else x[valid] for x in (shifted, rotated, rolled)
        )
    video_extras = {
        "time_shift": _own_similarity(video_emb, shifted, "shifted_audio"),
        "rotation": _own_similarity(video_emb, rotated, "rotated_audio"),
    }
    audio_extras = {"roll": _own_similarity(audio_emb, rolled, "rolled_video")}
    positive = aligned_similarity(video_emb, audio_emb)
    sims = similarity_matrix(video_emb, audio_emb) if config.batch else None
    loss_v2a, m_v2a = _direction(positive, sims, video_extras, temperature)
    loss_a2v, m_a2v = _direction(
        positive, None if sims is None else sims.T, audio_extras, temperature
    )
    if m_v2a["n_logits"] == 1 and m_a2v["n_logits"] == 1:
        raise InputError(
            "SVAC loss has no negatives: enable batch negatives with B > 1 or "
            "pass physical negatives"
        )
    loss = 0.5 * (loss_v2a + loss_a2v)
    metrics = {
        "loss": float(loss.detach()),
        "loss_v2a": float(loss_v2a.detach()),
        "loss_a2v": float(loss_a2v.detach()),
        "sim_positive": float(positive.detach().mean()),
    }
    metrics |= {f"v2a_{k}": v for k, v in m_v2a.items()}
    metrics |= {f"a2v_{k}": v for k, v in m_a2v.items()}
    return loss, metrics


def part_shift_loss(
    video_emb: torch.Tensor,
    audio_emb: torch.Tensor,
    shifted_audio: torch.Tensor,
    part: slice,
    share: float,
    *,
    temperature: float = 0.07,
) -> tuple[torch.Tensor, float]:
    """InfoNCE of one part of the joint embedding alone: each video clip's own audio
    against the same audio circularly shifted in time, no other candidate.

    video_emb, audio_emb (B, T, E), shifted_audio (B, K, T, E) (``SVACBatchNegatives``);
    ``part`` is where the part lies in E (``SVACConfig.parts``) and ``share`` its weight in
    the similarity (the part is scaled by sqrt(share) in each embedding), so the logits are
    the part's own aligned similarity (the content's: its mean cosine) over temperature.
    The joint loss lets whichever part tells shifts apart most cheaply (the activity map)
    carry them; this one asks the part to do it on its own. Returns (loss, top-1 accuracy).
    """
    if share <= 0:
        raise InputError(f"the part's share of the similarity must be positive, got {share}")
    if shifted_audio.ndim != 4 or shifted_audio.shape[0] != video_emb.shape[0]:
        raise InputError(
            f"shifted_audio must be (B, K, T, E) with B = {video_emb.shape[0]}, "
            f"got {tuple(shifted_audio.shape)}"
        )
    v, a, s = video_emb[..., part], audio_emb[..., part], shifted_audio[..., part]
    positive = aligned_similarity(v, a)
    logits = torch.cat([positive[:, None], _own_similarity(v, s, "shifted_audio")], dim=1)
    logits = logits / share
    loss = F.cross_entropy(logits / temperature, logits.new_zeros(len(logits), dtype=torch.long))
    with torch.no_grad():
        top1 = float((logits[:, 0] > logits[:, 1:].max(dim=1).values).float().mean())
    return loss, top1


def text_audio_loss(
    text_emb: torch.Tensor,
    audio_emb: torch.Tensor,
    *,
    temperature: float = 0.07,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Symmetric InfoNCE of captions (B, E) against time-pooled audio (B, T, E).

    The audio sequence is averaged over time (of unit frames) and renormalised; the
    batch's other clips are the negatives. valid: optional bool (B,), False for clips
    without a caption. Returns (loss, metrics with loss, top1_t2a, top1_a2t).
    """
    if temperature <= 0:
        raise InputError(f"temperature must be positive, got {temperature}")
    if (
        text_emb.ndim != 2
        or audio_emb.ndim != 3
        or text_emb.shape[0] != audio_emb.shape[0]
        or text_emb.shape[1] != audio_emb.shape[2]
    ):
        raise InputError(
            f"need text (B, E) and audio (B, T, E); got {tuple(text_emb.shape)} "
            f"and {tuple(audio_emb.shape)}"
        )
    if valid is not None:
        valid = valid.to(device=text_emb.device, dtype=torch.bool)
        text_emb, audio_emb = text_emb[valid], audio_emb[valid]
    if text_emb.shape[0] < 2:
        raise InputError("text-audio loss needs at least 2 captioned clips in the batch")
    t = F.normalize(text_emb, dim=-1)
    a = F.normalize(F.normalize(audio_emb, dim=-1).mean(dim=1), dim=-1)
    logits = t @ a.T / temperature
    target = torch.arange(t.shape[0], device=t.device)
    loss_t2a = F.cross_entropy(logits, target)
    loss_a2t = F.cross_entropy(logits.T, target)
    loss = 0.5 * (loss_t2a + loss_a2t)
    with torch.no_grad():
        metrics = {
            "loss": float(loss),
            "loss_t2a": float(loss_t2a),
            "loss_a2t": float(loss_a2t),
            "top1_t2a": float((logits.argmax(dim=1) == target).float().mean()),
            "top1_a2t": float((logits.argmax(dim=0) == target).float().mean()),
        }
    return loss, metrics


# --------------------------------------------------------------------------------------
# Source supervision of the activity map and the saliency (procedural clips)
# --------------------------------------------------------------------------------------


def _frame_deliveries(
    meta: dict, frame_times_s: np.ndarray, pulse_reference: str, knowledge: str
) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """:func:`~..evaluation.generator.sounding_deliveries` at video frames' instants
    (seconds into the clip), each pulse read at the frame nearest its instant; None for a
    clip without a frame rate, sources or what they need (another corpus)."""
    from ..evaluation.generator import sounding_deliveries

    fps = (meta.get("video") or {}).get("fps")
    if not fps or not meta.get("sources"):
        return None
    times = np.asarray(frame_times_s, dtype=np.float64)
    frames = np.floor(times * float(fps) + 0.5).astype(int)
    return sounding_deliveries(meta, times, frames, pulse_reference, knowledge)


def source_activity_map(
    meta: dict,
    frame_times_s: np.ndarray,
    order: int,
    pulse_reference: str = "mean",
    knowledge: str = "signal",
) -> np.ndarray | None:
    """What the sounding sources of a procedural clip deliver where, frame by frame: (F, S)
    real spherical harmonics (ACN, orthonormal, orders 0 to ``order``) of every source's
    direction at each video frame's instant (``frame_times_s``, seconds into the clip),
    weighted by 10^((level_db + power_db) / 10) times its pulse at that frame as a power
    (:func:`~swansphere_training.corpus.synth.activity_power`, relative to its clip mean by
    default) over distance^2; with ``knowledge="video"`` the class's typical power instead
    of the drawn level and signal power (:func:`~..evaluation.generator.sounding_deliveries`).
    The silent look-alikes give nothing: this is the activity map's video side as an oracle
    would draw it. None when clip.json lacks what it needs (another corpus)."""
    deliveries = _frame_deliveries(meta, frame_times_s, pulse_reference, knowledge)
    if deliveries is None:
        return None
    total = np.zeros((len(frame_times_s), (order + 1) ** 2))
    for power, unit in deliveries:
        total += power[:, None] * real_spherical_harmonics(torch.from_numpy(unit), order).numpy()
    return total.astype(np.float32)


def source_saliency_map(
    meta: dict,
    frame_times_s: np.ndarray,
    directions: np.ndarray,
    tubelet: int,
    knowledge: str = "signal",
) -> np.ndarray | None:
    """Where the sounding sources of a procedural clip are, per video step: (t, G) rows that
    sum to 1 over the cells of the token grid (``directions`` (G, 3), unit, raster order),
    t = ceil(F / tubelet) for the F video frames at ``frame_times_s`` (seconds into the
    clip). Each frame's map is the sources' deliveries spread by the direction cue's von
    Mises kernel (:func:`~swansphere_training.stages.direction.source_cells`); a step is
    the mean of its ``tubelet`` frames' maps, the last step padded with its last frame as
    VideoMAE pads, renormalised. A step where nothing sounds is a zero row. ``knowledge``:
    how each source's loudness is known, as :func:`source_activity_map`. None when
    clip.json lacks what it needs (another corpus)."""
    from ..stages.direction import source_cells

    deliveries = _frame_deliveries(meta, frame_times_s, "mean", knowledge)
    if deliveries is None:
        return None
    cells = source_cells(deliveries, np.asarray(directions))
    pad = -len(cells) % tubelet
    if pad:
        cells = np.concatenate([cells, np.repeat(cells[-1:], pad, axis=0)])
    steps = cells.reshape(-1, tubelet, cells.shape[-1]).mean(axis=1)
    mass = steps.sum(axis=1, keepdims=True)
    return np.divide(steps, mass, out=np.zeros_like(steps), where=mass > 0).astype(np.float32)


def activity_source_loss(
    video_maps: torch.Tensor, source_maps: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """1 - the correlation over time (as the joint model measures the activity part:
    :func:`swansphere.models.svac.standardise_over_time`) of the video activity maps
    (B, F, S) and the sources' maps (B, F, S) (:func:`source_activity_map`), averaged over
    the ``valid`` (B,) clips whose sources' map changes over the window. Returns (loss,
    mean correlation); both 0 when no clip is valid."""
    if video_maps.shape != source_maps.shape or video_maps.ndim != 3:
        raise InputError(
            f"activity maps must both be (B, F, S); got {tuple(video_maps.shape)} and "
            f"{tuple(source_maps.shape)}"
        )
    # Powers span decades from clip to clip: bring each map to unit RMS first, so that
    # the standardisation's epsilon is small beside every clip's variation.
    scale = source_maps.square().sum(dim=-1).mean(dim=1).sqrt().clamp_min(1e-30)
    source_maps = source_maps / scale[:, None, None]
    centred = source_maps - source_maps.mean(dim=1, keepdim=True)
    keep = valid & (centred.square().sum(dim=-1).mean(dim=1).sqrt() > 1e-3)
    if not bool(keep.any()):
        zero = video_maps.sum() * 0.0
        return zero, zero.detach()
    corr = (
        (standardise_over_time(video_maps[keep]) * standardise_over_time(source_maps[keep]))
        .sum(dim=-1)
        .mean(dim=-1)
    )
    return 1.0 - corr.mean(), corr.mean().detach()
