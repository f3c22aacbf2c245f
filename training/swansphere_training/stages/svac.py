"""The SVAC training stage: symmetric InfoNCE between panoramic video and FOA with the
four negative kinds (batch, time shift, 3D rotation, panorama roll), plus a caption-audio
head so captions share the space (ODPO's semantic reward uses it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from swansphere.errors import InputError
from swansphere.foa.panorama import grid_directions
from swansphere.models.bundle import load_bundle
from swansphere.models.direction import VideoDirectionConfig
from swansphere.models.svac import SVAC, SVAC_PRESETS, SVACConfig
from swansphere.models.text import CaptionEncoder

from ..data.dataset import ClipDataset, TorchClipDataset, frame_indices
from ..evaluation.plots import plt, saliency_figure, similarity_figure
from ..evaluation.svac import evaluate_svac, svac_window
from ..losses.svac import (
    NegativeConfig,
    activity_source_loss,
    build_negatives,
    part_shift_loss,
    source_activity_map,
    source_saliency_map,
    svac_loss,
    text_audio_loss,
)
from .base import Stage, linear_warmup, preset_network
from .direction import cell_loss, direction_component


@dataclass
class SVACStageConfig:
    """What an SVAC run trains on and how (stored in every checkpoint)."""

    data: str  # corpus root (DATA/train for training, DATA/test for evaluation)
    preset: str = "tiny"  # a key of SVAC_PRESETS
    seed: int = 0
    batch_size: int = 16
    lr: float = 3e-4  # after the warm-up; 1e-3 collapses at temperature 0.07
    warmup_steps: int = 200  # linear LR warm-up
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    text_weight: float = 0.5  # weight of the caption-audio InfoNCE
    negatives: dict = field(default_factory=lambda: dataclasses.asdict(NegativeConfig()))
    eval_clips: int = 128
    # A bundle (path, "default" or models:/NAME@ALIAS) whose SVAC encoders start this run;
    # the heads, the activity map and (unless init_spatial) the spatial code start fresh.
    init_from: str | None = None
    # Keep the video tokens exactly those of init_from (VideoMAE and its output norm
    # frozen): a generator trained on that bundle's tokens stays valid with this SVAC.
    freeze_video_tokens: bool = False
    # Also start the spatial code from init_from's (when it has one of the same shape).
    init_spatial: bool = False
    # Start every weight from init_from's (the heads and the activity map too): a
    # fine-tuning run. Implies init_spatial.
    init_all: bool = False
    # With init_spatial and freeze_video_tokens, also keep the video saliency exactly
    # init_from's: a generator conditioned on it (video_saliency) stays valid too.
    freeze_saliency: bool = False
    # Weight of the activity map's source supervision: 1 - the correlation over the
    # window of its video side with the sounding sources' map from clip.json
    # (losses.svac.source_activity_map). Procedural clips only; others add nothing.
    source_activity_weight: float = 0.0
    # Weight of the spatial code saliency's source supervision: the KL divergence of its
    # saliency (SVAC.code_saliency) from the sounding sources' map over the token grid
    # (losses.svac.source_saliency_map), per video step. Procedural clips only. With
    # freeze_saliency only a refinement (model saliency_refine) can learn from it.
    source_saliency_weight: float = 0.0
    # Weight of an InfoNCE of the content part alone against the time-shift negatives
    # (losses.svac.part_shift_loss). The joint loss leaves the shifts to the activity map,
    # which tells them apart first; this asks the content to follow the pulsing too.
    content_shift_weight: float = 0.0
    # A bundle whose direction cue the SVAC carries (frozen) when model cue_share > 0: the
    # spatial code's saliency mixes in the cue's cell map. The cue's network config is
    # written into model["cue"] when this config is made, so checkpoints record it.
    cue_from: str | None = None
    # SVACConfig fields that differ from the preset's, e.g. {"activity_weight": 0.0} for
    # the ablation without the activity map.
    model: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        carries = isinstance(self.model, dict) and self.model.get("cue_share")
        if carries and self.cue_from and "cue" not in self.model:
            self.model = self.model | {"cue": direction_component(self.cue_from, "cue_from")[0]}


def network_config(stage: SVACStageConfig | dict) -> SVACConfig:
    """The SVAC network of a stage config (or its dict in a checkpoint): the preset with
    the stage's ``model`` fields changed. InputError names an unknown preset or field."""
    return preset_network(stage, SVAC_PRESETS, "SVAC")


def negative_config(settings: dict) -> NegativeConfig:
    """The stage's ``negatives`` mapping as a :class:`NegativeConfig`; InputError names an
    unknown key (a typo would otherwise surface as a TypeError at the first step)."""
    known = {f.name for f in dataclasses.fields(NegativeConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InputError(f"unknown SVAC negatives setting(s) {unknown}; known: {sorted(known)}")
    return NegativeConfig(**settings)


class SVACStage(Stage):
    name = "svac"
    find_unused_parameters = True

    def build_model(self) -> nn.Module:
        config = network_config(self.config)
        if self.config.freeze_video_tokens and not self.config.init_from:
            raise InputError(
                "freeze_video_tokens needs init_from: frozen random tokens are useless"
            )
        init_spatial = self.config.init_spatial or self.config.init_all
        if init_spatial and not self.config.init_from:
            raise InputError(
                "init_spatial and init_all need init_from: the bundle to take the weights from"
            )
        if self.config.freeze_saliency and not (init_spatial and self.config.freeze_video_tokens):
            raise InputError(
                "freeze_saliency needs init_spatial (or init_all) and freeze_video_tokens: "
                "the saliency depends on both the spatial code and the video tokens"
            )
        for name in ("source_activity_weight", "source_saliency_weight", "content_shift_weight"):
            if getattr(self.config, name) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self.config, name)}")
        if self.config.source_saliency_weight > 0 and config.spatial_weight <= 0:
            raise InputError("source_saliency_weight needs a network with a spatial code")
        if (
            self.config.source_saliency_weight > 0
            and self.config.freeze_saliency
            and not config.saliency_refine
        ):
            raise InputError(
                "source_saliency_weight with freeze_saliency has nothing to train: add "
                "model saliency_refine=true (the spatial code's own refinement)"
            )
        shifts = negative_config(self.config.negatives)
        if self.config.content_shift_weight > 0 and not (shifts.time_shift and shifts.n_time_shift):
            raise InputError(
                "content_shift_weight needs time-shift negatives (negatives time_shift on, "
                "n_time_shift >= 1)"
            )
        if self.config.source_activity_weight > 0 and config.activity_weight <= 0:
            raise InputError("source_activity_weight needs a network with an activity map")
        if self.config.cue_from and config.cue_share <= 0:
            raise InputError("cue_from needs model cue_share > 0: nothing would read the cue")
        if config.cue_share > 0 and not self.config.cue_from:
            raise InputError(
                "model cue_share needs cue_from: the bundle whose direction cue the SVAC carries"
            )
        model = SVAC(config)
        if self.config.init_all:
            load_svac(model, self.config.init_from, supplied=("cue.",) if model.cue else ())
        elif self.config.init_from:
            load_encoders(model, self.config.init_from, spatial=init_spatial)
        if model.cue is not None:
            load_carried_cue(model, self.config.cue_from)
        if self.config.freeze_video_tokens:
            model.freeze_video_tokens()
        if self.config.freeze_saliency:
            model.freeze_saliency()
        return model

    def build_data(self):
        config = network_config(self.config)
        samples, frames = svac_window(config)
        clips = ClipDataset(Path(self.config.data), split="train", require_video=True)
        self._captions = CaptionEncoder()
        self._metas = {record.id: record.meta for record in clips}
        return TorchClipDataset(
            clips,
            num_samples=samples,
            sample_rate=config.sample_rate,
            num_frames=frames,
            frame_size=(config.video_width, config.video_height),
            random_crop=True,
            cache=True,
        )

    def build_schedulers(self):
        return {"main": linear_warmup(self.optimizers["main"], self.config.warmup_steps)}

    def collate(self, items):
        from ..data.dataset import collate_clips

        return collate_clips(items)

    def step(self, batch: dict) -> dict[str, float]:
        model: SVAC = self.model
        negatives_config = negative_config(self.config.negatives)
        foa, video = batch["foa"], batch["video"]
        video_emb, audio_emb = self.wrapped(video, foa)
        # The negatives' draws come from the global NumPy RNG, which checkpoints restore.
        rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))  # noqa: NPY002
        negatives = build_negatives(model, foa, video, negatives_config, rng, audio_emb.shape[1])
        loss, metrics = svac_loss(
            video_emb,
            audio_emb,
            negatives,
            config=negatives_config,
            temperature=model.config.temperature,
        )
        if negatives.shifted_audio is not None:
            c_loss, c_top1 = part_shift_loss(
                video_emb,
                audio_emb,
                negatives.shifted_audio,
                model.config.parts()["content"],
                model.config.content_weight,
                temperature=model.config.temperature,
            )
            metrics["content_shift_top1"] = c_top1
            if self.config.content_shift_weight > 0:
                loss = loss + self.config.content_shift_weight * c_loss
                metrics["content_shift_loss"] = float(c_loss.detach())
        captions = list(batch["caption"])
        text, present = self._captions.encode_with_mask(captions)
        text = text.clone()  # the encoder runs in inference mode; autograd needs a normal tensor
        if present.any():
            t_loss, t_metrics = text_audio_loss(
                model.embed_text(text.to(audio_emb.device)),
                audio_emb,
                temperature=model.config.temperature,
                valid=present.clone().to(audio_emb.device),
            )
            loss = loss + self.config.text_weight * t_loss
            metrics.update({f"text_{k}": v for k, v in t_metrics.items()})
        if self.config.source_activity_weight > 0:
            s_loss, corr = self._source_activity_loss(batch)
            loss = loss + self.config.source_activity_weight * s_loss
            metrics["source_activity_corr"] = corr
        if self.config.source_saliency_weight > 0:
            s_loss = self._source_saliency_loss(batch)
            loss = loss + self.config.source_saliency_weight * s_loss
            metrics["source_saliency_kl"] = s_loss.detach()
        opt = self.optimizers["main"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        metrics["grad_norm"] = float(
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.grad_clip)
        )
        opt.step()
        metrics["total_loss"] = float(loss.detach())
        return {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, float | int) or torch.is_tensor(v)
        }

    def _source_targets(
        self, batch: dict, target: Callable[[dict, np.ndarray], np.ndarray | None], shape: tuple
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per crop of a batch, ``target(clip.json, the instants (s) of the frames the
        dataset showed)`` (frame_indices), stacked (B, *shape), with a (B,) mask of the
        crops that have one (zeros in their place otherwise)."""
        video = batch["video"]
        frames = video.shape[1]
        window_s = svac_window(self.model.config)[0] / self.model.config.sample_rate
        maps, valid = [], []
        for clip_id, start_s in zip(batch["id"], batch["start_s"].tolist(), strict=True):
            shot = (self._metas.get(clip_id) or {}).get("video") or {}
            fps, count = float(shot.get("fps") or 0.0), int(shot.get("frames") or 0)
            found = None
            if fps > 0 and count > 0:
                shown = frame_indices(start_s, window_s, frames, fps, count) / fps
                found = target(self._metas[clip_id], shown)
            valid.append(found is not None)
            maps.append(found if found is not None else np.zeros(shape))
        stacked = torch.from_numpy(np.stack(maps).astype(np.float32)).to(video.device)
        return stacked, torch.tensor(valid, device=video.device)

    def _source_activity_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The activity map's source supervision on a batch (see source_activity_weight)."""
        model: SVAC = self.model
        order = model.config.spatial_order
        source_maps, valid = self._source_targets(
            batch,
            lambda meta, shown: source_activity_map(meta, shown, order),
            (batch["video"].shape[1], model.config.map_dim),
        )
        return activity_source_loss(model.activity_video_map(batch["video"]), source_maps, valid)

    def _source_saliency_loss(self, batch: dict) -> torch.Tensor:
        """The spatial code saliency's source supervision on a batch (see
        source_saliency_weight): KL of the sources' map from the code's saliency."""
        model: SVAC = self.model
        directions = grid_directions(*model.video_encoder.grid)
        tubelet = model.config.video_tubelet
        saliency = model.code_saliency(batch["video"])
        cells, valid = self._source_targets(
            batch,
            lambda meta, shown: source_saliency_map(meta, shown, directions, tubelet),
            tuple(saliency.shape[1:]),
        )
        return cell_loss(saliency, cells, valid[:, None].expand(-1, saliency.shape[1]))

    def evaluate(self) -> dict[str, float]:
        result = evaluate_svac(self.model, Path(self.config.data), "test", self.config.eval_clips)
        similarity = result.pop("similarity")
        saliency = result.pop("saliency", None)
        self.log_dict(result, f"eval/svac_step{self.global_step}.json")
        figure = similarity_figure(
            similarity, f"SVAC video-audio similarity, step {self.global_step}"
        )
        self.log_figure(figure, f"plots/step_{self.global_step:08d}_similarity.png")
        plt.close(figure)
        if saliency is not None:
            figure = saliency_figure(
                saliency["frames"],
                saliency["maps"],
                f"SVAC video saliency, step {self.global_step}",
            )
            self.log_figure(figure, f"plots/step_{self.global_step:08d}_saliency.png")
            plt.close(figure)
        metrics = {k: v for k, v in result.items() if isinstance(v, float | int)}
        return metrics | result.get("parts", {})


# Encoder fields that must agree for init_from's weights to fit.
_ENCODER_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(SVACConfig)
    if f.name.startswith(("video_", "audio_"))
    or f.name in ("sample_rate", "latent_hop", "feature_hop", "n_fft", "n_mels")
)


def load_encoders(model: SVAC, source: str, spatial: bool = False) -> None:
    """Copy the video and audio encoders of bundle ``source``'s SVAC into ``model``; with
    ``spatial``, its spatial code too (InputError when either side has none, or sizes differ)."""
    config, state = load_bundle(source).component("svac")
    theirs = SVACConfig.from_dict(config)
    mismatch = [
        f"{name}: {getattr(theirs, name)} vs {getattr(model.config, name)}"
        for name in _ENCODER_FIELDS
        if getattr(theirs, name) != getattr(model.config, name)
    ]
    if mismatch:
        raise InputError(
            f"init_from {source!r}: its SVAC encoders do not fit this preset "
            f"({'; '.join(mismatch)})"
        )
    prefixes = ("video_encoder.", "audio_encoder.")
    if spatial:
        if model.spatial is None or not any(k.startswith("spatial.") for k in state):
            raise InputError(
                f"init_spatial: {source!r} and this model must both have a spatial code"
            )
        prefixes += ("spatial.",)
    encoders = {k: v.float() for k, v in state.items() if k.startswith(prefixes)}
    result = model.load_state_dict(encoders, strict=False)
    missing = [k for k in result.missing_keys if k.startswith(prefixes)]
    if missing or result.unexpected_keys:
        raise InputError(
            f"init_from {source!r}: SVAC encoder weights do not fit "
            f"(missing {missing}, unexpected {result.unexpected_keys})"
        )


def load_svac(model: SVAC, source: str, supplied: tuple[str, ...] = ()) -> None:
    """Copy every weight of bundle ``source``'s SVAC into ``model`` (a fine-tuning start);
    InputError when the networks differ in any weight's name or shape, except weights of
    ``model`` that start at zero (:attr:`SVAC.ZERO_START_WEIGHTS`) or whose names start
    with one of ``supplied`` (loaded from elsewhere), which may be new."""
    config, state = load_bundle(source).component("svac")
    ours = model.state_dict()
    if model.cue is None and any(k.startswith("cue.") for k in state):
        raise InputError(
            f"init_all {source!r}: its SVAC carries a direction cue (cue_share "
            f"{config.get('cue_share')}); carry one too: --set cue_from=BUNDLE --set "
            "'model={\"cue_share\": S}'"
        )
    excused = SVAC.ZERO_START_WEIGHTS + supplied
    new = {k for k in set(ours) - set(state) if k.startswith(excused)}
    differ = sorted((set(ours) - new) ^ set(state)) + [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in ours.items()
        if k in state and state[k].shape != v.shape
    ]
    if differ:
        raise InputError(
            f"init_all {source!r}: its SVAC does not fit this network ({'; '.join(differ[:5])})"
        )
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=not new)


def load_carried_cue(model: SVAC, source: str) -> None:
    """Copy bundle ``source``'s direction cue into the cue ``model`` carries; InputError
    when its network differs from ``model``'s ``cue`` config."""
    config, state = direction_component(source, "cue_from")
    if VideoDirectionConfig.from_dict(config) != model.config.cue_config:
        raise InputError(
            f"cue_from {source!r}: its cue network {config} differs from this SVAC's "
            f"{model.config.cue}"
        )
    model.cue.load_state_dict({k: v.float() for k, v in state.items()})
