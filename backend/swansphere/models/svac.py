"""SVAC: Spatial Video-Audio Contrastive encoders (one definition for training and serving).

Two encoders map a panorama video and an FOA clip into one 512-d space, frame by frame:

* :class:`VideoEncoder` -- a VideoMAE ViT (transformers' ``VideoMAEModel``; VideoMAE-V2
  weights in that format load with :meth:`VideoEncoder.from_pretrained`) over
  equirectangular RGB frames (the convention of :mod:`swansphere.foa.panorama`: the
  centre column is the front). One feature per temporal tubelet (``tubelet`` frames),
  the mean of that tubelet's patch tokens; the token grid itself stays available
  (:meth:`VideoEncoder.tokens`) for direction-aware conditioning of the generator.
* :class:`AudioEncoder` -- an AudioMAE-style ViT over :func:`foa_features` (log-mel of
  W, Y, Z, X plus three normalised intensity maps) of AmbiX FOA (ACN W, Y, Z, X; SN3D).
  Patches span ``audio_freq_patch`` mel bands by ``latent_hop / feature_hop`` frames, so
  one token column is one FOA-VAE latent frame (21.53 frames/s); the output feature of a
  frame is the mean of its column.
* :class:`ProjectionHead` -- MLPs into the shared space, L2-normalised per frame; the
  :class:`TextHead` puts 384-d caption embeddings (:mod:`swansphere.models.text`) there too.
* :class:`SpatialCode` (presets ``tiny`` and ``paper``; ``spatial_weight`` > 0) -- where
  the sound is, as real spherical-harmonic coefficients of orders 1-3 (15 of the 512
  dimensions): measured from the FOA's intensity on the audio side, a learned saliency
  over the token grid on the video side. A mean-pooled content vector alone could not
  tell a clip from its own 45 deg rotations (rotation_top1 was at chance); a code that
  rotates with the FOA by construction can. With ``cue_share`` > 0 the SVAC carries a
  frozen copy of the video direction cue (:mod:`swansphere.models.direction`) and the
  code's saliency mixes in its cell map (:meth:`SVAC.code_saliency`).
* :class:`ActivityMap` (preset ``tiny``; ``activity_weight`` > 0) -- what gets louder
  where, frame by frame: harmonics of orders 0-3 of the rise in level of every mel band
  along its intensity (audio, measured) and of a learned per-cell pulse of the video
  frames (video), standardised over the clip. Its part of the similarity is a correlation
  over time, so it sees circular time shifts and rotations that a clip-static code cannot.

Video features come at fps / tubelet steps per second; :func:`replicate_to_audio_rate`
repeats them, nearest neighbour in time, at the audio frame rate, so that both sides are
compared frame by frame (the paper's temporally aligned cosine similarity). Both streams
must span the same time window.

Paper (DESIGN.md section 4): VideoMAE-V2 and AudioMAE encoders, frozen when pretrained,
trained projection heads, 512-d space, temperature 0.07. The spatial code is ours. The
contrastive loss and its negatives live in ``swansphere_training.losses.svac``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import VideoMAEConfig, VideoMAEModel

from swansphere.errors import InputError
from swansphere.foa.harmonics import (
    harmonic_orders,
    harmonics_count,
    real_spherical_harmonics,
)
from swansphere.foa.panorama import grid_directions
from swansphere.models.config import config_from_dict
from swansphere.models.direction import VideoDirectionConfig, VideoDirectionCue
from swansphere.models.features import (
    FOA_FEATURE_CHANNELS,
    INTENSITY_CHANNELS,
    LOGMEL_CHANNELS,
    foa_features,
)

# VideoMAE(-V2) was pretrained on frames normalised with the ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Log-mel maps enter the audio encoder as (dB - clip mean of W's dB) / this many dB.
LOGMEL_SCALE_DB = 20.0

# SVACConfig.content_pooling's choices.
CONTENT_POOLINGS = ("shared", "detached", "own")


@dataclass(frozen=True)
class SVACConfig:
    """Sizes of the SVAC networks. Presets in :data:`SVAC_PRESETS`; defaults are ``tiny``."""

    # --- audio input and encoder
    sample_rate: int = 22050  # Hz of the FOA the audio encoder takes
    latent_hop: int = 1024  # samples per output audio frame = one FOA-VAE latent frame
    feature_hop: int = 512  # samples per feature frame; latent_hop must be a multiple
    n_fft: int = 1024  # FFT size of the features (Hann window)
    n_mels: int = 32  # mel bands of the features
    audio_freq_patch: int = 8  # mel bands per audio patch (n_mels must be a multiple)
    audio_dim: int = 128  # transformer width of the audio encoder
    audio_layers: int = 2  # transformer blocks of the audio encoder
    audio_heads: int = 4  # attention heads of the audio encoder
    audio_mlp_ratio: float = 2.0  # feed-forward width / audio_dim
    # --- video input and encoder (VideoMAE)
    video_height: int = 64  # equirectangular frame height fed to VideoMAE (pixels)
    video_width: int = 128  # equirectangular frame width (2:1 for a full panorama)
    video_window: int = 8  # frames per VideoMAE pass (its num_frames); longer videos go
    #                        through in consecutive windows
    video_tubelet: int = 2  # frames per temporal patch = per video feature step
    video_patch: int = 16  # spatial patch side in pixels
    video_dim: int = 128  # VideoMAE hidden size
    video_layers: int = 2  # VideoMAE blocks
    video_heads: int = 4  # VideoMAE attention heads
    video_intermediate: int = 256  # VideoMAE feed-forward width
    # --- shared space
    embed_dim: int = 512  # joint embedding width (paper: 512)
    text_dim: int = 384  # caption embedding width (MiniLM: 384)
    head_hidden: int = 512  # hidden width of the projection MLPs
    temperature: float = 0.07  # InfoNCE temperature (paper: 0.07)
    freeze_video: bool = False  # freeze the VideoMAE backbone (paper: when pretrained)
    freeze_audio: bool = False  # freeze the audio transformer (paper: when pretrained)
    # --- spatial code (see SpatialCode); 0 leaves it out: the embedding is content only
    spatial_weight: float = 0.0  # share of the cosine similarity given to the spatial code
    spatial_order: int = 3  # spherical-harmonic order of the spatial code
    level_scale_db: float = 10.0  # initial dB per nat of the audio code's band weights
    # --- activity map (see ActivityMap); 0 leaves it out
    activity_weight: float = 0.0  # share of the similarity given to the activity map
    activity_dim: int = 32  # width of the activity map's own per-frame patch embedding
    # The activity map's pulse also reads its cell's VideoMAE token (what the object is,
    # so how loud its kind tends to be), not only how the cell's pixels change.
    activity_tokens: bool = False
    # Video frame f is the instant f / fps (True; see replicate_to_audio_rate), not the
    # interval [f, f + 1) / fps (False: the convention of bundles before this field).
    frame_timestamps: bool = False
    # The spatial code (and the content pooling) reads the saliency refined by a layer of
    # its own that starts at zero; the generator's conditioning keeps the plain saliency
    # (SVAC.video_saliency), so a bundle's generator stays valid while the code improves.
    saliency_refine: bool = False
    # What pools the video content over the token grid when there is a spatial code:
    # "shared", the code's saliency, moved by the content's losses as well as the code's;
    # "detached", the code's saliency, moved by the code's losses only; "own", a saliency
    # MLP of the content's own over the same cell features. The content's own shift loss
    # (the SVAC stage's content_shift_weight) pulls a shared saliency away from where the
    # spatial code needs it.
    content_pooling: str = "shared"
    # The spatial code's saliency takes this share from the video direction cue's cell map
    # (swansphere.models.direction: a supervised localiser that reads what moves and
    # pulses over several seconds), the rest from its own: 0 leaves the cue out. The SVAC
    # carries a frozen copy of the cue, whose VideoDirectionConfig fields ``cue`` holds.
    cue_share: float = 0.0
    cue: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive = [
            f.name
            for f in dataclasses.fields(self)
            if f.type in ("int", "float")
            and f.name not in ("spatial_weight", "activity_weight", "cue_share")
            and not getattr(self, f.name) > 0
        ]
        if positive:
            raise InputError(f"SVACConfig fields must be positive: {', '.join(positive)}")
        checks = [
            (
                0.0 <= self.spatial_weight < 1.0,
                f"spatial_weight must be in [0, 1), got {self.spatial_weight}",
            ),
            (
                0.0 <= self.activity_weight and self.spatial_weight + self.activity_weight < 1.0,
                "activity_weight must be >= 0 and leave content a share (spatial_weight + "
                f"activity_weight < 1), got {self.activity_weight} + {self.spatial_weight}",
            ),
            (
                self.latent_hop % self.feature_hop == 0,
                "latent_hop must be a multiple of "
                f"feature_hop ({self.latent_hop} vs {self.feature_hop})",
            ),
            (
                self.n_fft >= self.feature_hop,
                f"n_fft {self.n_fft} < feature_hop {self.feature_hop}",
            ),
            (
                self.n_mels % self.audio_freq_patch == 0,
                f"n_mels {self.n_mels} is not a "
                f"multiple of audio_freq_patch {self.audio_freq_patch}",
            ),
            (
                self.audio_dim % self.audio_heads == 0,
                f"audio_dim {self.audio_dim} is not a multiple of audio_heads {self.audio_heads}",
            ),
            (
                self.video_dim % self.video_heads == 0,
                f"video_dim {self.video_dim} is not a multiple of video_heads {self.video_heads}",
            ),
            (
                self.video_height % self.video_patch == 0
                and self.video_width % self.video_patch == 0,
                f"video size {self.video_height}x{self.video_width} is not a multiple of "
                f"video_patch {self.video_patch}",
            ),
            (
                self.embed_dim > self.spatial_dim + self.map_dim,
                f"embed_dim {self.embed_dim} leaves no room for content beside the "
                f"{self.spatial_dim}-d spatial code and the {self.map_dim}-d activity map",
            ),
            (
                self.video_window % self.video_tubelet == 0,
                f"video_window {self.video_window} "
                f"is not a multiple of video_tubelet {self.video_tubelet}",
            ),
            (
                self.content_pooling in CONTENT_POOLINGS,
                f"content_pooling must be one of {CONTENT_POOLINGS}, got {self.content_pooling!r}",
            ),
            (
                self.content_pooling == "shared" or self.spatial_weight > 0,
                f"content_pooling {self.content_pooling!r} needs a spatial code "
                "(spatial_weight > 0): without one the content is the mean over the grid",
            ),
            (
                0.0 <= self.cue_share <= 1.0,
                f"cue_share must be in [0, 1], got {self.cue_share}",
            ),
            (
                self.cue_share == 0 or self.spatial_weight > 0,
                "cue_share needs a spatial code (spatial_weight > 0): the cue feeds its saliency",
            ),
            (
                isinstance(self.cue, dict) and (self.cue_share > 0 or not self.cue),
                "cue (the direction cue's config) goes with cue_share > 0 and must be a dict",
            ),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise InputError("invalid SVACConfig: " + "; ".join(problems))
        if self.cue_share > 0:
            rows, cols = self.cue_config.grid
            grid = self.token_grid
            if rows % grid[0] or cols % grid[1]:
                raise InputError(
                    f"invalid SVACConfig: the cue's {rows} x {cols} cells do not tile the "
                    f"{grid[0]} x {grid[1]} token grid"
                )

    @property
    def token_grid(self) -> tuple[int, int]:
        """(rows, columns) of the video token grid: rows top to bottom, columns left to
        right (:func:`grid_directions`)."""
        return self.video_height // self.video_patch, self.video_width // self.video_patch

    @property
    def cue_config(self) -> VideoDirectionConfig:
        """The carried direction cue's network config (its defaults where ``cue`` is silent)."""
        return VideoDirectionConfig.from_dict(self.cue)

    @property
    def time_patch(self) -> int:
        """Feature frames merged into one audio token along time."""
        return self.latent_hop // self.feature_hop

    @property
    def freq_tokens(self) -> int:
        """Audio tokens per time step (mel bands / patch height)."""
        return self.n_mels // self.audio_freq_patch

    @property
    def spatial_dim(self) -> int:
        """Dimensions of the joint embedding taken by the spatial code (0 when it is off):
        the real spherical harmonics of orders 1 to ``spatial_order``."""
        return harmonics_count(self.spatial_order) - 1 if self.spatial_weight > 0 else 0

    @property
    def map_dim(self) -> int:
        """Dimensions of the joint embedding taken by the activity map (0 when it is off):
        the real spherical harmonics of orders 0 to ``spatial_order``."""
        return harmonics_count(self.spatial_order) if self.activity_weight > 0 else 0

    @property
    def content_dim(self) -> int:
        """Dimensions of the joint embedding taken by the learned content heads."""
        return self.embed_dim - self.spatial_dim - self.map_dim

    @property
    def content_weight(self) -> float:
        """Share of the similarity given to the learned content: what the spatial code and
        the activity map leave (1 - spatial_weight - activity_weight)."""
        return 1.0 - self.spatial_weight - self.activity_weight

    def parts(self) -> dict[str, slice]:
        """Where each part lies in a joint embedding: content first, then the spatial code,
        then the activity map (only the parts that are on)."""
        out = {"content": slice(0, self.content_dim)}
        if self.spatial_dim:
            out["spatial"] = slice(self.content_dim, self.content_dim + self.spatial_dim)
        if self.map_dim:
            out["activity"] = slice(self.embed_dim - self.map_dim, self.embed_dim)
        return out

    @property
    def audio_rate_hz(self) -> float:
        """Audio frames (and latent frames) per second."""
        return self.sample_rate / self.latent_hop

    def audio_frames(self, num_samples: int) -> int:
        """Audio frames of a clip of ``num_samples`` samples: ceil(num_samples / latent_hop)."""
        return -(-int(num_samples) // self.latent_hop)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the fields (for a checkpoint's config)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SVACConfig:
        """Inverse of :meth:`to_dict`; InputError names unknown fields."""
        return config_from_dict(cls, data)


SVAC_PRESETS: dict[str, SVACConfig] = {
    # CPU tests and the shipped bundle: 22.05 kHz (VAE 1024x), 64x128 panoramas, 2 blocks.
    "tiny": SVACConfig(spatial_weight=0.4, activity_weight=0.3, frame_timestamps=True),
    # Paper scale: 44.1 kHz (VAE 2048x), ViT-B video (VideoMAE-V2 base, 16-frame windows,
    # 224x448 panoramas) and a ViT-B audio encoder over 128 mels, 16 bands x 4 frames per
    # patch. Set freeze_video / freeze_audio after loading pretrained backbones.
    "paper": SVACConfig(
        sample_rate=44100,
        latent_hop=2048,
        feature_hop=512,
        n_fft=2048,
        n_mels=128,
        audio_freq_patch=16,
        audio_dim=768,
        audio_layers=12,
        audio_heads=12,
        audio_mlp_ratio=4.0,
        video_height=224,
        video_width=448,
        video_window=16,
        video_tubelet=2,
        video_patch=16,
        video_dim=768,
        video_layers=12,
        video_heads=12,
        video_intermediate=3072,
        head_hidden=1024,
        spatial_weight=0.4,
        activity_weight=0.3,
        frame_timestamps=True,
    ),
}


# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------


def replicate_to_audio_rate(
    video_feats: torch.Tensor, n_audio_frames: int, tubelet: int | None = None
) -> torch.Tensor:
    """Repeat video features (B, Tv, D) at the audio frame rate: (B, n_audio_frames, D).

    Both sequences span the same window; audio frame i is centred at (i + 0.5) / Ta of it
    (:func:`swansphere.models.features.foa_stft` centres its frames so). Each audio frame
    takes the nearest video item:

    * ``tubelet`` k: the items are tubelets of k frames and frame f is the instant f / F of
      the window (as decoded video is: a frame's timestamp is its start, and the corpus's
      pulse at frame f is the loudness around f / fps), so item j is centred at
      (j k + (k - 1) / 2) / F: j = floor((i + 0.5) Tv / Ta + 1 / (2k)).
    * None (bundles before that convention): items are intervals [j, j + 1) / Tv, so
      j = floor((i + 0.5) Tv / Ta), half a frame later than the first.

    An exact tie goes to the later item.
    """
    if video_feats.ndim != 3 or video_feats.shape[1] < 1:
        raise InputError(f"video features must be (B, Tv >= 1, D), got {tuple(video_feats.shape)}")
    if n_audio_frames < 1:
        raise InputError(f"n_audio_frames must be >= 1, got {n_audio_frames}")
    if tubelet is not None and tubelet < 1:
        raise InputError(f"tubelet must be >= 1 frame, got {tubelet}")
    tv = video_feats.shape[1]
    centres = torch.arange(n_audio_frames, device=video_feats.device, dtype=torch.float64) + 0.5
    position = centres * tv / n_audio_frames + (0.0 if tubelet is None else 0.5 / tubelet)
    index = torch.clamp(torch.floor(position).long(), max=tv - 1)
    return video_feats[:, index]


def pool_cell_map(
    power: torch.Tensor, cells: tuple[int, int], grid: tuple[int, int], tubelet: int
) -> torch.Tensor:
    """Per-frame powers (B, F, R*C) >= 0 over a grid of R x C cells -> a saliency
    (B, ceil(F / tubelet), r*c) over a coarser r x c grid whose cells each cover whole
    R/r x C/c blocks; both grids in raster order (rows top to bottom, columns left to
    right, as :func:`grid_directions`). Each coarse cell sums its block; each step averages
    its tubelet's frames (the last padded by repeating its last frame, as VideoMAE's
    windows are) and is normalised to sum to 1 (uniform where the whole map is zero)."""
    (rows, cols), (r, c) = cells, grid
    batch, frames, count = power.shape
    if count != rows * cols or rows % r or cols % c:
        raise InputError(
            f"cannot pool powers {tuple(power.shape)} on {rows} x {cols} cells onto {r} x {c}"
        )
    x = power.reshape(batch, frames, r, rows // r, c, cols // c).sum(dim=(3, 5))
    x = x.reshape(batch, frames, r * c)
    pad = -frames % tubelet
    if pad:
        x = torch.cat([x, x[:, -1:].expand(-1, pad, -1)], dim=1)
    x = x.reshape(batch, -1, tubelet, r * c).mean(dim=2)
    total = x.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(x, 1.0 / (r * c))
    return torch.where(total > 0, x / total.clamp_min(1e-12), uniform)


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Transformer sine/cosine position table (length, dim), float32."""
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    freqs = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim)
    )
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * freqs)
    table[:, 1::2] = torch.cos(position * freqs[: dim // 2])
    return table


def _set_frozen(module: nn.Module, frozen: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(not frozen)


# --------------------------------------------------------------------------------------
# Video encoder
# --------------------------------------------------------------------------------------


def videomae_config(config: SVACConfig) -> VideoMAEConfig:
    """The transformers ``VideoMAEConfig`` of an SVAC preset's video backbone."""
    return VideoMAEConfig(
        image_size=[config.video_height, config.video_width],
        patch_size=config.video_patch,
        num_channels=3,
        num_frames=config.video_window,
        tubelet_size=config.video_tubelet,
        hidden_size=config.video_dim,
        num_hidden_layers=config.video_layers,
        num_attention_heads=config.video_heads,
        intermediate_size=config.video_intermediate,
        use_mean_pooling=True,  # VideoMAE-V2 layout: no final LayerNorm inside the backbone
    )


def _check_pretrained_dir(path: str | Path) -> Path:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise InputError(
            f"{path} is not a local transformers model directory (config.json missing); "
            "pretrained weights load from disk only, never from the hub"
        )
    return path


class VideoEncoder(nn.Module):
    """VideoMAE over equirectangular video: tokens (B, t, h*w, D) and features (B, t, D).

    ``backbone_config`` fixes the frame size (``image_size``), the window length
    (``num_frames``), tubelet and patch sizes. A frozen backbone keeps its weights and
    stays in eval mode; the output LayerNorm is always trained.
    """

    def __init__(self, backbone_config: VideoMAEConfig, freeze: bool = False) -> None:
        super().__init__()
        self.backbone = VideoMAEModel(backbone_config)
        self.norm = nn.LayerNorm(backbone_config.hidden_size)
        self.register_buffer(
            "pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1), persistent=False
        )
        self.frozen = False
        self.freeze(freeze)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        freeze: bool = True,
        image_size: tuple[int, int] | None = None,
        window: int | None = None,
    ) -> VideoEncoder:
        """Load a VideoMAE(-V2) backbone saved in transformers format in a local directory.

        path: directory with config.json and weights (``save_pretrained`` layout; a
        VideoMAE-V2 ViT converted to ``VideoMAEModel`` keys). Checkpoints of the
        pretraining or classification heads load too (their backbone part).
        image_size: (height, width) to run at instead of the checkpoint's; window: frames
        per pass. VideoMAE's position table is a fixed sinusoid, so both change without
        touching the weights. Never contacts the hub.
        """
        path = _check_pretrained_dir(path)
        overrides: dict[str, Any] = {}
        if image_size is not None:
            overrides["image_size"] = [int(image_size[0]), int(image_size[1])]
        if window is not None:
            overrides["num_frames"] = int(window)
        backbone = VideoMAEModel.from_pretrained(str(path), local_files_only=True, **overrides)
        encoder = cls(backbone.config, freeze=False)
        encoder.backbone.load_state_dict(backbone.state_dict())
        encoder.freeze(freeze)
        return encoder

    def freeze(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) the backbone weights; a frozen backbone runs in eval mode."""
        self.frozen = bool(frozen)
        _set_frozen(self.backbone, self.frozen)
        if self.frozen:
            self.backbone.eval()

    def train(self, mode: bool = True) -> VideoEncoder:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    @property
    def dim(self) -> int:
        """Token width D."""
        return int(self.backbone.config.hidden_size)

    @property
    def window(self) -> int:
        """Frames per VideoMAE pass."""
        return int(self.backbone.config.num_frames)

    @property
    def tubelet(self) -> int:
        """Frames per feature step."""
        return int(self.backbone.config.tubelet_size)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the frames VideoMAE takes."""
        size = self.backbone.embeddings.patch_embeddings.image_size
        return int(size[0]), int(size[1])

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of the spatial token grid: rows top to bottom, columns left to right."""
        patch = self.backbone.embeddings.patch_embeddings.patch_size
        height, width = self.frame_size
        return height // int(patch[0]), width // int(patch[1])

    def time_steps(self, num_frames: int) -> int:
        """Feature steps of a video of ``num_frames`` frames: ceil(num_frames / tubelet)."""
        return -(-int(num_frames) // self.tubelet)

    def pixels(self, video: torch.Tensor) -> torch.Tensor:
        """Normalised float frames (B, F, 3, H, W) at the backbone's frame size."""
        if not isinstance(video, torch.Tensor) or video.ndim != 5 or video.shape[2] != 3:
            shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video)
            raise InputError(f"video must be a tensor (B, F, 3, H, W) of RGB frames, got {shape}")
        if video.shape[0] < 1 or video.shape[1] < 1:
            raise InputError(
                f"video needs at least one clip and one frame, got {tuple(video.shape)}"
            )
        dtype = self.pixel_mean.dtype
        x = video.to(dtype) / 255.0 if video.dtype == torch.uint8 else video.to(dtype)
        batch, frames = x.shape[:2]
        if tuple(x.shape[-2:]) != self.frame_size:
            # Resize to the backbone's frame size (antialiased); panoramas stay panoramas.
            x = nn.functional.interpolate(
                x.reshape(batch * frames, 3, *x.shape[-2:]),
                size=self.frame_size,
                mode="bilinear",
                align_corners=False,
                antialias=True,
            ).reshape(batch, frames, 3, *self.frame_size)
        return (x - self.pixel_mean) / self.pixel_std

    def tokens(self, video: torch.Tensor) -> torch.Tensor:
        """Patch tokens (B, t, h*w, D) of video (B, F, 3, H, W), t = ceil(F / tubelet).

        video: uint8 RGB in [0, 255] or float in [0, 1]; frames of another size are
        resized to :attr:`frame_size`. Frames go through in windows of :attr:`window`; the
        last window is padded by repeating the last frame and its padded steps dropped.
        Tokens of one step are in raster order (rows top to bottom, columns left to right
        of :attr:`grid`), after the output LayerNorm.
        """
        return self.encode(self.pixels(video))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, t, h*w, D) of frames already through :meth:`pixels` (B, F, 3, H, W)."""
        batch, frames = x.shape[:2]
        windows = -(-frames // self.window)
        pad = windows * self.window - frames
        if pad:
            x = torch.cat([x, x[:, -1:].expand(batch, pad, *x.shape[2:])], dim=1)
        x = x.reshape(batch * windows, self.window, *x.shape[2:])
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            hidden = self.backbone(pixel_values=x).last_hidden_state  # (B*n, t_w*h*w, D)
        h, w = self.grid
        steps_per_window = self.window // self.tubelet
        hidden = hidden.reshape(batch, windows * steps_per_window, h * w, self.dim)
        return self.norm(hidden[:, : self.time_steps(frames)])

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Per-step features (B, t, D) of video (B, F, 3, H, W): the mean of each step's tokens."""
        return self.tokens(video).mean(dim=2)


# --------------------------------------------------------------------------------------
# Audio encoder
# --------------------------------------------------------------------------------------


class AudioEncoder(nn.Module):
    """AudioMAE-style ViT over FOA features: tokens (B, t, f, D) and features (B, t, D).

    Patches of ``audio_freq_patch`` mel bands x ``time_patch`` feature frames (a linear
    patch embedding, as a strided convolution) get a learned frequency embedding and a
    sinusoidal time embedding (any clip length), then a pre-norm transformer encoder.
    """

    def __init__(self, config: SVACConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.audio_dim
        patch = (config.audio_freq_patch, config.time_patch)
        self.patch_embed = nn.Conv2d(FOA_FEATURE_CHANNELS, dim, kernel_size=patch, stride=patch)
        self.freq_pos = nn.Parameter(torch.zeros(1, 1, config.freq_tokens, dim))
        nn.init.trunc_normal_(self.freq_pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim,
            config.audio_heads,
            int(round(dim * config.audio_mlp_ratio)),
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, config.audio_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.frozen = False
        self.freeze(config.freeze_audio)

    def freeze(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) everything but the output LayerNorm."""
        self.frozen = bool(frozen)
        for module in (self.patch_embed, self.blocks):
            _set_frozen(module, self.frozen)
        self.freq_pos.requires_grad_(not self.frozen)

    def features(self, foa: torch.Tensor) -> torch.Tensor:
        """Normalised encoder input (B, 7, n_mels, t * time_patch) of FOA (B, 4, T).

        The FOA is zero-padded to a whole number of latent hops, so t = ceil(T / latent_hop).
        Log-mel maps become (dB - the clip's mean W dB) / 20 dB: level-independent, with the
        dipoles' level relative to W kept; intensity maps pass unchanged.
        """
        c = self.config
        if not isinstance(foa, torch.Tensor) or foa.ndim != 3 or foa.shape[1] != 4:
            shape = tuple(foa.shape) if isinstance(foa, torch.Tensor) else type(foa)
            raise InputError(f"FOA must be a tensor (B, 4, T) in ACN order, got {shape}")
        samples = c.audio_frames(foa.shape[-1]) * c.latent_hop
        x = nn.functional.pad(foa.float(), (0, samples - foa.shape[-1]))
        with torch.no_grad():
            feats = foa_features(x, c.sample_rate, c.n_mels, c.feature_hop, c.n_fft)
        log_mel = feats[:, LOGMEL_CHANNELS]
        reference = log_mel[:, :1].mean(dim=(2, 3), keepdim=True)
        return torch.cat(
            [(log_mel - reference) / LOGMEL_SCALE_DB, feats[:, INTENSITY_CHANNELS]], dim=1
        )

    def tokens(self, foa: torch.Tensor) -> torch.Tensor:
        """Tokens (B, t, f, D) of FOA (B, 4, T): t = ceil(T / latent_hop), f = freq_tokens."""
        return self.encode(self.features(foa))

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Tokens (B, t, f, D) of encoder input (B, 7, n_mels, t * time_patch) from
        :meth:`features`."""
        x = self.patch_embed(features)  # (B, D, f, t)
        batch, dim, f, t = x.shape
        x = x.permute(0, 3, 2, 1)  # (B, t, f, D)
        x = x + self.freq_pos + sinusoidal_positions(t, dim, x.device)[None, :, None, :]
        x = self.blocks(x.reshape(batch, t * f, dim))
        return self.norm(x).reshape(batch, t, f, dim)

    def forward(self, foa: torch.Tensor) -> torch.Tensor:
        """Per-frame features (B, t, D) of FOA (B, 4, T): the mean over each frame's bands."""
        return self.tokens(foa).mean(dim=2)


# --------------------------------------------------------------------------------------
# Spatial code
# --------------------------------------------------------------------------------------


def grid_harmonics(config: SVACConfig) -> torch.Tensor:
    """Real spherical harmonics (cells, (spatial_order + 1)^2), ACN, orthonormal, of the
    centres of the video token grid's cells in raster order (:func:`grid_directions`)."""
    directions = torch.from_numpy(grid_directions(*config.token_grid))
    return real_spherical_harmonics(directions, config.spatial_order)


def cell_logit_mlp(dim: int) -> nn.Module:
    """An MLP of a cell's features (..., 4 dim) (:func:`cell_features_against`) to one logit
    (..., 1); a softmax of the logits over the cells makes a saliency."""
    return nn.Sequential(
        nn.LayerNorm(4 * dim), nn.Linear(4 * dim, dim), nn.GELU(), nn.Linear(dim, 1)
    )


def cell_features_against(
    tokens: torch.Tensor,
    local: torch.Tensor,
    tokens_mean: torch.Tensor,
    local_mean: torch.Tensor,
) -> torch.Tensor:
    """A saliency's input per cell, (..., cells, 4 D): [VideoMAE token, patch embedding,
    each one's departure from the mean given (broadcastable), what pulses or moves]."""
    return torch.cat([tokens, local, tokens - tokens_mean, local - local_mean], dim=-1)


class SpatialCode(nn.Module):
    """Where the sound comes from, as a unit vector of real spherical-harmonic coefficients.

    Orders 1 to ``spatial_order`` (ACN, orthonormal, :mod:`swansphere.foa.harmonics`);
    order 0 is left out, being the same for every map.

    * Audio (measured): every mel band of every feature frame points along its normalised
      active intensity (|I| <= 1; 1 for a single plane wave). Bands are weighted by a
      softmax, over one audio frame's bands and feature frames, of level / scale + band
      bias + log |I|: loud, directional bands count most. Code = sum of weight x Y(d).
      Rotating the FOA rotates this code exactly, since harmonics of one order only mix
      among themselves.
    * Video (learned): a saliency over the token grid, softmax over cells of an MLP of each
      VideoMAE token, of a patch embedding of the same pixels of its own, and of both
      one's departure from the clip's mean of that cell (what pulses or moves). Code = sum
      of saliency x Y(cell centre).

    Each order is then scaled by a learned positive gain (a zonal smoothing of the map, by
    Funk-Hecke) and the code L2-normalised, so that the cosine of two codes compares the
    two direction maps over the whole sphere.

    With ``saliency_refine`` the code's own saliency adds a second MLP of the same cell
    features to the saliency logits (:meth:`saliency_against` with ``refined``). It starts
    at zero, so the code starts as it was; the saliency the generator is conditioned on
    never reads it.
    """

    def __init__(self, config: SVACConfig) -> None:
        super().__init__()
        self.order = config.spatial_order
        self.register_buffer("cell_harmonics", grid_harmonics(config)[:, 1:], persistent=False)
        self.register_buffer("orders", harmonic_orders(self.order)[1:] - 1, persistent=False)
        dim = config.video_dim
        # A patch embedding of its own (as VideoMAE's: one tubelet x patch per token), so
        # that the saliency sees raw pixels even when the VideoMAE tokens are frozen.
        self.tubelet = config.video_tubelet
        self.pixel_embed = nn.Conv3d(
            3,
            dim,
            kernel_size=(config.video_tubelet, config.video_patch, config.video_patch),
            stride=(config.video_tubelet, config.video_patch, config.video_patch),
        )
        self.saliency = cell_logit_mlp(dim)
        self.refine = None
        if config.saliency_refine:
            self.refine = cell_logit_mlp(dim)
            nn.init.zeros_(self.refine[-1].weight)
            nn.init.zeros_(self.refine[-1].bias)
        self.band_bias = nn.Parameter(torch.zeros(config.n_mels))
        self.log_level_scale = nn.Parameter(torch.tensor(math.log(config.level_scale_db)))
        # softplus(0.5413) = 1: every order starts with gain 1.
        self.order_gain = nn.Parameter(torch.full((self.order,), math.log(math.e - 1.0)))
        self.time_patch = config.time_patch

    def _finish(self, code: torch.Tensor) -> torch.Tensor:
        gains = nn.functional.softplus(self.order_gain)[self.orders]
        return nn.functional.normalize(code * gains, dim=-1)

    def pixel_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Patch embeddings (B, t, cells, D) of normalised frames (B, F, 3, H, W) at the
        VideoMAE frame size (:meth:`VideoEncoder.pixels`); the last tubelet is padded by
        repeating the last frame, as VideoMAE's windows are."""
        frames = pixels.shape[1]
        pad = -frames % self.tubelet
        if pad:
            pixels = torch.cat([pixels, pixels[:, -1:].expand(-1, pad, -1, -1, -1)], dim=1)
        x = self.pixel_embed(pixels.transpose(1, 2))  # (B, D, t, h, w)
        return x.flatten(3).permute(0, 2, 3, 1)

    def video_saliency(
        self, tokens: torch.Tensor, pixels: torch.Tensor, refined: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Saliency (B, t, cells) of VideoMAE tokens (B, t, cells, D) and the frames they
        came from (B, F, 3, H, W), normalised: each step sums to 1 over the cells. Also
        returns the departure (B, t, cells, D) of the patch embedding from its clip mean.
        ``refined``: the code's own saliency, not the generator's (:meth:`saliency_against`)."""
        features, departure = self.cell_features(tokens, pixels)
        return self.saliency_of(features, refined), departure

    def cell_features(
        self, tokens: torch.Tensor, pixels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the saliency reads of each cell, (B, t, cells, 4 D): [VideoMAE token, patch
        embedding, each one's departure from its clip mean], of tokens (B, t, cells, D) and
        the frames (B, F, 3, H, W) they came from; also the patch embedding's departure."""
        local = self.pixel_tokens(pixels)
        means = [x.mean(dim=1, keepdim=True) for x in (tokens, local)]
        return cell_features_against(tokens, local, *means), local - means[1]

    def saliency_of(self, features: torch.Tensor, refined: bool = False) -> torch.Tensor:
        """Saliency (..., cells), summing to 1 over the cells, of cell features
        (..., cells, 4 D) (:meth:`cell_features`); ``refined`` as in :meth:`saliency_against`."""
        logits = self.saliency(features)
        if refined and self.refine is not None:
            logits = logits + self.refine(features)
        return logits.squeeze(-1).softmax(dim=-1)

    def saliency_against(
        self,
        tokens: torch.Tensor,
        local: torch.Tensor,
        tokens_mean: torch.Tensor,
        local_mean: torch.Tensor,
        refined: bool = False,
    ) -> torch.Tensor:
        """Saliency (..., cells), summing to 1 over the cells, of VideoMAE tokens and this
        code's patch embeddings (..., cells, D) of the same frames, given the means
        (broadcastable) that their departures are measured from: the clip's mean in
        training, a causal running mean when streaming (the generator's conditioning).
        ``refined``: the saliency the code itself reads, with ``saliency_refine`` the
        softmax of both MLPs' logits summed (else the same)."""
        features = cell_features_against(tokens, local, tokens_mean, local_mean)
        return self.saliency_of(features, refined)

    def video(self, saliency: torch.Tensor) -> torch.Tensor:
        """Unit codes (B, t, spatial_dim) of a saliency over the token grid (B, t, cells)."""
        return self._finish(saliency @ self.cell_harmonics)

    def audio(self, features: torch.Tensor) -> torch.Tensor:
        """Unit codes (B, Ta, spatial_dim) of audio-encoder input (B, 7, n_mels, Ta * time_patch)
        (:meth:`AudioEncoder.features`: channel 0 is W's log-mel relative to the clip mean, in
        units of LOGMEL_SCALE_DB; channels 4-6 the normalised intensity along Y, Z, X)."""
        batch, _, mels, frames = features.shape
        level_db = features[:, 0] * LOGMEL_SCALE_DB  # (B, M, F)
        vector = features[:, [6, 4, 5]].permute(0, 2, 3, 1)  # (B, M, F, 3) as (x, y, z)
        magnitude = vector.norm(dim=-1).clamp_min(1e-6)
        logits = level_db / self.log_level_scale.exp() + self.band_bias[:, None] + magnitude.log()
        harmonics = real_spherical_harmonics(vector, self.order)[..., 1:]  # (B, M, F, S)
        steps = frames // self.time_patch

        def per_frame(x: torch.Tensor) -> torch.Tensor:  # (B, M, F, ...) -> (B, Ta, M * tp, ...)
            x = x.reshape(batch, mels, steps, self.time_patch, *x.shape[3:])
            x = x.transpose(1, 2)
            return x.reshape(batch, steps, mels * self.time_patch, *x.shape[4:])

        weights = per_frame(logits).softmax(dim=-1)
        return self._finish(torch.einsum("btk,btks->bts", weights, per_frame(harmonics)))


def standardise_over_time(maps: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Maps (B, T, S) minus their mean over time, over their root-mean-square norm over time.

    After it, mean_t |m(t)|^2 = 1 (or the map is ~0 when nothing changes), so the mean over
    time of the dot product of two standardised sequences is their correlation, in [-1, 1].
    """
    centred = maps - maps.mean(dim=1, keepdim=True)
    rms = centred.square().sum(dim=-1).mean(dim=1).sqrt()
    return centred / (rms[:, None, None] + eps)


class ActivityMap(nn.Module):
    """What gets louder where, frame by frame: real spherical harmonics, orders 0 to
    ``spatial_order`` (ACN, orthonormal), of the rise of activity over the sphere.

    * Audio (measured): every mel band of every feature frame adds its rise in level over
      the band's clip mean (dB, rectified: what starts sounding, not what stops), times a
      learned per-band gain, at its intensity direction: order 0 with weight 1, higher
      orders with weight |I| <= 1 (a diffuse band has no direction to give).
    * Video (learned): every token-grid cell of every frame adds a learned pulse, an MLP
      of how the cell's own patch embedding departs from its clip mean, at the cell centre.
      With ``activity_tokens`` the MLP's hidden layer also takes the cell's VideoMAE token
      and its departure from the clip mean, through a layer that starts at zero (so a
      bundle without it starts the same function).

    Each order gets a learned positive gain. The joint model standardises both sequences
    over the clip (:func:`standardise_over_time`) after bringing them to the audio frame
    rate, so their part of the similarity is the correlation over time of the two maps: it
    changes under circular time shifts (who pulses when) and rotations (where), unlike a
    code that stays put for a whole static clip. Distractors that pulse to a rhythm of
    their own average out of the correlation instead of having to be ignored by a saliency.
    """

    def __init__(self, config: SVACConfig) -> None:
        super().__init__()
        self.order = config.spatial_order
        self.register_buffer("cell_harmonics", grid_harmonics(config), persistent=False)
        self.register_buffer("orders", harmonic_orders(self.order), persistent=False)
        dim = config.activity_dim
        # One frame per embedding (not a tubelet): pulses are as fast as the frame rate.
        self.patch_embed = nn.Conv2d(
            3, dim, kernel_size=config.video_patch, stride=config.video_patch
        )
        self.pulse = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 1))
        self.tubelet = config.video_tubelet
        self.token_pulse = None
        if config.activity_tokens:
            self.token_pulse = nn.Linear(2 * config.video_dim, dim, bias=False)
            nn.init.zeros_(self.token_pulse.weight)
        self.band_gain = nn.Parameter(torch.zeros(config.n_mels))
        # softplus(0.5413) = 1: every order starts with gain 1.
        self.order_gain = nn.Parameter(torch.full((self.order + 1,), math.log(math.e - 1.0)))
        self.time_patch = config.time_patch

    def _gains(self) -> torch.Tensor:
        return nn.functional.softplus(self.order_gain)[self.orders]

    def video_map(self, pixels: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Maps (B, F, S) of normalised frames (B, F, 3, H, W) (:meth:`VideoEncoder.pixels`)
        before the order gains: every cell's pulse at its centre, one map per frame;
        S = (spatial_order + 1)^2. ``tokens``: the frames' VideoMAE tokens (B, t, cells, D),
        one step per tubelet, needed with ``activity_tokens``."""
        batch, frames = pixels.shape[:2]
        x = self.patch_embed(pixels.flatten(0, 1))  # (B F, D, h, w)
        x = x.flatten(2).transpose(1, 2).reshape(batch, frames, -1, x.shape[1])
        hidden = self.pulse[0](x - x.mean(dim=1, keepdim=True))
        if self.token_pulse is not None:
            if tokens is None:
                raise InputError("this activity map reads the VideoMAE tokens: pass them")
            per_frame = tokens.repeat_interleave(self.tubelet, dim=1)[:, :frames]
            departure = per_frame - per_frame.mean(dim=1, keepdim=True)
            hidden = hidden + self.token_pulse(torch.cat([per_frame, departure], dim=-1))
        pulse = self.pulse[2](self.pulse[1](hidden)).squeeze(-1)  # (B, F, cells)
        return pulse @ self.cell_harmonics

    def video(self, pixels: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Raw maps (B, F, S) of normalised frames (B, F, 3, H, W) (:meth:`VideoEncoder.pixels`),
        one per frame, with the order gains; S = (spatial_order + 1)^2 (``tokens``: as
        :meth:`video_map`)."""
        return self.video_map(pixels, tokens) * self._gains()

    def audio(self, features: torch.Tensor) -> torch.Tensor:
        """Raw maps (B, Ta, S) of audio-encoder input (B, 7, n_mels, Ta * time_patch)
        (:meth:`AudioEncoder.features`), summed over each audio frame's feature frames."""
        batch, frames = features.shape[0], features.shape[-1]
        level_db = features[:, 0] * LOGMEL_SCALE_DB  # (B, M, F)
        rise = (level_db - level_db.mean(dim=-1, keepdim=True)).clamp_min(0.0)
        weight = rise * nn.functional.softplus(self.band_gain + math.log(math.e - 1.0))[:, None]
        vector = features[:, [6, 4, 5]].permute(0, 2, 3, 1)  # (B, M, F, 3) as (x, y, z)
        harmonics = real_spherical_harmonics(vector, self.order)  # (B, M, F, S)
        directness = torch.where(
            self.orders == 0, 1.0, vector.norm(dim=-1, keepdim=True).clamp_max(1.0)
        )
        maps = torch.einsum("bmf,bmfs->bfs", weight, harmonics * directness)
        steps = frames // self.time_patch
        maps = maps.reshape(batch, steps, self.time_patch, -1).sum(dim=2)
        return maps * self._gains()


# --------------------------------------------------------------------------------------
# Heads and the joint model
# --------------------------------------------------------------------------------------


class ProjectionHead(nn.Module):
    """MLP (LayerNorm, Linear, GELU, Linear) into the joint space, L2-normalised per vector."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_dim) -> unit vectors (..., out_dim)."""
        return nn.functional.normalize(self.net(x), dim=-1)


class TextHead(ProjectionHead):
    """Caption embeddings (N, text_dim) -> unit vectors (N, embed_dim) in the SVAC space.

    A null caption (a zero input row, see :class:`swansphere.models.text.CaptionEncoder`)
    maps to a constant vector; losses leave such rows out with a mask.
    """


class SVAC(nn.Module):
    """Video, audio and text into one ``embed_dim`` space, one vector per audio frame.

    With ``spatial_weight`` w > 0 and ``activity_weight`` u > 0 a frame's embedding is
    [sqrt(1 - w - u) content, sqrt(w) spatial code, sqrt(u) activity map]: content and code
    are unit vectors (:class:`SpatialCode`), the activity map is standardised over the clip
    (:class:`ActivityMap`). The mean over time of the dot product of two sequences (the
    aligned similarity) is then (1 - w - u) x content cosine + w x spatial cosine +
    u x activity correlation, in [-1, 1]; frames are unit vectors on average over the
    clip, and exactly so without the activity map. With the spatial code the video
    content is pooled with a saliency instead of the mean over the token grid: the code's
    own, or the content's (``content_pooling``).
    """

    def __init__(self, config: SVACConfig) -> None:
        super().__init__()
        self.config = config
        self.video_encoder = VideoEncoder(videomae_config(config), freeze=config.freeze_video)
        self.audio_encoder = AudioEncoder(config)
        content = config.content_dim
        # With the spatial code the video content is [saliency-pooled VideoMAE token,
        # saliency-pooled departure of the code's own patch embedding]: the second is what
        # pulses with the sound now, which time-shift negatives need.
        video_in = config.video_dim * (2 if config.spatial_weight > 0 else 1)
        self.video_head = ProjectionHead(video_in, content, config.head_hidden)
        self.audio_head = ProjectionHead(config.audio_dim, content, config.head_hidden)
        self.text_head = TextHead(config.text_dim, config.embed_dim, config.head_hidden)
        self.spatial = SpatialCode(config) if config.spatial_weight > 0 else None
        self.activity = ActivityMap(config) if config.activity_weight > 0 else None
        # content_pooling "own" (which the config allows only with a spatial code): the
        # content's saliency over the code's cell features.
        self.content_saliency = None
        if config.content_pooling == "own":
            self.content_saliency = cell_logit_mlp(config.video_dim)
        self.cue = None
        if config.cue_share > 0:
            # Trained by its own stage on the sources' directions; never by this loss.
            self.cue = VideoDirectionCue(config.cue_config).requires_grad_(False)

    def _joint(
        self, content: torch.Tensor, code: torch.Tensor | None, maps: torch.Tensor | None
    ) -> torch.Tensor:
        """Unit content (B, T, content_dim), unit spatial code (B, T, spatial_dim) and
        activity map (B, T, map_dim) at one rate -> (B, T, E); the map is standardised here."""
        w, u = self.config.spatial_weight, self.config.activity_weight
        parts = [math.sqrt(self.config.content_weight) * content]
        if code is not None:
            parts.append(math.sqrt(w) * code)
        if maps is not None:
            parts.append(math.sqrt(u) * standardise_over_time(maps))
        return torch.cat(parts, dim=-1)

    def audio_frames(self, num_samples: int) -> int:
        """Audio frames of ``num_samples`` FOA samples (see :meth:`SVACConfig.audio_frames`)."""
        return self.config.audio_frames(num_samples)

    def video_tokens(self, video: torch.Tensor) -> torch.Tensor:
        """Direction-aware video tokens (B, t, h*w, video_dim), see :meth:`VideoEncoder.tokens`."""
        return self.video_encoder.tokens(video)

    def freeze_video_tokens(self) -> None:
        """Freeze VideoMAE and its output norm, so :meth:`video_tokens` stays what it is.

        The generator is conditioned on these tokens: an SVAC retrained this way (new
        heads, spatial code, audio encoder) still fits a generator trained before it.
        """
        self.video_encoder.freeze(True)
        self.video_encoder.norm.requires_grad_(False)

    # The weights the video saliency depends on besides the video tokens (the generator's
    # saliency input comes from them).
    SALIENCY_WEIGHTS = ("spatial.pixel_embed.", "spatial.saliency.")
    # Layers whose output starts at zero: with them the network computes what it does
    # without them, so a bundle that lacks them can start it (init_all).
    ZERO_START_WEIGHTS = ("activity.token_pulse.", "spatial.refine.")

    def freeze_saliency(self) -> None:
        """Freeze the spatial code's video side (its patch embedding and saliency MLP), so
        that with :meth:`freeze_video_tokens` :meth:`video_saliency` stays what it is: a
        generator conditioned on the saliency stays valid. The audio side still trains."""
        if self.spatial is None:
            raise InputError("this SVAC has no spatial code (spatial_weight = 0)")
        for module in (self.spatial.pixel_embed, self.spatial.saliency):
            module.requires_grad_(False)

    def video_saliency(self, video: torch.Tensor, refined: bool = False) -> torch.Tensor:
        """The saliency the generator is conditioned on: (B, t, h*w) per video step, summing
        to 1 over cells; with ``refined``, the one the spatial code reads (the same unless
        ``saliency_refine``)."""
        if self.spatial is None:
            raise InputError("this SVAC has no spatial code (spatial_weight = 0)")
        pixels = self.video_encoder.pixels(video)
        tokens = self.video_encoder.encode(pixels)
        return self.spatial.video_saliency(tokens, pixels, refined=refined)[0]

    def code_saliency(self, video: torch.Tensor) -> torch.Tensor:
        """Where the spatial code itself looks (B, t, h*w), summing to 1 over cells:
        :meth:`video_saliency` with ``refined``, mixed with the direction cue's map
        (:meth:`cue_saliency`) at ``cue_share``."""
        return self._code_saliency(self.video_saliency(video, refined=True), video)

    def cue_saliency(self, video: torch.Tensor) -> torch.Tensor:
        """The carried direction cue's per-cell powers of the video's frames (B, F, 3, H, W),
        without a caption, pooled onto the token grid per video step (B, t, h*w), summing
        to 1 over cells (:func:`pool_cell_map`)."""
        if self.cue is None:
            raise InputError("this SVAC carries no direction cue (cue_share = 0)")
        power = self.cue.cell_powers(video)
        return pool_cell_map(
            power, self.cue.config.grid, self.video_encoder.grid, self.video_encoder.tubelet
        )

    def _code_saliency(self, saliency: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """The refined saliency (B, t, h*w) with the cue's map mixed in at ``cue_share``."""
        if self.cue is None:
            return saliency
        share = self.config.cue_share
        return (1.0 - share) * saliency + share * self.cue_saliency(video)

    def embed_video(self, video: torch.Tensor, n_audio_frames: int | None = None) -> torch.Tensor:
        """Embeddings (B, Ta, E) of video (B, F, 3, H, W) at the audio frame rate.

        Without ``n_audio_frames``: at the video's own rate, (B, t, E) per feature step
        (t = ceil(F / tubelet)), or (B, F, E) per frame with an activity map.
        """
        pixels = self.video_encoder.pixels(video)
        tokens = self.video_encoder.encode(pixels)
        if self.spatial is None:
            content, code = self.video_head(tokens.mean(dim=2)), None
        else:
            features, local = self.spatial.cell_features(tokens, pixels)
            saliency = self.spatial.saliency_of(features, refined=True)
            # Only the code reads the cue (pooling the content with the cue's map too
            # lowered shift_top1 on held-out clips).
            weights = self._content_weights(saliency, features)
            pooled = (weights[..., None] * torch.cat([tokens, local], dim=-1)).sum(dim=2)
            code = self.spatial.video(self._code_saliency(saliency, video))
            content = self.video_head(pooled)
        maps = None if self.activity is None else self.activity.video(pixels, tokens)
        tubelet = self.video_encoder.tubelet
        if n_audio_frames is not None:
            # Tubelet steps and single frames are both instants-based when frame_timestamps.
            step, frame = (tubelet, 1) if self.config.frame_timestamps else (None, None)
            content, code = (
                None if x is None else replicate_to_audio_rate(x, n_audio_frames, step)
                for x in (content, code)
            )
            if maps is not None:
                maps = replicate_to_audio_rate(maps, n_audio_frames, frame)
        elif maps is not None:  # every step's values on each of its frames
            content, code = (
                None if x is None else x.repeat_interleave(tubelet, dim=1)[:, : maps.shape[1]]
                for x in (content, code)
            )
        return self._joint(content, code, maps)

    def _content_weights(self, saliency: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """The weights (B, t, cells), summing to 1 over the cells, that pool the video
        content, given the code's saliency and the cell features it came from
        (``content_pooling``)."""
        if self.content_saliency is not None:
            return self.content_saliency(features).squeeze(-1).softmax(dim=-1)
        return saliency.detach() if self.config.content_pooling == "detached" else saliency

    def activity_video_map(self, video: torch.Tensor) -> torch.Tensor:
        """The activity map's video side (B, F, S) of video (B, F, 3, H, W), one map per
        frame, before the order gains (:meth:`ActivityMap.video_map`)."""
        if self.activity is None:
            raise InputError("this SVAC has no activity map (activity_weight = 0)")
        pixels = self.video_encoder.pixels(video)
        tokens = self.video_encoder.encode(pixels) if self.config.activity_tokens else None
        return self.activity.video_map(pixels, tokens)

    def embed_audio(self, foa: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, Ta, E) of AmbiX FOA (B, 4, T) at ``sample_rate``; Ta = ceil(T/hop)."""
        features = self.audio_encoder.features(foa)
        content = self.audio_head(self.audio_encoder.encode(features).mean(dim=2))
        code = None if self.spatial is None else self.spatial.audio(features)
        maps = None if self.activity is None else self.activity.audio(features)
        return self._joint(content, code, maps)

    def embed_text(self, caption_emb: torch.Tensor) -> torch.Tensor:
        """Unit vectors (N, E) of caption embeddings (N, text_dim)."""
        if caption_emb.ndim != 2 or caption_emb.shape[1] != self.config.text_dim:
            raise InputError(
                f"caption embeddings must be (N, {self.config.text_dim}), "
                f"got {tuple(caption_emb.shape)}"
            )
        return self.text_head(caption_emb)

    def forward(self, video: torch.Tensor, foa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned embeddings of a batch: video (B, F, 3, H, W), FOA (B, 4, T) covering the
        same window -> (video_emb, audio_emb), each (B, Ta, E) unit vectors per audio frame."""
        audio_emb = self.embed_audio(foa)
        return self.embed_video(video, audio_emb.shape[1]), audio_emb

    def load_video_backbone(self, path: str | Path) -> None:
        """Copy a local VideoMAE(-V2) backbone (transformers format) into the video encoder.

        The checkpoint's architecture must match this config's video fields (see
        :func:`svac_config_for_backbone`); InputError lists any mismatch. The backbone is
        then frozen when ``config.freeze_video`` is set.
        """
        pretrained = VideoEncoder.from_pretrained(
            path,
            freeze=False,
            image_size=self.video_encoder.frame_size,
            window=self.video_encoder.window,
        )
        mine, theirs = self.video_encoder.backbone.config, pretrained.backbone.config
        fields = (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "patch_size",
            "tubelet_size",
            "num_channels",
            "qv_bias",
        )
        mismatch = [
            f"{f}: config {getattr(mine, f)} vs checkpoint {getattr(theirs, f)}"
            for f in fields
            if getattr(mine, f) != getattr(theirs, f)
        ]
        if mismatch:
            raise InputError(
                f"VideoMAE checkpoint at {path} does not fit this SVAC config: "
                + "; ".join(mismatch)
            )
        self.video_encoder.backbone.load_state_dict(pretrained.backbone.state_dict())
        self.video_encoder.freeze(self.config.freeze_video)


def svac_config_for_backbone(path: str | Path, base: SVACConfig, freeze: bool = True) -> SVACConfig:
    """``base`` with its video fields taken from the VideoMAE checkpoint config at ``path``.

    Frame size and window stay those of ``base`` (they do not change the weights);
    ``freeze_video`` is set to ``freeze`` (the paper freezes pretrained encoders).
    """
    backbone = VideoMAEConfig.from_pretrained(
        str(_check_pretrained_dir(path)), local_files_only=True
    )
    patch = backbone.patch_size
    if not isinstance(patch, int):
        if len(set(patch)) != 1:
            raise InputError(f"non-square VideoMAE patches {patch} are not supported")
        patch = patch[0]
    return dataclasses.replace(
        base,
        video_dim=backbone.hidden_size,
        video_layers=backbone.num_hidden_layers,
        video_heads=backbone.num_attention_heads,
        video_intermediate=backbone.intermediate_size,
        video_patch=int(patch),
        video_tubelet=backbone.tubelet_size,
        freeze_video=freeze,
    )


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (only those with requires_grad if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
