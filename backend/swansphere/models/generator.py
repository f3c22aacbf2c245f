"""The SwanSphere generator: a causal Spatial LM over latent patches and a Local DiT (LocDiT)
that renders each patch by flow matching (DESIGN.md section 4). One definition, shared by
training (``swansphere_training.stages.generator``) and serving (:mod:`swansphere.generation`).

Conventions
- Latents are FOA-VAE latents (B, latent_dim, frames) at 21.53 frames/s, normalised here
  per channel with the ``latent_mean`` / ``latent_std`` buffers measured on the training
  corpus; the generator works on normalised latents laid out frame-major (B, frames, D).
- A patch is ``patch_frames`` (4) latent frames = 0.186 s. Patch t is conditioned on the
  video tokens aligned with it, the caption, and (through the LM) everything before it.
- Video tokens are SVAC VideoMAE patch tokens of one equirectangular frame (B, G, video_dim),
  raster order over the SVAC grid (row 0 = top, column 0 = azimuth +180 deg, see
  :mod:`swansphere.foa.panorama`); each token gets the direction of its cell added, so the
  LM knows where on the sphere it looks.
- Caption tokens are the text encoder's last hidden states (B, L, text_dim) with a bool mask.
- Flow matching: x_tau = tau * x1 + (1 - tau) * x0, x0 ~ N(0, I), velocity target x1 - x0;
  sampling integrates tau from 0 to 1 with Euler steps on the cosine schedule
  tau(s) = 0.5 (1 - cos(pi s)), s uniform.
- Three-way classifier-free guidance over the conditions full / text only / none:
  v = v_none + g_text (v_text - v_none) + g_video (v_full - v_text).
- With a VAE whose direct path makes the last 3 latent channels a frame's normalised
  intensity (Y, Z, X), ``direction_lock`` turns them toward the LM direction head's
  estimate after sampling (:func:`steer_intensity`): the LM says where, the LocDiT what.
  With ``direction_source = "video"`` it turns them toward the bundle's video direction
  cue instead (:mod:`swansphere.models.direction`), and ``level_lock`` also scales each
  patch's level channel (a VAE with a level path) so that the patch is as loud as the cue
  estimates (:func:`patch_flux`, :func:`level_lock_gain`, :func:`scale_level`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from swansphere.errors import InputError
from swansphere.foa.panorama import grid_directions
from swansphere.models.config import config_from_dict
from swansphere.models.vae import level_rms, rms_level

# Conditions of the three-way guidance, in the order the rows are stacked.
CONDITIONS = ("full", "text", "none")
# GeneratorConfig fields of the sampler, not of the network: the same weights serve any.
SAMPLER_FIELDS = (
    "steps", "guidance_text", "guidance_video", "lm_history", "direction_lock", "direction_source",
    "level_lock",
)  # fmt: skip
#: Where ``direction_lock`` turns each patch: the LM's direction head, or the bundle's video
#: direction cue (:mod:`swansphere.models.direction`) for patches with a frame and no caption.
DIRECTION_SOURCES = ("lm", "video")


@dataclass(frozen=True)
class GeneratorConfig:
    """Sizes of the generator. Presets in :data:`GENERATOR_PRESETS`; defaults are ``tiny``
    but for ``video_saliency``, which is off by default so that older bundles load as
    they were trained."""

    latent_dim: int = 32  # FOA-VAE latent channels per frame
    patch_frames: int = 4  # latent frames per patch (paper: 4 = 0.186 s)
    context_patches: int = 2  # preceding patches the LocDiT sees as boundary context
    video_dim: int = 128  # SVAC video token width
    video_grid: tuple[int, int] = (4, 8)  # SVAC token grid (rows, columns) of a panorama
    text_dim: int = 384  # caption token width (MiniLM: 384)
    max_text_tokens: int = 64  # caption tokens the LM attends to (longer captions truncate)
    lm_window: int = 64  # patches the LM attends to (12 s); longer streams slide the window
    lm_dim: int = 256  # Spatial LM width
    lm_layers: int = 4
    lm_heads: int = 4
    history_layers: int = 2  # history encoder blocks (research code: 4)
    dit_dim: int = 192  # LocDiT width (its weights are read 20 times per patch)
    dit_layers: int = 4  # research code: 4
    dit_heads: int = 4
    mlp_ratio: float = 4.0
    steps: int = 20  # Euler steps of the sampler (paper: 20)
    guidance_text: float = 1.5  # g_text of the three-way guidance
    guidance_video: float = 1.5  # g_video
    # Whether the LM step reads its own previous patch (the history encoder). False: the
    # start embedding at every patch, as for the training rows without a past, so that a
    # generated patch's direction error does not feed the next patch's estimate (the
    # LocDiT's boundary context still joins the patches).
    lm_history: bool = True
    # Share in [0, 1] by which each sampled patch's intensity channels turn toward the LM
    # direction head's estimate, or the video cue's (direction_source), with
    # :func:`steer_intensity`; 0: as sampled.
    direction_lock: float = 0.0
    # What the lock aims at (DIRECTION_SOURCES): "video" needs a bundle with a direction
    # cue; patches without a frame, or with a caption (which the LM reads and the cue does
    # not), keep the LM's estimate.
    direction_source: str = "lm"
    # Share in [0, 1] of the way each patch's loudness goes to the video direction cue's
    # estimate of it (:func:`level_lock_gain`): the cue's intensity length relative to the
    # clip, so a patch whose picture shows its source sounding is louder and one that does
    # not is quieter; 0: the LocDiT's loudness. Needs direction_source "video" and a VAE
    # with a level path.
    level_lock: float = 0.0
    text_encoder: str = "minilm"  # "minilm" (bundled) or a local transformers model path
    # SVAC's spatial-code saliency of each patch's frame as a second video input (where the
    # sound is likely to be: what pulses or moves); off for bundles from before it existed.
    video_saliency: bool = False
    saliency_window: int = 22  # patches (4.1 s) of the running mean saliency departs from

    def __post_init__(self) -> None:
        object.__setattr__(self, "video_grid", tuple(int(g) for g in self.video_grid))
        ints = ("latent_dim", "patch_frames", "context_patches", "video_dim", "text_dim",
                "max_text_tokens", "lm_window", "lm_dim", "lm_layers", "lm_heads", "history_layers",
                "dit_dim", "dit_layers", "dit_heads", "steps", "saliency_window")  # fmt: skip
        bad = [n for n in ints if not isinstance(getattr(self, n), int) or getattr(self, n) < 1]
        if bad:
            raise InputError(f"GeneratorConfig fields must be positive integers: {', '.join(bad)}")
        if len(self.video_grid) != 2 or min(self.video_grid) < 1:
            raise InputError(
                f"GeneratorConfig.video_grid must be (rows, cols), got {self.video_grid}"
            )
        for dim, heads in (("lm_dim", "lm_heads"), ("dit_dim", "dit_heads")):
            if getattr(self, dim) % getattr(self, heads):
                raise InputError(f"GeneratorConfig.{dim} must be a multiple of {heads}")
        for name in ("video_saliency", "lm_history"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(
                    f"GeneratorConfig.{name} must be true or false, got {getattr(self, name)!r}"
                )
        for name in ("direction_lock", "level_lock"):
            lock = getattr(self, name)
            if isinstance(lock, bool) or not isinstance(lock, (int, float)) or not 0 <= lock <= 1:
                raise InputError(f"GeneratorConfig.{name} must be in [0, 1], got {lock!r}")
        if self.direction_source not in DIRECTION_SOURCES:
            raise InputError(
                f"GeneratorConfig.direction_source must be one of {', '.join(DIRECTION_SOURCES)}"
                f", got {self.direction_source!r}"
            )
        if self.level_lock and not (self.direction_source == "video" and self.direction_lock):
            raise InputError(
                "GeneratorConfig.level_lock follows the video direction cue's loudness: it "
                "needs direction_source 'video' and a direction_lock above 0"
            )
        if not self.mlp_ratio > 0:
            raise InputError(f"GeneratorConfig.mlp_ratio must be positive, got {self.mlp_ratio}")

    @property
    def video_tokens(self) -> int:
        """Tokens per video frame (rows x columns of the SVAC grid)."""
        return self.video_grid[0] * self.video_grid[1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["video_grid"] = list(self.video_grid)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GeneratorConfig:
        return config_from_dict(cls, data)


def _preset(
    lm_dim: int, lm_layers: int, dit_dim: int, dit_layers: int, heads: int
) -> GeneratorConfig:
    """Paper-scale presets: 44.1 kHz VAE (d = 128), SVAC paper preset video tokens (ViT-B,
    768 wide, 14 x 28 grid of a 224 x 448 panorama)."""
    return GeneratorConfig(
        latent_dim=128, video_dim=768, video_grid=(14, 28), max_text_tokens=128,
        lm_dim=lm_dim, lm_layers=lm_layers, lm_heads=heads, history_layers=4,
        dit_dim=dit_dim, dit_layers=dit_layers, dit_heads=heads, video_saliency=True,
    )  # fmt: skip


GENERATOR_PRESETS: dict[str, GeneratorConfig] = {
    # Real time on 2 CPU cores; the shipped bundle's generator.
    # Guidance: on 24 held-out clips, g_video 1.5 / 3 / 5 / 8 put the video-only generations
    # 64 / 52 / 44 / 43 deg from the reference, and g_text 1.5 / 3 named the caption's region
    # in 71 / 83 % of caption-only ones; g = 8 strays from the reference spectrum.
    # lm_history off and direction_lock 1: on 64 held-out clips video-only 49.0 -> 46.5 deg
    # with the weights trained for the LM's history, 39.5 deg after 3000 steps more with
    # p_drop_lm_history = 1 (training/EXPERIMENTS.md, "The generator's direction").
    "tiny": GeneratorConfig(
        video_saliency=True,
        guidance_text=3.0,
        guidance_video=5.0,
        lm_history=False,
        direction_lock=1.0,
    ),
    # Parameter counts of the paper's S / M / L (0.43B / 0.62B / 1.09B); see
    # tests/models/test_generator.py, which builds them on the meta device and counts.
    "S": _preset(lm_dim=1024, lm_layers=17, dit_dim=1024, dit_layers=6, heads=16),  # 0.430B
    "M": _preset(lm_dim=1152, lm_layers=22, dit_dim=1152, dit_layers=4, heads=16),  # 0.618B
    "L": _preset(lm_dim=1408, lm_layers=26, dit_dim=1408, dit_layers=6, heads=16),  # 1.097B
}


# --------------------------------------------------------------------------------------
# Small pure functions
# --------------------------------------------------------------------------------------


def cosine_schedule(steps: int) -> Tensor:
    """Flow times (steps + 1,) from 0 to 1: tau(s) = 0.5 (1 - cos(pi s)), s = 0, 1/steps .. 1."""
    if steps < 1:
        raise InputError(f"sampler steps must be >= 1, got {steps}")
    s = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    return (0.5 * (1.0 - torch.cos(math.pi * s))).float()


def flow_interpolate(x1: Tensor, x0: Tensor, tau: Tensor) -> tuple[Tensor, Tensor]:
    """(x_tau, velocity target) of the straight path from noise x0 (tau 0) to data x1 (tau 1).

    tau: (B,) broadcast over the remaining dimensions.
    """
    t = tau.reshape(-1, *([1] * (x1.ndim - 1)))
    return t * x1 + (1 - t) * x0, x1 - x0


def guided_velocity(
    v_full: Tensor, v_text: Tensor, v_none: Tensor, g_text: float, g_video: float
) -> Tensor:
    """Three-way classifier-free guidance:
    v_none + g_text (v_text - v_none) + g_video (v_full - v_text).

    With g_text = g_video = 1 this is v_full (no guidance).
    """
    return v_none + g_text * (v_text - v_none) + g_video * (v_full - v_text)


def guidance_rows(
    video: bool, text: bool, g_text: float, g_video: float
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The rows of :data:`CONDITIONS` (full, text, none) a patch's LocDiT must run, and the
    weights that sum their velocities to :func:`guided_velocity`'s. ``video`` and ``text``
    say whether the stream has had video, a caption, at any patch so far (the LM's cache
    remembers them, so a row that once had one is not the row that never did).

    With both modalities present the three rows differ: weights g_video, g_text - g_video,
    1 - g_text. Without a caption the text row is the none row (both lack text and video),
    so v_none + g_video (v_full - v_none): rows full, none. Without video the full row is
    the text row: v_none + g_text (v_text - v_none), rows text, none. With neither only
    the none row is left (weight 1)."""
    if video and text:
        return (0, 1, 2), (g_video, g_text - g_video, 1.0 - g_text)
    if video:
        return (0, 2), (g_video, 1.0 - g_video)
    if text:
        return (1, 2), (g_text, 1.0 - g_text)
    return (2,), (1.0,)


def steer_intensity(latents: Tensor, direction: Tensor, share: float) -> Tensor:
    """Latents (..., F, D) whose last 3 channels, each frame's normalised intensity in ACN
    order Y, Z, X (the FOA-VAE's direct path), are turned toward ``direction`` (3,), a unit
    vector x, y, z, by ``share`` in [0, 1]: each frame's channels become
    normalise(share * direction + (1 - share) * own unit direction) times their own length.
    The length (1 - diffuseness, 0 for silence) is kept, so only where the sound comes
    from changes; share 0 returns the latents unchanged. Denormalised latents, not the
    generator's normalised ones."""
    if share == 0:
        return latents
    intensity = latents[..., -3:]
    length = intensity.norm(dim=-1, keepdim=True)
    target = direction[[1, 2, 0]].to(latents.dtype)  # x, y, z -> Y, Z, X
    turned = F.normalize(share * target + (1 - share) * F.normalize(intensity, dim=-1), dim=-1)
    return torch.cat([latents[..., :-3], turned * length], dim=-1)


def patch_flux(latents: Tensor, level_channel: int) -> Tensor:
    """A patch's broadband flux (..., 3) in x, y, z from denormalised latents (..., F, D):
    the mean over its frames of W RMS^2 (what the level channel says,
    :func:`~swansphere.models.vae.level_rms`) times the intensity channels (Y, Z, X, the
    last 3), i.e. about the mean of W (X, Y, Z) over the patch, in the reference's units
    (a plane wave's W^2)."""
    flux = level_rms(latents[..., level_channel]).square()[..., None] * latents[..., -3:]
    return flux.mean(dim=-2)[..., [2, 0, 1]]  # Y, Z, X -> x, y, z


def level_lock_gain(
    flux: float,
    cue: float,
    scale: float,
    share: float,
    floor_db: float = -24.0,
    ceiling_db: float = 12.0,
) -> float:
    """Natural-log amplitude gain for a patch whose flux length is ``flux`` to reach
    ``share`` of the way (in log terms) to ``scale * cue``: the cue's loudness estimate
    (relative to the clip) in the generated audio's units, ``scale`` being the running
    ratio of generated flux to cue estimates. Clamped to [floor_db, ceiling_db] dB, so a
    patch the cue calls silent is quieted, not muted, and a near-silent one is not blown
    up; 0 for a silent patch (flux 0: nothing to scale) or a ratio of 0 (nothing known
    yet of the generated audio's units)."""
    if share == 0 or flux <= 0 or scale <= 0:
        return 0.0
    low, high = (db * math.log(10) / 20 for db in (floor_db, ceiling_db))
    target = max(scale * cue, 1e-30)
    return min(max(0.5 * share * math.log(target / flux), low), high)


def scale_level(latents: Tensor, level_channel: int, log_gain: float) -> Tensor:
    """Denormalised latents (..., F, D) whose level channel (:func:`~swansphere.models.vae.
    rms_level`) says the frames are exp(log_gain) times as loud (amplitude)."""
    if log_gain == 0:
        return latents
    out = latents.clone()
    rms = level_rms(latents[..., level_channel]) * math.exp(log_gain)
    out[..., level_channel] = rms_level(rms)
    return out


def timestep_embedding(tau: Tensor, dim: int, scale: float = 1000.0) -> Tensor:
    """Sinusoidal embedding (B, dim) of flow times tau (B,) in [0, 1]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=tau.device) / half)
    args = scale * tau.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim - 2 * half))


def direction_features(directions: Tensor, bands: int = 4) -> Tensor:
    """Fourier features (..., 3 + 6 bands) of unit vectors (..., 3): the vector and
    sin/cos of 2^k pi times each coordinate, so nearby directions get nearby codes."""
    scales = (2.0 ** torch.arange(bands, device=directions.device)) * math.pi
    args = directions[..., None] * scales  # (..., 3, bands)
    return torch.cat([directions, torch.sin(args).flatten(-2), torch.cos(args).flatten(-2)], dim=-1)


# --------------------------------------------------------------------------------------
# Transformer parts
# --------------------------------------------------------------------------------------


class KVCache:
    """Keys and values of the LM's past patches, per layer: tensors (B, heads, T, head_dim)."""

    attention_mask: Tensor | None = None  # every cached position is attended to

    def __init__(self, layers: int) -> None:
        self.keys: list[Tensor | None] = [None] * layers
        self.values: list[Tensor | None] = [None] * layers
        self.length = 0

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def trim(self, window: int) -> None:
        """Keep the newest ``window`` positions (a sliding attention window)."""
        if self.length > window:
            self.keys = [None if k is None else k[:, :, -window:] for k in self.keys]
            self.values = [None if v is None else v[:, :, -window:] for v in self.values]
            self.length = window


class WindowKVCache:
    """The LM's past as fixed-shape tensors, for a compiled step (:class:`LMStep`): keys and
    values (layers, B, heads, lm_window - 1, head_dim) of the newest past patches, oldest
    first, and ``past_valid`` (lm_window - 1,) bool, False for the empty slots of a stream
    shorter than the window. Attention appends the step's own keys and values (kept in
    ``new_keys`` / ``new_values``) and masks the empty slots, so a step attends to exactly
    what :class:`KVCache` gives it; the shapes bound the window, so nothing is trimmed."""

    length = 0  # counted by SpatialLM.forward; the shapes, not the length, bound it

    def __init__(self, past_k: Tensor, past_v: Tensor, past_valid: Tensor) -> None:
        self.past_k, self.past_v = past_k, past_v
        self.attention_mask = torch.cat([past_valid, past_valid.new_ones(1)])[None]  # (1, W)
        self.new_keys: list[Tensor] = []
        self.new_values: list[Tensor] = []

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self.new_keys.append(k)
        self.new_values.append(v)
        return torch.cat([self.past_k[layer], k], dim=2), torch.cat([self.past_v[layer], v], dim=2)

    def trim(self, window: int) -> None:
        """Nothing to trim (see the class docstring)."""


class Attention(nn.Module):
    """Multi-head attention over (B, T, dim); ``context`` gives cross-attention."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        return x.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)

    def project_kv(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values (B, heads, T, head_dim) of ``context`` (B, T, context_dim)."""
        k, v = self.kv(context).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | WindowKVCache | None = None,
        layer: int = 0,
        kv: tuple[Tensor, Tensor] | None = None,
        prefix: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """x (B, T, dim) attends to itself, or to ``context`` (or its precomputed ``kv``);
        ``prefix`` keys/values are prepended (LocDiT boundary context); ``cache`` holds
        the keys/values of earlier calls (LM steps)."""
        q = self._split(self.q(x))
        k, v = kv if kv is not None else self.project_kv(x if context is None else context)
        if prefix is not None:
            k, v = torch.cat([prefix[0], k], dim=2), torch.cat([prefix[1], v], dim=2)
        if cache is not None:
            k, v = cache.append(layer, k, v)
        if causal and cache is not None and x.shape[1] > 1:
            # New queries see the whole cache plus the causal part of themselves.
            n, past = x.shape[1], k.shape[2] - x.shape[1]
            mask = torch.ones(n, k.shape[2], dtype=torch.bool, device=x.device).tril(past)
            causal = False
        elif cache is not None:
            causal = False  # one new query sees everything cached (but empty slots)
            mask = cache.attention_mask
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return self.out(out.transpose(1, 2).flatten(2))


def _mlp(dim: int, ratio: float) -> nn.Sequential:
    hidden = int(dim * ratio)
    return nn.Sequential(
        nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)
    )


class LMBlock(nn.Module):
    """Pre-norm causal self-attention, cross-attention to caption tokens, MLP."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        d = config.lm_dim
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = Attention(d, config.lm_heads)
        self.cross_attn = Attention(d, config.lm_heads)
        self.mlp = _mlp(d, config.mlp_ratio)
        self.window = config.lm_window

    def window_mask(self, n: int, device: torch.device) -> Tensor | None:
        """Causal mask limited to the window, or None when plain causal is the same."""
        if n <= self.window:
            return None
        i = torch.arange(n, device=device)
        diff = i[:, None] - i[None, :]
        return (diff >= 0) & (diff < self.window)

    def forward(
        self,
        x: Tensor,
        text: Tensor,
        text_mask: Tensor,
        cache: KVCache | WindowKVCache | None,
        layer: int,
        text_kv: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        window = self.window_mask(x.shape[1], x.device) if cache is None else None
        x = x + self.self_attn(
            self.norm1(x), mask=window, causal=window is None, cache=cache, layer=layer
        )
        x = x + self.cross_attn(
            self.norm2(x), context=text, kv=text_kv, mask=text_mask[:, None, None, :]
        )
        return x + self.mlp(self.norm3(x))


class EncoderBlock(nn.Module):
    """Pre-norm bidirectional self-attention and MLP (history encoder)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.mlp = _mlp(dim, mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DiTBlock(nn.Module):
    """Bidirectional self-attention and MLP, modulated adaLN-single style (PixArt-alpha):
    the LocDiT computes one (scale, shift, gate) x 2 modulation from the condition for all
    blocks and each block adds its own learned ``offset`` (:meth:`LocDiT.modulation_of`),
    so a sampler step reads precomputed modulations instead of one linear layer per block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = Attention(dim, heads)
        self.mlp = _mlp(dim, mlp_ratio)
        self.offset = nn.Parameter(torch.zeros(6, dim))  # scale, shift, gate x (attn, MLP)

    def forward(self, x: Tensor, modulation: Tensor, prefix: tuple[Tensor, Tensor]) -> Tensor:
        """x (B, T, dim); modulation (6, B, 1, dim): 1 + scale, shift and gate of the
        attention, then of the MLP, offset included; ``prefix``: the boundary-context keys
        and values every token also attends to."""
        s1, b1, g1, s2, b2, g2 = modulation.unbind(0)
        x = torch.addcmul(x, g1, self.attn(torch.addcmul(b1, self.norm1(x), s1), prefix=prefix))
        return torch.addcmul(x, g2, self.mlp(torch.addcmul(b2, self.norm2(x), s2)))


# --------------------------------------------------------------------------------------
# The networks
# --------------------------------------------------------------------------------------


class HistoryEncoder(nn.Module):
    """Summary (B, lm_dim) of one patch of latents (B, patch_frames, latent_dim)."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        d = config.lm_dim
        self.inp = nn.Linear(config.latent_dim, d)
        self.pos = nn.Parameter(torch.zeros(config.patch_frames, d))
        self.blocks = nn.ModuleList(
            EncoderBlock(d, config.lm_heads, config.mlp_ratio) for _ in range(config.history_layers)
        )
        self.norm = nn.LayerNorm(d)

    def forward(self, patch: Tensor) -> Tensor:
        x = self.inp(patch) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.norm(x).mean(dim=1)


class VideoPooler(nn.Module):
    """One LM input vector (B, lm_dim) per video frame from its tokens (B, G, video_dim):
    each token's departure from its cell's mean token (``token_mean``, measured on the
    training corpus) plus the Fourier code of its direction, attended by a learned query
    whose logits are biased by ``saliency_scale`` * log |departure|: a cell that looks
    unlike it usually does (an object there) draws the attention, and with it its
    direction.

    With ``video_saliency``, SVAC's saliency of the frame (B, G) (summing to 1 over the
    cells; :class:`swansphere.generation.conditioning.SaliencyWindow`) adds
    ``prior_scale`` * log saliency to those logits, and the saliency-weighted Fourier code
    of the cells' directions, projected, to the output: the direction SVAC learnt to see
    the sound at, handed to the LM directly. Both start at zero, so a generator trained
    without them starts from what it did.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        d = config.lm_dim
        dirs = torch.from_numpy(grid_directions(*config.video_grid))
        self.register_buffer("direction_code", direction_features(dirs), persistent=False)
        self.register_buffer("token_mean", torch.zeros(config.video_tokens, config.video_dim))
        self.inp = nn.Linear(config.video_dim, d)
        self.dir_proj = nn.Linear(self.direction_code.shape[-1], d)
        self.query = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.saliency_scale = nn.Parameter(torch.ones(()))
        self.norm = nn.LayerNorm(d)
        self.attn = Attention(d, config.lm_heads)
        self.out = nn.Linear(d, d)
        self.uses_saliency = config.video_saliency
        if config.video_saliency:
            self.prior_scale = nn.Parameter(torch.zeros(()))
            self.prior_proj = nn.Linear(self.direction_code.shape[-1], d)
            nn.init.zeros_(self.prior_proj.weight)
            nn.init.zeros_(self.prior_proj.bias)

    def forward(self, tokens: Tensor, saliency: Tensor | None = None) -> Tensor:
        departure = tokens - self.token_mean
        x = self.norm(self.inp(departure) + self.dir_proj(self.direction_code))
        bias = self.saliency_scale * torch.log(departure.norm(dim=-1) + 1e-3)  # (B, G)
        if self.uses_saliency:
            if saliency is None:
                raise InputError("this generator takes the video's saliency with its tokens")
            bias = bias + self.prior_scale * torch.log(saliency.clamp_min(1e-4))
        query = self.query.expand(x.shape[0], -1, -1)
        pooled = self.attn(query, context=x, mask=bias[:, None, None, :].to(x.dtype))[:, 0]
        out = self.out(pooled)
        if self.uses_saliency:
            out = out + self.prior_proj(saliency.to(x.dtype) @ self.direction_code)
        return out


@dataclass
class Conditioning:
    """Per-row conditioning of the LM for a batch of B rows.

    video: (B, P, G, video_dim) tokens of the frame aligned with each of P patches, or None
    video_present: (B,) bool: rows whose video is replaced by the null embedding when False
    text: (B, L, text_dim) caption tokens, text_mask (B, L) bool (True = real token)
    text_present: (B,) bool: rows whose caption is replaced by the null embedding when False
    saliency: (B, P, G) SVAC saliency of each patch's frame (generators with
    ``video_saliency``), or None
    """

    video: Tensor | None
    video_present: Tensor
    text: Tensor
    text_mask: Tensor
    text_present: Tensor
    saliency: Tensor | None = None


class SpatialLM(nn.Module):
    """Causal transformer over patches; step t sees patches 0..t-1 (through the history
    encoder), the video aligned with patch t, and the caption. Output h_t (B, lm_dim)."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        d = config.lm_dim
        self.config = config
        self.history = HistoryEncoder(config)
        self.video = VideoPooler(config)
        self.text_proj = nn.Linear(config.text_dim, d)
        self.start = nn.Parameter(torch.randn(d) * 0.02)  # history of the first patch
        self.null_video = nn.Parameter(torch.randn(d) * 0.02)
        self.null_text = nn.Parameter(torch.randn(1, d) * 0.02)
        self.blocks = nn.ModuleList(LMBlock(config) for _ in range(config.lm_layers))
        self.norm = nn.LayerNorm(d)

    def text_context(self, cond: Conditioning) -> tuple[Tensor, Tensor]:
        """Caption keys (B, L + 1, lm_dim) and mask: the null token always, real tokens
        only for rows with a caption (so a missing caption attends to the null token)."""
        b = cond.text.shape[0]
        text = torch.cat([self.null_text.expand(b, 1, -1), self.text_proj(cond.text)], dim=1)
        real = cond.text_mask & cond.text_present[:, None]
        mask = torch.cat([~cond.text_present[:, None], real], dim=1)
        return text, mask

    def inputs(
        self,
        history: Tensor,
        video: Tensor | None,
        video_present: Tensor,
        first: int,
        history_present: Tensor | None = None,
        saliency: Tensor | None = None,
    ) -> Tensor:
        """LM input tokens (B, P, lm_dim) for P patches starting at patch index ``first``.

        history: (B, P, patch_frames, latent_dim) latents of each patch's predecessor (ignored
        for patch 0, which uses the start embedding); history_present (B,) bool (training
        only): rows where it is False get the start embedding at every patch; saliency
        (B, P, G): see :class:`Conditioning`.
        """
        b, p = history.shape[:2]
        index = torch.arange(first, first + p, device=history.device)
        start = (index == 0)[None, :, None]
        if history_present is not None:
            start = start | ~history_present[:, None, None]
        if not torch.is_grad_enabled() and bool(start.all()):
            # Every row starts afresh (a first patch, or a sampler with lm_history off):
            # the history encoder's output would be discarded, so it is not run (1 ms of a
            # tiny patch on CPU). Training still runs it, so its weights update as before.
            hist = self.start.expand(b, p, -1)
        else:
            hist = self.history(history.flatten(0, 1)).reshape(b, p, -1)
            hist = torch.where(start, self.start, hist)
        if video is None:
            vid = self.null_video.expand(b, p, -1)
        else:
            sal = None if saliency is None else saliency.flatten(0, 1)
            vid = self.video(video.flatten(0, 1), sal).reshape(b, p, -1)
            vid = torch.where(video_present[:, None, None], vid, self.null_video)
        # No absolute positions (the causal mask orders the patches), so a stream can run
        # past the training length with a sliding window.
        return hist + vid

    def text_kv(self, text: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per-layer cross-attention keys/values of caption keys from :meth:`text_context`
        (computed once per caption instead of once per patch)."""
        return [block.cross_attn.project_kv(text) for block in self.blocks]

    def forward(
        self,
        x: Tensor,
        text: Tensor,
        text_mask: Tensor,
        cache: KVCache | WindowKVCache | None = None,
        text_kv: list[tuple[Tensor, Tensor]] | None = None,
    ) -> Tensor:
        """x (B, P, lm_dim) from :meth:`inputs` -> h (B, P, lm_dim); with a cache, x holds
        the patches after the cached ones. Each patch attends to itself and the
        ``lm_window - 1`` patches before it."""
        window = self.config.lm_window
        if cache is not None:
            cache.trim(window - x.shape[1])  # room for the new patches (trims only if needed)
        for i, block in enumerate(self.blocks):
            kv = None if text_kv is None else text_kv[i]
            x = block(x, text, text_mask, cache, i, kv)
        if cache is not None:
            cache.length += x.shape[1]
        return self.norm(x)


class LocDiT(nn.Module):
    """Velocity network of one patch: bidirectional attention among the patch's frames,
    which also attend to the 2 preceding patches (clean boundary context), conditioned on
    h_t and the flow time by adaLN-Zero.

    The context enters as per-layer keys/values computed once per patch
    (:meth:`context_kv`), so the Euler steps only run the patch's own tokens.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        d = config.dit_dim
        self.config = config
        self.context_frames = config.context_patches * config.patch_frames
        self.inp = nn.Linear(config.latent_dim, d)
        self.pos = nn.Parameter(torch.randn(self.context_frames + config.patch_frames, d) * 0.02)
        self.empty_context = nn.Parameter(torch.randn(d) * 0.02)  # before the first patches
        self.context_norm = nn.LayerNorm(d)
        self.cond = nn.Linear(config.lm_dim, d)
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.modulation = nn.Linear(d, 6 * d)  # adaLN-single, zero-init: blocks start as identity
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)
        self.blocks = nn.ModuleList(
            DiTBlock(d, config.dit_heads, config.mlp_ratio) for _ in range(config.dit_layers)
        )
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False)
        self.final_mod = nn.Linear(d, 2 * d)
        self.final = nn.Linear(d, config.latent_dim)
        for layer in (self.final_mod, self.final):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def context_kv(self, context: Tensor, context_valid: Tensor) -> tuple[Tensor, Tensor]:
        """Stacked keys and values (layers, B, heads, context frames, head_dim).

        context: (B, context_patches * patch_frames, latent_dim) clean preceding latents;
        context_valid: (B, context frames) bool, False where the patch precedes the clip.
        """
        ctx = torch.where(context_valid[..., None], self.inp(context), self.empty_context)
        ctx = self.context_norm(ctx + self.pos[: self.context_frames])
        keys, values = zip(*(block.attn.project_kv(ctx) for block in self.blocks), strict=True)
        return torch.stack(keys), torch.stack(values)

    def modulation_of(self, h: Tensor, tau: Tensor) -> tuple[Tensor, Tensor]:
        """adaLN modulations of conditions h (..., B, lm_dim) at flow times tau (..., B):
        the blocks' (..., dit_layers, 6, B, 1, dit_dim), each block's 1 + scale, shift and
        gate of its attention then its MLP, offsets included (:class:`DiTBlock`), and the
        output layer's (..., 2, B, 1, dit_dim), shift then 1 + scale. Any leading dims: the
        sampler passes all its steps at once, since they depend on h and tau only."""
        d = self.config.dit_dim
        emb = timestep_embedding(tau.reshape(-1), d).view(*tau.shape, d)
        cond = F.silu(self.cond(h) + self.time(emb))  # (..., B, d)
        shared = self.modulation(cond).unflatten(-1, (6, d)).movedim(-2, -3)  # (..., 6, B, d)
        offsets = torch.stack([block.offset for block in self.blocks])  # (layers, 6, d)
        # The 1 of each 1 + scale is added here, once, instead of in every step.
        offsets = offsets + offsets.new_tensor([1.0, 0, 0, 1, 0, 0])[:, None]
        blocks = shared[..., None, :, :, None, :] + offsets[:, :, None, None]
        final = self.final_mod(cond).unflatten(-1, (2, d)).movedim(-2, -3)[..., None, :]
        final = final + final.new_tensor([0.0, 1.0])[:, None, None, None]
        return blocks, final

    def velocity_modulated(
        self, x: Tensor, blocks: Tensor, final: Tensor, context_k: Tensor, context_v: Tensor
    ) -> Tensor:
        """Velocity (B, patch_frames, latent_dim) of the noisy patch x given its modulations
        from :meth:`modulation_of` (no leading dims) and the context keys/values from
        :meth:`context_kv`: what one sampler step runs."""
        tokens = self.inp(x) + self.pos[self.context_frames :]
        for i, block in enumerate(self.blocks):
            tokens = block(tokens, blocks[i], (context_k[i], context_v[i]))
        shift, scale = final.unbind(0)
        return self.final(torch.addcmul(shift, self.final_norm(tokens), scale))

    def velocity(
        self, x: Tensor, tau: Tensor, h: Tensor, context_k: Tensor, context_v: Tensor
    ) -> Tensor:
        """Velocity (B, patch_frames, latent_dim) of the noisy patch x at flow times tau (B,)
        given h (B, lm_dim) and the context keys/values from :meth:`context_kv`."""
        return self.velocity_modulated(x, *self.modulation_of(h, tau), context_k, context_v)

    def forward(
        self, x: Tensor, tau: Tensor, h: Tensor, context: Tensor, context_valid: Tensor
    ) -> Tensor:
        """Velocity of x (B, patch_frames, latent_dim); see :meth:`context_kv`."""
        return self.velocity(x, tau, h, *self.context_kv(context, context_valid))


class LocDiTStep(nn.Module):
    """:meth:`LocDiT.velocity_modulated`, one sampler step, as a module's forward (what
    ``torch.compile`` and Torch-TensorRT compile)."""

    def __init__(self, dit: LocDiT) -> None:
        super().__init__()
        self.dit = dit

    def forward(self, x: Tensor, blocks: Tensor, final: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return self.dit.velocity_modulated(x, blocks, final, k, v)


class EulerSteps(nn.Module):
    """Consecutive Euler steps of guided LocDiT sampling as one forward: one session's
    patch (what ``--accel compile`` compiles a few steps at a time, so that Inductor fuses
    across steps and Python runs once per chunk), or several sessions' at once.

    forward(x, blocks, final, context_k, context_v, dts, weights, owner) -> x after K
    steps: x (N, patch_frames, latent_dim) the patches at the first step's flow time;
    blocks (K, dit_layers, 6, R, 1, dit_dim) and final (K, 2, R, 1, dit_dim) the K steps'
    modulations (:meth:`LocDiT.modulation_of`) of the R guidance rows; context keys and
    values as :meth:`LocDiT.context_kv` gives them for R rows; dts (K,) the flow-time
    increments; weights (R, 1, 1) the rows' guidance weights (:func:`guidance_rows`);
    owner (R,) the patch each row belongs to (None: N = 1, every row its own). Each step
    moves a patch by dt times the weighted sum of its own rows' velocities. ``step`` is
    the velocity of one step (a :class:`LocDiTStep`, or its compiled or TensorRT form)."""

    def __init__(self, step: Callable[..., Tensor]) -> None:
        super().__init__()
        self.step = step

    def forward(
        self,
        x: Tensor,
        blocks: Tensor,
        final: Tensor,
        context_k: Tensor,
        context_v: Tensor,
        dts: Tensor,
        weights: Tensor,
        owner: Tensor | None = None,
    ) -> Tensor:
        rows = weights.shape[0]
        for i in range(blocks.shape[0]):
            x_rows = x.expand(rows, -1, -1).contiguous() if owner is None else x[owner]
            v = self.step(x_rows, blocks[i], final[i], context_k, context_v) * weights
            # No other patch's row enters a patch's sum, not even times 0, so a NaN in one
            # session's rows stays in that session.
            v = (
                v.sum(0, keepdim=True)
                if owner is None
                else x.new_zeros(x.shape).index_add_(0, owner, v)
            )
            x = x + dts[i] * v
        return x


class LMStep(nn.Module):
    """One streaming step of the Spatial LM as a function of fixed-shape tensors (what
    Torch-TensorRT compiles: a static KV cache instead of a growing one):

    forward(x, text, text_mask, past_k, past_v, past_valid, text_k, text_v)
    -> h (B, 1, lm_dim), new_k, new_v (lm_layers, B, heads, 1, head_dim)

    x (B, 1, lm_dim) from :meth:`SpatialLM.inputs`; text and text_mask from
    :meth:`SpatialLM.text_context`; past_k, past_v and past_valid as :class:`WindowKVCache`;
    text_k, text_v (lm_layers, B, heads, text tokens + 1, head_dim) the stacked
    :meth:`SpatialLM.text_kv`. new_k / new_v are the patch's own keys and values, which
    the caller adds to its cache."""

    def __init__(self, lm: SpatialLM) -> None:
        super().__init__()
        self.lm = lm

    def forward(
        self,
        x: Tensor,
        text: Tensor,
        text_mask: Tensor,
        past_k: Tensor,
        past_v: Tensor,
        past_valid: Tensor,
        text_k: Tensor,
        text_v: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        cache = WindowKVCache(past_k, past_v, past_valid)
        text_kv = list(zip(text_k.unbind(0), text_v.unbind(0), strict=True))
        h = self.lm(x, text, text_mask, cache, text_kv)
        return h, torch.stack(cache.new_keys), torch.stack(cache.new_values)


class SpatialGenerator(nn.Module):
    """Spatial LM + LocDiT with the latent normalisation measured on the training corpus."""

    # Weights newer than the first shipped generators; a bundle written before them loads
    # with their initial values (see Bundle.build): the direction head is used in training
    # only, the video pooler's then sees raw tokens with a mild saliency bias.
    OPTIONAL_WEIGHTS = ("direction_head.", "lm.video.token_mean", "lm.video.saliency_scale")
    # The saliency input's weights (``video_saliency``): a generator trained without it can
    # start one with it (fine-tuning), since they start at zero.
    SALIENCY_INPUT_WEIGHTS = ("lm.video.prior_",)

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.lm = SpatialLM(config)
        self.dit = LocDiT(config)
        self.direction_head = nn.Linear(config.lm_dim, 3)
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim))
        self.register_buffer("latent_std", torch.ones(config.latent_dim))

    @classmethod
    def from_config(cls, config: GeneratorConfig | Mapping[str, Any] | str) -> SpatialGenerator:
        if isinstance(config, str):
            if config not in GENERATOR_PRESETS:
                raise InputError(
                    f"unknown generator preset {config!r}; "
                    f"choose one of {', '.join(GENERATOR_PRESETS)}"
                )
            config = GENERATOR_PRESETS[config]
        elif not isinstance(config, GeneratorConfig):
            config = GeneratorConfig.from_dict(config)
        return cls(config)

    # --- latent layout ------------------------------------------------------------------

    def normalise(self, z: Tensor) -> Tensor:
        """VAE latents (B, latent_dim, F) -> normalised frame-major (B, F, latent_dim)."""
        return ((z.transpose(1, 2) - self.latent_mean) / self.latent_std).contiguous()

    def denormalise(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`normalise`."""
        return (x * self.latent_std + self.latent_mean).transpose(1, 2).contiguous()

    def patches(self, x: Tensor) -> Tensor:
        """(B, F, D) with F a multiple of patch_frames -> (B, P, patch_frames, D)."""
        p = self.config.patch_frames
        if x.shape[1] % p:
            raise InputError(f"latent frames {x.shape[1]} are not a multiple of the patch size {p}")
        return x.reshape(x.shape[0], x.shape[1] // p, p, x.shape[2])

    def context_of(self, patches: Tensor) -> tuple[Tensor, Tensor]:
        """Boundary context of every patch: (B, P, ctx_frames, D) of the preceding
        ``context_patches`` patches (zeros before the clip) and its validity (P, ctx_frames)."""
        b, p, f, d = patches.shape
        c = self.config.context_patches
        padded = torch.cat([patches.new_zeros(b, c, f, d), patches], dim=1)
        ctx = torch.stack([padded[:, i : i + c].flatten(1, 2) for i in range(p)], dim=1)
        index = (
            torch.arange(p, device=patches.device)[:, None]
            - c
            + torch.arange(c, device=patches.device)
        )
        valid = (index >= 0).repeat_interleave(f, dim=1)
        return ctx, valid

    # --- training ------------------------------------------------------------------------

    def direction(self, h: Tensor) -> Tensor:
        """The LM's estimate (..., 3) of where patch t's sound comes from, as an (x, y, z)
        direction (not normalised), read from h_t (..., lm_dim) by a linear head. Trained by
        the auxiliary direction loss (:meth:`losses`); it makes the LM carry the direction
        the video and caption imply, which the LocDiT then renders."""
        return self.direction_head(h)

    def teacher_forced_lm(
        self, x: Tensor, cond: Conditioning, history_present: Tensor | None = None
    ) -> Tensor:
        """LM outputs h (B, P, lm_dim) over normalised patches x (B, P, f, D), each patch's
        history being the true previous patch (see :meth:`losses` for ``history_present``)."""
        history = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
        lm_in = self.lm.inputs(
            history, cond.video, cond.video_present, 0, history_present, cond.saliency
        )
        text, text_mask = self.lm.text_context(cond)
        return self.lm(lm_in, text, text_mask)

    def losses(
        self,
        z: Tensor,
        cond: Conditioning,
        generator: torch.Generator | None = None,
        intensity: Tensor | None = None,
        history_present: Tensor | None = None,
        lm_history_present: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Training losses with teacher forcing on VAE latents z (B, latent_dim, F).

        The LM runs causally over all P patches at once (history = the true previous
        patch); the LocDiT denoises every patch with its true boundary context.

        - ``flow``: the flow-matching MSE of the LocDiT's velocity.
        - ``direction`` (with ``intensity`` (B, P, 3), the reference's broadband intensity
          per patch, x y z): 1 - cos(direction(h_t), intensity_t), weighted by the
          intensity's magnitude over its batch mean (loud patches count more, as they do in
          the clip-level metric; silent ones not at all).
        - ``history_present`` (B,) bool: rows where it is False see no past at all (the LM's
          history is the start embedding at every patch, the LocDiT's boundary context is
          empty), so they must read every patch's direction from the video and caption
          instead of copying it from the true previous patch.
        - ``lm_history_present`` (B,) bool: rows where it is False have an LM that sees no
          past while their LocDiT keeps its boundary context, as when generating with
          ``lm_history`` off.
        """
        x = self.patches(self.normalise(z))  # (B, P, f, D)
        b = x.shape[0]
        lm_past = history_present
        if lm_history_present is not None:
            lm_past = lm_history_present if lm_past is None else lm_past & lm_history_present
        h = self.teacher_forced_lm(x, cond, lm_past)
        ctx, valid = self.context_of(x)
        valid = valid.expand(b, -1, -1)
        if history_present is not None:
            valid = valid & history_present[:, None, None]
        flat = x.flatten(0, 1)
        noise = torch.randn(flat.shape, generator=generator, device=flat.device, dtype=flat.dtype)
        s = torch.rand(flat.shape[0], generator=generator, device=flat.device)
        tau = 0.5 * (1 - torch.cos(math.pi * s))
        xt, target = flow_interpolate(flat, noise, tau)
        v = self.dit(xt, tau, h.flatten(0, 1), ctx.flatten(0, 1), valid.flatten(0, 1))
        out = {"flow": F.mse_loss(v, target)}
        if intensity is not None:
            magnitude = intensity.norm(dim=-1)  # (B, P)
            weight = magnitude / magnitude.mean().clamp(min=1e-12)
            cos = F.cosine_similarity(self.direction(h), intensity, dim=-1, eps=1e-8)
            out["direction"] = (weight * (1 - cos)).mean()
        return out

    def training_loss(
        self, z: Tensor, cond: Conditioning, generator: torch.Generator | None = None
    ) -> Tensor:
        """The flow-matching loss of :meth:`losses` (teacher forcing, full history)."""
        return self.losses(z, cond, generator)["flow"]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "CONDITIONS",
    "DIRECTION_SOURCES",
    "GENERATOR_PRESETS",
    "SAMPLER_FIELDS",
    "Conditioning",
    "EulerSteps",
    "GeneratorConfig",
    "HistoryEncoder",
    "KVCache",
    "LMStep",
    "LocDiT",
    "LocDiTStep",
    "SpatialGenerator",
    "SpatialLM",
    "VideoPooler",
    "WindowKVCache",
    "cosine_schedule",
    "count_parameters",
    "flow_interpolate",
    "guidance_rows",
    "guided_velocity",
    "steer_intensity",
]
