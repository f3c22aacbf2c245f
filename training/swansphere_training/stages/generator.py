"""The generator training stage: Spatial LM + LocDiT by flow matching with teacher forcing on
the frozen VAE's latents (DESIGN.md section 4, issue 5 item 3).

Two phases, by step:

1. Curriculum (``curriculum_steps``): every clip's pseudo-FOA latents (a stereo pair folded
   into W and one random dipole, see :func:`swansphere_training.data.features.pseudo_foa`);
   video is dropped (the pseudo field does not match the picture), captions kept.
2. Spatial training on the real FOA latents.

The loss is the LocDiT's flow-matching loss plus ``direction_weight`` times the auxiliary
direction loss (:meth:`SpatialGenerator.losses`): the LM's direction head must point where
the reference's intensity points, patch by patch, which makes the LM read direction from
the video and caption. Teacher forcing alone lets every patch copy its direction from the
true previous patch, so ``p_drop_history`` of the rows (spatial phase) also train without
any past: no LM history, no LocDiT boundary context.

Modality dropout, drawn per row in both phases: the video is dropped with ``p_drop_video``
and the caption with ``p_drop_text``, independently, so batches mix video + text,
video only, text only and neither (the null condition that classifier-free guidance
needs). A clip without video or caption always has that modality dropped.

Features (VAE latents, per-frame SVAC tokens, caption tokens) come from the ``bundle``'s
frozen models and are cached under the run folder (``OUT/features/<split>.safetensors``,
see :mod:`swansphere_training.data.features`). The model's ``latent_mean`` / ``latent_std``
buffers are set from the training latents before step 0 and saved with the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from swansphere.errors import InputError
from swansphere.models.bundle import load_bundle
from swansphere.models.generator import (
    GENERATOR_PRESETS,
    SAMPLER_FIELDS,
    Conditioning,
    SpatialGenerator,
)

from ..data.dataset import ClipDataset
from ..data.features import ClipFeatures, load_or_build_features
from .base import Stage, derive_seed, warmup_cosine

# (name, video, caption) of the conditions evaluate() reports.
EVAL_CONDITIONS = (
    ("full", True, True),
    ("video", True, False),
    ("text", False, True),
    ("none", False, False),
)
# Batch entries with one row per patch (the rest are per clip).
PER_PATCH = ("video", "saliency", "intensity")
_SALT_NOISE = 0x6E4E01
_SALT_EVAL = 0x6E4E02


@dataclass
class GeneratorStageConfig:
    """What a generator run trains on and how (stored in every checkpoint)."""

    data: str  # corpus root (DATA/train for training, DATA/test for evaluation)
    preset: str = "tiny"  # a key of GENERATOR_PRESETS
    seed: int = 0
    batch_size: int = 8
    lr: float = 5e-4  # after the warm-up
    warmup_steps: int = 200  # linear LR warm-up
    # Then a half-cosine decay of the LR to 0 over this many steps (0: constant LR).
    lr_decay_steps: int = 0
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    # The bundle whose frozen VAE and SVAC make the features: default | PATH | models:/N@A.
    bundle: str = "default"
    curriculum_steps: int = 300  # pseudo-FOA pre-training steps before the spatial phase
    p_drop_video: float = 0.3  # per-row probability of replacing the video by its null
    p_drop_text: float = 0.3  # per-row probability of replacing the caption by its null
    # Patches per training crop; 0: the whole clip (the shortest clip's length), so the LM
    # sees the positions it meets when generating a whole clip.
    clip_patches: int = 0
    # Restarts: every ``restart_every``-th step (0: never) each crop is cut into pieces of
    # ``restart_patches`` patches, each trained as the start of a clip. Teacher forcing
    # lets every later patch copy its direction from the previous ones, so only starts
    # must read it from the video and caption; a whole clip has one start in 53 patches.
    restart_every: int = 2
    restart_patches: int = 13
    # A bundle whose generator starts the run (fine-tuning; its config must be the preset's).
    # Heads newer than the bundle (SpatialGenerator.OPTIONAL_WEIGHTS) start fresh.
    init_from: str | None = None
    direction_weight: float = 1.0  # weight of the auxiliary direction loss (0: off)
    p_drop_history: float = 0.25  # per-row probability of training with no past (spatial phase)
    # Per-row probability that only the LM sees no past (the LocDiT keeps its boundary
    # context), as in generation with the sampler's lm_history off (spatial phase).
    p_drop_lm_history: float = 0.0
    eval_clips: int = 16  # test clips of the validation loss


def modality_masks(
    has_video: Tensor,
    has_text: Tensor,
    p_drop_video: float,
    p_drop_text: float,
    curriculum: bool,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """(video_present, text_present), each (B,) bool: independent per-row drops, clips'
    missing modalities dropped, and no video at all during the curriculum."""
    b = has_video.shape[0]
    keep_video = torch.rand(b, generator=generator) >= p_drop_video
    keep_text = torch.rand(b, generator=generator) >= p_drop_text
    video = has_video.cpu() & keep_video & (not curriculum)
    text = has_text.cpu() & keep_text
    return video.to(has_video.device), text.to(has_text.device)


class GeneratorCrops(Dataset):
    """Random crops of ``patches`` patches of every clip's cached features.

    Item: ``latent`` and ``pseudo`` (latent_dim, patches * patch_frames) float32; ``video``
    (patches, G, video_dim) float32, the tokens of each patch's frame; ``saliency``
    (patches, G) float32, SVAC's saliency of it (zeros for a generator without the
    saliency input); ``intensity``
    (patches, 3) float32, the reference's intensity per patch; ``text`` (L, text_dim)
    float32, ``text_mask`` (L,) bool; ``has_video`` and ``has_text`` bool. The crop offset
    comes from NumPy's global RNG, which the stage seeds per item (exact resumption).
    """

    def __init__(self, features: ClipFeatures, patches: int, patch_frames: int) -> None:
        self.features, self.patches, self.patch_frames = features, patches, patch_frames

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        f = self.features
        first = int(np.random.randint(0, f.patches(index) - self.patches + 1))  # noqa: NPY002
        return crop_item(f, index, first, self.patches, self.patch_frames)


def crop_item(f: ClipFeatures, clip: int, first: int, patches: int, pf: int) -> dict[str, Tensor]:
    """The features of patches [first, first + patches) of clip ``clip`` (see GeneratorCrops)."""
    frames = slice(first * pf, (first + patches) * pf)
    index = f.get(clip, "video_index")[first : first + patches]
    return {
        "latent": f.get(clip, "latent")[:, frames].float(),
        "pseudo": f.get(clip, "pseudo")[:, frames].float(),
        "video": f.get(clip, "video")[index].float(),
        "saliency": f.get(clip, "saliency")[first : first + patches].float(),
        "intensity": f.get(clip, "intensity")[first : first + patches].float(),
        "text": f.get(clip, "text").float(),
        "text_mask": f.get(clip, "text_mask"),
        "has_video": torch.tensor(f.has_video(clip)),
        "has_text": torch.tensor(f.has_text(clip)),
    }


class _TrainingLoss(nn.Module):
    """``forward`` = the generator's training loss, so that DDP (which synchronises
    gradients through ``forward``) can wrap it; holds the generator, adds no state."""

    def __init__(self, generator: SpatialGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(
        self,
        z: Tensor,
        cond: Conditioning,
        noise: torch.Generator | None,
        intensity: Tensor | None,
        history_present: Tensor,
        lm_history_present: Tensor | None = None,
    ) -> dict[str, Tensor]:
        return self.generator.losses(z, cond, noise, intensity, history_present, lm_history_present)


class GeneratorStage(Stage):
    name = "generator"
    find_unused_parameters = True  # null embeddings sit out batches that have both modalities

    # ---- model and data ---------------------------------------------------------------

    def build_model(self) -> nn.Module:
        if self.config.preset not in GENERATOR_PRESETS:
            raise InputError(
                f"unknown generator preset {self.config.preset!r}; "
                f"choose one of {', '.join(GENERATOR_PRESETS)}"
            )
        for name in ("p_drop_video", "p_drop_text", "p_drop_history", "p_drop_lm_history"):
            if not 0.0 <= getattr(self.config, name) <= 1.0:
                raise InputError(f"{name} must be in [0, 1], got {getattr(self.config, name)}")
        c = self.config
        if (
            min(c.curriculum_steps, c.clip_patches, c.restart_every, c.direction_weight) < 0
            or c.restart_patches < 1
        ):
            raise InputError(
                "curriculum_steps, clip_patches, restart_every and direction_weight must be "
                ">= 0, restart_patches >= 1"
            )
        initial = self._initial_weights() if self.config.init_from else None
        model = SpatialGenerator.from_config(self.config.preset)
        if initial is not None:
            _load_initial_weights(model, initial, self.config.init_from)
        self._bundle = load_bundle(self.config.bundle)
        _check_bundle_fits(self._bundle, model)
        # The training noise and the modality draws: checkpointed with the other RNGs.
        self.generators["noise"] = torch.Generator().manual_seed(
            derive_seed(_SALT_NOISE, self.seed)
        )
        return model

    def _initial_weights(self) -> dict[str, Tensor]:
        """The generator weights of the ``init_from`` bundle, checked against the preset
        before the model is built."""
        config, state = load_bundle(self.config.init_from).component("generator")
        preset = GENERATOR_PRESETS[self.config.preset].to_dict()
        # The sampler's settings are not the network's; and it may gain the saliency input.
        kept = {k: preset[k] for k in SAMPLER_FIELDS}
        if not config.get("video_saliency", False):
            kept |= {k: preset[k] for k in ("video_saliency", "saliency_window")}
        if config | kept != preset:
            raise InputError(
                f"init_from {self.config.init_from!r}: its generator config differs from "
                f"preset {self.config.preset!r}"
            )
        return state

    def features(self, split: str) -> ClipFeatures:
        """The cached features of DATA/<split> (built on first use)."""
        config = self.model.config
        clips = ClipDataset(Path(self.config.data), split=split)
        return load_or_build_features(
            self.options.out_dir / "features" / f"{split}.safetensors",
            clips,
            self._bundle,
            config.patch_frames,
            config.max_text_tokens,
            config.text_encoder,
            saliency_window=config.saliency_window if config.video_saliency else 0,
            progress=self.options.progress and self.dist.is_main,
        )

    def build_data(self) -> Dataset:
        features = self.features("train")
        self._set_latent_statistics(features)
        self._set_token_mean(features)
        shortest = min(features.patches(i) for i in range(len(features)))
        patches = self.config.clip_patches or shortest
        if patches > shortest:
            raise InputError(
                f"clip_patches {patches} exceeds the shortest training clip ({shortest} patches)"
            )
        return GeneratorCrops(features, patches, self.model.config.patch_frames)

    @torch.no_grad()
    def _set_latent_statistics(self, features: ClipFeatures) -> None:
        """Per-channel mean and std of the training latents into the model's buffers."""
        z = features.latents().double()  # (latent_dim, frames)
        self.model.latent_mean.copy_(z.mean(dim=1).float())
        self.model.latent_std.copy_(z.std(dim=1).clamp(min=1e-6).float())

    @torch.no_grad()
    def _set_token_mean(self, features: ClipFeatures) -> None:
        """Mean SVAC token per grid cell over every video frame of the training clips into
        the video pooler's ``token_mean`` (what a cell looks like without an object)."""
        frames = [features.get(i, "video") for i in range(len(features)) if features.has_video(i)]
        if frames:
            mean = torch.cat(frames).double().mean(dim=0)  # (G, video_dim)
            self.model.lm.video.token_mean.copy_(mean.float())

    # ---- optimisation -----------------------------------------------------------------

    def build_optimizers(self):
        return torch.optim.AdamW(
            self.model.parameters(),
            lr=self.config.lr,
            betas=(0.9, 0.99),
            weight_decay=self.config.weight_decay,
        )

    def build_schedulers(self):
        return {
            "main": warmup_cosine(
                self.optimizers["main"], self.config.warmup_steps, self.config.lr_decay_steps
            )
        }

    def wrap_model(self, model: nn.Module) -> nn.Module:
        loss = _TrainingLoss(model)
        return self.ddp(loss) if self.dist.enabled else loss

    @property
    def patch_frames(self) -> int:
        return self.model.config.patch_frames

    def step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        curriculum = self.global_step < self.config.curriculum_steps
        noise = self.generators["noise"]
        z = batch["pseudo"] if curriculum else batch["latent"]
        every = self.config.restart_every
        restart = bool(every) and self.global_step % every == every - 1
        if restart:
            z, batch = split_into_restarts(z, batch, self.config.restart_patches, self.patch_frames)
        video_present, text_present = modality_masks(
            batch["has_video"],
            batch["has_text"],
            self.config.p_drop_video,
            self.config.p_drop_text,
            curriculum,
            noise,
        )
        cond = Conditioning(
            video=batch["video"],
            video_present=video_present,
            text=batch["text"],
            text_mask=batch["text_mask"],
            text_present=text_present,
            saliency=batch["saliency"],
        )
        # The pseudo-FOA's direction is not the reference's: no direction loss there.
        intensity = None if curriculum or not self.config.direction_weight else batch["intensity"]
        p_drop = 0.0 if curriculum else self.config.p_drop_history
        history_present = (torch.rand(z.shape[0], generator=noise) >= p_drop).to(z.device)
        lm_history_present = None
        if self.config.p_drop_lm_history and not curriculum:
            keep = torch.rand(z.shape[0], generator=noise) >= self.config.p_drop_lm_history
            lm_history_present = keep.to(z.device)
        losses = self.wrapped(
            z,
            cond,
            noise if z.device.type == "cpu" else None,
            intensity,
            history_present,
            lm_history_present,
        )
        loss = losses["flow"]
        if "direction" in losses:
            loss = loss + self.config.direction_weight * losses["direction"]
        opt = self.optimizers["main"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        opt.step()
        both = (video_present & text_present).float().mean()
        aux = {f"{k}_loss": float(v.detach()) for k, v in losses.items() if k != "flow"}
        return {
            "loss": float(loss.detach()),
            "flow_loss": float(losses["flow"].detach()),
            **aux,
            "history_kept": float(history_present.float().mean()),
            "lm_history_kept": 1.0
            if lm_history_present is None
            else float(lm_history_present.float().mean()),
            "lr": opt.param_groups[0]["lr"],
            "grad_norm": float(grad_norm),
            "curriculum": float(curriculum),
            "restart": float(restart),
            "video_kept": float(video_present.float().mean()),
            "text_kept": float(text_present.float().mean()),
            "both_kept": float(both),
        }

    # ---- evaluation ---------------------------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        """On test clips (whole clips, fixed noise), under each condition: full (video +
        caption), video only, text only, none:

        - ``loss_<condition>``: the flow-matching loss (teacher forcing); lower full than
          text than none means the model uses what it is given;
        - ``direction_deg_<condition>``: the clip-level angle between the reference's
          intensity and the direction head's estimate with no history at all (the mean of
          its per-patch unit vectors): how well the LM reads direction from the conditions.
        """
        if not (Path(self.config.data) / "test").is_dir():
            return {}
        features = self.features("test")
        model: SpatialGenerator = self.model
        n = min(self.config.eval_clips, len(features))
        shortest = min(features.patches(i) for i in range(n))
        items = [crop_item(features, i, 0, shortest, model.config.patch_frames) for i in range(n)]
        batch = {k: torch.stack([it[k] for it in items]).to(self.device) for k in items[0]}
        metrics: dict[str, float] = {"clips": float(n)}
        x = model.patches(model.normalise(batch["latent"]))
        no_past = torch.zeros(n, dtype=torch.bool, device=x.device)
        for name, video, text in EVAL_CONDITIONS:
            cond = Conditioning(
                video=batch["video"],
                video_present=batch["has_video"] & video,
                text=batch["text"],
                text_mask=batch["text_mask"],
                text_present=batch["has_text"] & text,
                saliency=batch["saliency"],
            )
            noise = torch.Generator().manual_seed(derive_seed(_SALT_EVAL, self.seed))
            losses = [
                float(model.training_loss(batch["latent"][i : i + 1], _row(cond, i), noise))
                for i in range(n)
            ]
            metrics[f"loss_{name}"] = float(np.mean(losses))
            estimate = model.direction(model.teacher_forced_lm(x, cond, no_past))
            metrics[f"direction_deg_{name}"] = clip_direction_error_deg(
                estimate, batch["intensity"]
            )
        self.log_dict(metrics, f"eval/generator_step{self.global_step}.json")
        return metrics


def clip_direction_error_deg(estimate: Tensor, intensity: Tensor) -> float:
    """Mean over clips of the angle (degrees) between the clip's summed reference intensity
    (B, P, 3) and the mean of the per-patch unit estimates (B, P, 3)."""
    est = F.normalize(estimate.float(), dim=-1).mean(dim=1)
    ref = intensity.float().sum(dim=1)
    cos = F.cosine_similarity(est, ref, dim=-1, eps=1e-8).clamp(-1.0, 1.0)
    return float(torch.rad2deg(torch.arccos(cos)).mean())


def split_into_restarts(
    z: Tensor, batch: dict[str, Tensor], patches: int, patch_frames: int
) -> tuple[Tensor, dict[str, Tensor]]:
    """Cut every row of a batch into pieces of ``patches`` patches, each a row of its own
    (a crop's leftover patches are dropped; a crop shorter than one piece is kept whole).

    z: latents (B, D, F) -> (B * n, D, patches * patch_frames); per-patch entries
    (:data:`PER_PATCH`, (B, P, ...)) -> (B * n, patches, ...); per-clip entries repeat n times.
    """
    b, d, frames = z.shape
    n = frames // (patches * patch_frames)
    if n < 2:
        return z, batch
    f = patches * patch_frames
    z = z[..., : n * f].reshape(b, d, n, f).transpose(1, 2).reshape(b * n, d, f)
    out = {}
    for k, v in batch.items():
        if k in PER_PATCH:
            out[k] = v[:, : n * patches].reshape(b * n, patches, *v.shape[2:])
        else:
            out[k] = v.repeat_interleave(n, dim=0)
    return z, out


def _row(cond: Conditioning, i: int) -> Conditioning:
    """Row ``i`` of a batched conditioning (evaluation runs one clip at a time, on the CPU
    generator's noise, so its figures do not depend on the batch)."""
    return Conditioning(
        video=None if cond.video is None else cond.video[i : i + 1],
        video_present=cond.video_present[i : i + 1],
        text=cond.text[i : i + 1],
        text_mask=cond.text_mask[i : i + 1],
        text_present=cond.text_present[i : i + 1],
        saliency=None if cond.saliency is None else cond.saliency[i : i + 1],
    )


def _load_initial_weights(model: SpatialGenerator, state: dict[str, Tensor], source: str) -> None:
    """Load ``init_from``'s generator weights (any dtype) into ``model``."""
    result = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    optional = model.OPTIONAL_WEIGHTS + model.SALIENCY_INPUT_WEIGHTS
    missing = [k for k in result.missing_keys if not k.startswith(optional)]
    if missing or result.unexpected_keys:
        raise InputError(
            f"init_from {source!r}: generator weights do not fit (missing {missing}, "
            f"unexpected {result.unexpected_keys})"
        )


def _check_bundle_fits(bundle, model: SpatialGenerator) -> None:
    """The bundle's VAE latent and SVAC tokens must have the sizes the preset expects."""
    config = model.config
    vae = bundle.config("vae")
    svac = bundle.config("svac")
    grid = (svac["video_height"] // svac["video_patch"], svac["video_width"] // svac["video_patch"])
    problems = []
    if vae["latent_dim"] != config.latent_dim:
        problems.append(f"VAE latent_dim {vae['latent_dim']} != {config.latent_dim}")
    if svac["video_dim"] != config.video_dim:
        problems.append(f"SVAC video_dim {svac['video_dim']} != {config.video_dim}")
    if grid != tuple(config.video_grid):
        problems.append(f"SVAC token grid {grid} != {tuple(config.video_grid)}")
    if config.video_saliency and not svac.get("spatial_weight", 0.0) > 0:
        problems.append("the generator takes SVAC's saliency, but this SVAC has no spatial code")
    if problems:
        raise InputError(f"bundle {bundle.path} does not fit the generator: {'; '.join(problems)}")


__all__ = [
    "GeneratorCrops",
    "GeneratorStage",
    "GeneratorStageConfig",
    "clip_direction_error_deg",
    "modality_masks",
    "split_into_restarts",
]
