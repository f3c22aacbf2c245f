"""The FOA-VAE training stage: reconstruction (per-channel MR-STFT), KL, and after a
warm-up, a multi-scale STFT discriminator with feature matching (DESIGN.md section 4)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from swansphere.errors import InputError
from swansphere.models.vae import FOAVAE, VAE_PRESETS

from ..audio_data import FOACrops
from ..evaluation.plots import foa_spectrogram_figure, plt
from ..evaluation.vae import evaluate_vae
from ..losses.audio import (
    IntensityLoss,
    MultiResolutionSTFTLoss,
    MultiScaleSTFTDiscriminator,
    VAELossWeights,
    default_fft_sizes,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from .base import Stage


@dataclass
class VAEStageConfig:
    """What a VAE run trains on and how (stored in every checkpoint)."""

    data: str  # corpus root (clips under DATA/train, evaluation on DATA/test)
    preset: str = "tiny"  # a key of VAE_PRESETS
    seed: int = 0
    batch_size: int = 8
    crop_frames: int = 16  # latent frames per training crop (16 x 1024 samples = 0.74 s, tiny)
    lr: float = 2e-3  # 5e-4 left the output 15 dB too quiet after 600 steps (measured)
    disc_lr: float = 3e-4
    adversarial_start: int = 2000  # steps of reconstruction-only warm-up before the GAN
    # Steps that decode the posterior mean instead of a sample (None: every step, a
    # KL-regularised autoencoder). A fresh encoder's latents are far smaller than the
    # posterior noise (std softplus(0) = 0.69), so a decoder fed samples learns to ignore
    # them. A deterministic warm-up does not cure it: while the mean is decoded only the KL
    # moves the variance, towards 1, and once sampling starts the decoder drops the latent
    # (measured: the bundle of 2026-11-27, 1000 deterministic steps then 582 sampled,
    # decodes the same W whatever the latent, max difference 0.0016 of 0.035).
    deterministic_steps: int | None = None
    disc_filters: int = 16
    rotate: bool = True  # random 3D rotations of the crops
    # Active-intensity loss (IntensityLoss): per-channel magnitudes ignore the phase between
    # W and the dipoles, and that phase is the direction. The direct path's measured
    # channels carry the direction; this term keeps the convolutional dipole outputs from
    # adding a false one (without the direct path it alone did not get past 60 degrees).
    intensity_weight: float = 1.0
    # |mean(recon) - mean(target)| per channel relative to the target's RMS: snake
    # activations give the decoder a DC offset, and a DC shared by W and a dipole is a
    # constant false direction in every broadband intensity.
    dc_weight: float = 1.0
    eval_clips: int = 16
    # Warm start: the VAE weights of a bundle (default | PATH | models:/NAME@ALIAS), e.g. to
    # continue the shipped model's training on a new corpus. None trains from scratch.
    init_from: str | None = None
    # Train the decoder only (with init_from): the latent space stays exactly the one a
    # generator was trained on, so a better decoder drops into an existing bundle.
    freeze_encoder: bool = False
    weights: dict = field(default_factory=lambda: dataclasses.asdict(VAELossWeights()))


class VAEStage(Stage):
    name = "vae"
    find_unused_parameters = True

    def build_model(self) -> nn.Module:
        config = VAE_PRESETS[self.config.preset]
        rate = config.sample_rate
        vae = FOAVAE(config)
        if self.config.init_from:
            from swansphere.models.bundle import load_bundle

            bundle_config, state = load_bundle(self.config.init_from).component("vae")
            if bundle_config != config.to_dict():
                raise InputError(
                    f"init_from {self.config.init_from!r}: its VAE config {bundle_config} "
                    f"differs from preset {self.config.preset!r}"
                )
            vae.load_state_dict(state)
        return nn.ModuleDict(
            {
                "vae": vae,
                "disc": MultiScaleSTFTDiscriminator(
                    filters=self.config.disc_filters,
                    fft_sizes=tuple(default_fft_sizes(rate)[:3]),
                ),
            }
        )

    def build_data(self):
        config = VAE_PRESETS[self.config.preset]
        samples = self.config.crop_frames * config.hop_length
        return FOACrops(
            Path(self.config.data), "train", samples, config.sample_rate, self.config.rotate
        )

    def build_optimizers(self):
        betas = (0.8, 0.99)
        vae = self.model["vae"]
        if self.config.freeze_encoder:
            vae.encoder.requires_grad_(False)
        trainable = [p for p in vae.parameters() if p.requires_grad]
        return {
            "vae": torch.optim.AdamW(trainable, lr=self.config.lr, betas=betas),
            "disc": torch.optim.AdamW(
                self.model["disc"].parameters(), lr=self.config.disc_lr, betas=betas
            ),
        }

    def step(self, batch: torch.Tensor) -> dict[str, float]:
        vae: FOAVAE = self.model["vae"]
        vae_ddp, disc = self.wrapped["vae"], self.wrapped["disc"]  # DDP wrappers when distributed
        weights = VAELossWeights(**self.config.weights)
        if not hasattr(self, "_mrstft"):
            sizes = default_fft_sizes(vae.config.sample_rate)
            self._mrstft = MultiResolutionSTFTLoss(sizes).to(batch.device)
            self._intensity = IntensityLoss(sizes[:3]).to(batch.device)
        adversarial = self.global_step >= self.config.adversarial_start
        steps = self.config.deterministic_steps
        sample = steps is not None and self.global_step >= steps
        recon, mean, logvar = vae_ddp(batch, sample_posterior=sample)
        rec = self._mrstft(recon, batch)
        terms = {"mrstft": rec.total, "kl": vae.kl(mean, logvar)}
        if weights.l1 > 0:  # waveform L1 relative to the crop's mean |x| (off by default)
            terms["l1"] = (recon - batch).abs().mean() / (batch.abs().mean() + 1e-8)
        intensity = self._intensity(recon, batch)
        dc = self._dc_error(recon, batch)
        per_channel = rec.per_channel.detach()
        metrics = {f"mrstft_{c}": float(v) for c, v in zip("WYZX", per_channel, strict=True)}
        if adversarial:
            fake_logits, fake_feats = disc(recon)
            with torch.no_grad():
                _, real_feats = disc(batch)
            terms["adversarial"] = generator_adversarial_loss(fake_logits)
            terms["feature_matching"] = feature_matching_loss(real_feats, fake_feats)
        else:  # reconstruction-only warm-up
            weights = dataclasses.replace(weights, adversarial=0.0, feature_matching=0.0)
        loss = (
            weights.total(terms)
            + self.config.intensity_weight * intensity
            + self.config.dc_weight * dc
        )
        opt = self.optimizers["vae"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(vae.parameters(), 5.0)
        opt.step()
        if adversarial:
            real_logits, _ = disc(batch)
            fake_logits, _ = disc(recon.detach())
            d_loss = discriminator_loss(real_logits, fake_logits)
            self.optimizers["disc"].zero_grad(set_to_none=True)
            d_loss.backward()
            self.optimizers["disc"].step()
            metrics["disc_loss"] = float(d_loss.detach())
        # The progress bar shows the first four entries.
        metrics = {
            "loss": float(loss.detach()),
            "intensity": float(intensity.detach()),
            "dc": float(dc.detach()),
            **{k: float(v.detach()) for k, v in terms.items()},
            **metrics,
        }
        metrics["grad_norm"] = float(grad_norm)
        return metrics

    @staticmethod
    def _dc_error(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean over batch and channels of |mean_t(recon - target)| / RMS_t(target)."""
        rms = target.pow(2).mean(dim=-1).sqrt() + 1e-6
        return ((recon - target).mean(dim=-1).abs() / rms).mean()

    def evaluate(self) -> dict[str, float]:
        result = evaluate_vae(
            self.model["vae"], Path(self.config.data), "test", self.config.eval_clips
        )
        original, recon = result.pop("example")
        self.log_dict(result, f"eval/vae_step{self.global_step}.json")
        rate = self.model["vae"].config.sample_rate
        step = f"step_{self.global_step:08d}"
        self.log_audio_example(original, rate, f"audio/{step}_original.wav")
        self.log_audio_example(recon, rate, f"audio/{step}_reconstruction.wav")
        figure = foa_spectrogram_figure(original, recon, rate, f"FOA-VAE, step {self.global_step}")
        self.log_figure(figure, f"plots/{step}_spectrogram.png")
        plt.close(figure)
        flat = {k: v for k, v in result.items() if isinstance(v, float | int)}
        flat.update({f"mrstft_{k}": v for k, v in result["mrstft_per_channel"].items()})
        return flat
