"""FOA-VAE evaluation: direction preservation, per-channel MR-STFT, streaming vs offline.

``angular_error_deg``: the clip-level broadband direction (research-code estimator,
mean of W * (X, Y, Z)) of the input against that of the reconstruction, great-circle
degrees, averaged over clips. ``mrstft``: the multi-resolution STFT loss per AmbiX
channel (W, Y, Z, X). ``streaming_max_abs_diff``: the largest sample difference between
decoding the latents 4 frames at a time with the streaming decoder and decoding them
all at once. ``example``: the first clip and its reconstruction, (4, n) each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from swansphere.foa.doa import angular_error, clip_direction
from swansphere.models.vae import FOAVAE, StreamingDecoder

from ..data.dataset import ClipDataset
from ..losses.audio import MultiResolutionSTFTLoss, default_fft_sizes

CHANNELS = ("W", "Y", "Z", "X")


@torch.no_grad()
def evaluate_vae(
    vae: FOAVAE, root: Path, split: str | None = "test", max_clips: int = 64, seconds: float = 4.0
) -> dict:
    """Metrics of ``vae`` on up to ``max_clips`` clips (the first ``seconds`` of each)."""
    vae.eval()
    rate = vae.config.sample_rate
    hop = vae.hop_length
    samples = int(seconds * rate) // hop * hop
    loss = MultiResolutionSTFTLoss(default_fft_sizes(rate))
    clips = [c for c in ClipDataset(root, split=split) if c.sample_rate == rate][:max_clips]
    if not clips:
        raise ValueError(f"no {rate} Hz clips under {root}/{split or ''}")
    errors, per_channel, stream_diff, example = [], [], 0.0, None
    for i, clip in enumerate(clips):
        foa, _ = clip.load_audio()
        n = min(samples, foa.shape[1]) // hop * hop  # whole latent frames
        x = torch.from_numpy(np.ascontiguousarray(foa[:, :n], dtype=np.float32))[None]
        mean, _ = vae.encode(x)
        recon = vae.decode(mean)
        az_in, el_in = clip_direction(x[0].double().numpy())
        az_out, el_out = clip_direction(recon[0].double().numpy())
        errors.append(float(np.rad2deg(angular_error(az_in, el_in, az_out, el_out))))
        per_channel.append(loss(recon, x).per_channel.numpy())
        if example is None:
            example = (x[0].numpy(), recon[0].numpy())
        if i < 4:
            stream = StreamingDecoder(vae)
            chunks = [
                stream.decode_chunk(mean[..., k : k + 4]) for k in range(0, mean.shape[-1], 4)
            ]
            stream_diff = max(stream_diff, float((torch.cat(chunks, -1) - recon).abs().max()))
    channel_means = np.mean(per_channel, axis=0)
    return {
        "clips": len(clips),
        "seconds_per_clip": samples / rate,
        "angular_error_deg": float(np.mean(errors)),
        "angular_error_deg_median": float(np.median(errors)),
        "mrstft": float(np.mean(channel_means)),
        "mrstft_per_channel": {c: float(v) for c, v in zip(CHANNELS, channel_means, strict=True)},
        "streaming_max_abs_diff": stream_diff,
        "example": example,  # (original, reconstruction) FOA of the first clip
    }
