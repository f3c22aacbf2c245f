"""Generator training features, computed once per corpus split with a bundle's frozen models.

The generator trains on what the frozen FOA-VAE, SVAC video encoder and caption encoder
make of each clip, never on raw audio or pixels, so these are computed once and cached in
one safetensors file per split (``OUT/features/<split>.safetensors``, written atomically).
Per clip (keys ``<clip id>.<name>``):

- ``latent`` (latent_dim, F) float32: VAE posterior mean of the clip's FOA, resampled to the
  VAE rate and cut to whole patches (F = patches * patch_frames);
- ``pseudo`` (latent_dim, F) float32: the same for the clip's pseudo-FOA (the curriculum,
  DESIGN.md section 4): a stereo pair of virtual cardioids at +-90 deg,
  L = 0.5 (W + Y), R = 0.5 (W - Y), becomes W' = L + R (= W, the level of the original),
  and one of X, Y, Z (``pseudo_axis`` 0, 1, 2, drawn per clip from its id) holds L - R (= Y);
  the other two dipoles are zero. One axis per clip keeps the cache to two VAE passes;
- ``video`` (frames, G, video_dim) float16: SVAC tokens of every video frame on its own,
  brought to the canvas as the server does (``panorama_canvases`` and ``frame_cues`` of
  :mod:`swansphere.generation.conditioning`), and ``video_index`` (P,) int64: the frame
  conditioning each patch (:func:`patch_frame_index`, frame i shown at i / fps); a clip
  without video has one zero frame and ``has_video`` false;
- ``saliency`` (P, G) float32: SVAC's spatial-code saliency of each patch's frame against
  the running mean of the last ``saliency_window`` patches' frames
  (:func:`swansphere.generation.conditioning.patch_saliency`, as a stream computes it);
  zeros when the spec's ``saliency_window`` is 0 (a generator without the saliency input)
  or the clip has no video;
- ``intensity`` (P, 3) float32: the clip's broadband intensity (x, y, z) per patch
  (:func:`swansphere.foa.doa.segment_intensity` of the FOA at the VAE rate): the direction
  targets of the generator's auxiliary loss. Caches written before it existed gain it on
  load (:func:`add_missing_intensity`, audio only, no model pass);
- ``text`` (L, text_dim) float16 and ``text_mask`` (L,) bool: caption token states
  (:meth:`CaptionEncoder.encode_tokens`, L = the generator's ``max_text_tokens``); a clip
  without a caption has an all-false mask and ``has_text`` false.

The file's metadata records what the features depend on (the sha256 of the bundle's VAE
encoder and SVAC video encoder weights, with its saliency's when saliency is computed,
:func:`feature_digest`, the text encoder, the patch and caption sizes, the saliency window,
and each clip's id, caption and audio size);
:func:`load_or_build_features` rebuilds a cache whose record differs from what the current
run would write, so a stale cache is never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from swansphere.errors import InputError
from swansphere.foa.doa import segment_intensity
from swansphere.foa.encode import pseudo_foa as fold_pseudo_foa
from swansphere.foa.io import resample
from swansphere.generation.conditioning import (
    frame_cues,
    panorama_canvases,
    patch_frame_index,
    patch_saliency,
)
from swansphere.models.bundle import Bundle, fsync_dir
from swansphere.models.svac import SVAC

from .clip import AUDIO_FILE
from .dataset import ClipDataset, ClipRecord

log = logging.getLogger(__name__)

FEATURES_FORMAT = 1
_META_KEY = "swansphere_features"
_PSEUDO_AXES = "xyz"  # the dipole of pseudo_axis 0, 1, 2
_TEXT_BATCH = 64
# The parts of each bundle component the features come from: the VAE's encoder and SVAC's
# video encoder. A new decoder or new projection heads leave the features (and a generator
# trained on them) valid.
FEATURE_WEIGHTS = {"vae": ("encoder.",), "svac": ("video_encoder.",)}


def pseudo_foa(foa: np.ndarray, axis: int) -> np.ndarray:
    """Pseudo-FOA (4, n) of AmbiX FOA (4, n): the cardioid pair L, R = 0.5 (W +- Y) at
    +-90 deg folded by :func:`swansphere.foa.encode.pseudo_foa` (W' = L + R, dipole
    ``axis`` (0 = X, 1 = Y, 2 = Z) = L - R, the others zero); same dtype as ``foa``."""
    if axis not in (0, 1, 2):
        raise InputError(f"pseudo-FOA axis must be 0 (X), 1 (Y) or 2 (Z), got {axis}")
    pair = 0.5 * np.stack([foa[0] + foa[1], foa[0] - foa[1]])
    return fold_pseudo_foa(pair, _PSEUDO_AXES[axis]).astype(foa.dtype, copy=False)


def pseudo_axis(clip_id: str) -> int:
    """The dipole axis (0 = X, 1 = Y, 2 = Z) of a clip's pseudo-FOA: fixed by its id."""
    return zlib.crc32(clip_id.encode()) % 3


@dataclass(frozen=True)
class FeatureSpec:
    """What the features depend on besides the clips (recorded in the cache)."""

    vae_digest: str  # feature_digest of the VAE (its encoder)
    svac_digest: str  # feature_digest of SVAC (its video encoder; with saliency, its video side)
    text_encoder: str  # "minilm" or a local model path
    patch_frames: int
    max_text_tokens: int
    saliency_window: int = 0  # patches; 0: no saliency

    @classmethod
    def of(
        cls,
        bundle: Bundle,
        patch_frames: int,
        max_text_tokens: int,
        text_encoder: str,
        saliency_window: int = 0,
    ):
        return cls(
            vae_digest=feature_digest("vae", bundle.component("vae")[1]),
            svac_digest=feature_digest("svac", bundle.component("svac")[1], saliency_window > 0),
            text_encoder=text_encoder,
            patch_frames=int(patch_frames),
            max_text_tokens=int(max_text_tokens),
            saliency_window=int(saliency_window),
        )


def tensor_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's contents (names, dtypes, shapes and bytes, sorted by name):
    the same weights give the same digest whichever file or bundle they were read from."""
    digest = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def feature_digest(component: str, state: dict[str, torch.Tensor], saliency: bool = False) -> str:
    """:func:`tensor_digest` of the weights of ``component`` ("vae" or "svac") that the
    features depend on (:data:`FEATURE_WEIGHTS`; with ``saliency``, also the video side of
    SVAC's spatial code, :data:`SVAC.SALIENCY_WEIGHTS`)."""
    extra = SVAC.SALIENCY_WEIGHTS if saliency and component == "svac" else ()
    prefixes = FEATURE_WEIGHTS[component] + extra
    return tensor_digest({k: v for k, v in state.items() if k.startswith(prefixes)})


def _clip_record(clip: ClipRecord) -> dict[str, Any]:
    """What a clip's features depend on: its caption and audio file (size, as a cheap check)."""
    caption = clip.caption_text() or ""
    return {
        "caption_sha256": hashlib.sha256(caption.encode()).hexdigest(),
        "audio_bytes": (clip.path / AUDIO_FILE).stat().st_size,
        "has_video": clip.has_video,
    }


class ClipFeatures:
    """The cached features of one split, in memory: ``ids`` and per-clip tensors (see the
    module docstring), plus ``has_video`` / ``has_text`` / ``patches`` per clip."""

    def __init__(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.meta = meta
        self.ids: list[str] = list(meta["clips"])
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, clip: int, name: str) -> torch.Tensor:
        return self.tensors[f"{self.ids[clip]}.{name}"]

    def has_video(self, clip: int) -> bool:
        return bool(self.meta["clips"][self.ids[clip]]["has_video"])

    def has_text(self, clip: int) -> bool:
        return bool(self.meta["clips"][self.ids[clip]]["has_text"])

    def patches(self, clip: int) -> int:
        return int(self.get(clip, "video_index").shape[0])

    def latents(self) -> torch.Tensor:
        """All clips' real latents, frames concatenated: (latent_dim, total frames)."""
        return torch.cat([self.get(i, "latent") for i in range(len(self))], dim=1)


def _expected_meta(spec: FeatureSpec, clips: ClipDataset) -> dict[str, Any]:
    return {
        "format": FEATURES_FORMAT,
        **spec.__dict__,
        "clips": {c.id: _clip_record(c) for c in clips},
    }


def _read_cache(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[_META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        log.warning("feature cache %s is unreadable (%s); rebuilding", path, exc)
        return None
    return tensors, meta


def read_feature_meta(path: Path) -> dict[str, Any] | None:
    """The record of a feature cache (what its features depend on), or None when the file
    is missing or unreadable."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {})[_META_KEY])
    except (OSError, KeyError, ValueError, RuntimeError):
        return None


def _matches(meta: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Whether a cache's record matches, ignoring what the build adds (has_text, axes, ...)."""
    if any(meta.get(k) != v for k, v in expected.items() if k != "clips"):
        return False
    clips = meta.get("clips") or {}
    if set(clips) != set(expected["clips"]):
        return False
    return all(
        all(clips[i].get(k) == v for k, v in rec.items()) for i, rec in expected["clips"].items()
    )


def load_or_build_features(
    path: Path,
    clips: ClipDataset,
    bundle: Bundle,
    patch_frames: int,
    max_text_tokens: int,
    text_encoder: str = "minilm",
    saliency_window: int = 0,
    progress: bool = True,
) -> ClipFeatures:
    """The features of ``clips`` from the cache at ``path``, built first when the cache is
    missing, unreadable or stale (another bundle, caption, clip set, size or saliency
    window)."""
    if len(clips) == 0:
        raise InputError(f"no clips under {clips.root}/{clips.split or ''} to compute features of")
    spec = FeatureSpec.of(bundle, patch_frames, max_text_tokens, text_encoder, saliency_window)
    expected = _expected_meta(spec, clips)
    if path.is_file():
        cached = _read_cache(path)
        if cached is not None and _matches(cached[1], expected):
            log.info("using cached generator features %s (%d clips)", path, len(clips))
            tensors, meta = cached
            if add_missing_intensity(tensors, clips, bundle, patch_frames):
                _write_atomic(path, tensors, meta)
            return ClipFeatures(tensors, meta)
        if cached is not None:
            log.warning("feature cache %s is stale (bundle, captions or clips changed)", path)
    tensors, meta = build_features(clips, bundle, spec, expected, progress)
    _write_atomic(path, tensors, meta)
    return ClipFeatures(tensors, meta)


def _clip_foa(clip: ClipRecord, rate: int, patch_samples: int) -> tuple[np.ndarray, int]:
    """A clip's FOA (4, patches * patch_samples) float32 at ``rate``, and its patch count."""
    foa, clip_rate = clip.load_audio()
    foa = resample(foa, clip_rate, rate)
    patches = foa.shape[1] // patch_samples
    if patches < 1:
        raise InputError(f"clip {clip.id} is shorter than one generator patch")
    return np.ascontiguousarray(foa[:, : patches * patch_samples], dtype=np.float32), patches


def _intensity(foa: np.ndarray, patch_samples: int) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(segment_intensity(foa, patch_samples), np.float32))


def add_missing_intensity(
    tensors: dict[str, torch.Tensor], clips: ClipDataset, bundle: Bundle, patch_frames: int
) -> bool:
    """Add the per-patch ``intensity`` of clips whose cached features lack it (caches from
    before it existed); returns whether anything was added."""
    missing = [c for c in clips if f"{c.id}.intensity" not in tensors]
    if not missing:
        return False
    from swansphere.models.vae import VAEConfig

    vae = VAEConfig.from_dict(bundle.config("vae"))
    rate, patch_samples = vae.sample_rate, patch_frames * vae.hop_length
    for clip in tqdm(missing, desc="patch intensity", unit="clip", disable=len(missing) < 50):
        foa, _ = _clip_foa(clip, rate, patch_samples)
        tensors[f"{clip.id}.intensity"] = _intensity(foa, patch_samples)
    return True


@torch.inference_mode()
def build_features(
    clips: ClipDataset,
    bundle: Bundle,
    spec: FeatureSpec,
    meta: dict[str, Any],
    progress: bool = True,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Compute every clip's features (see the module docstring) on the CPU."""
    from swansphere.models.text import CaptionEncoder

    vae, svac = bundle.build("vae"), bundle.build("svac")
    rate, hop = vae.config.sample_rate, vae.hop_length
    patch_samples = spec.patch_frames * hop
    patch_seconds = patch_samples / rate
    tensors: dict[str, torch.Tensor] = {}
    records = meta["clips"]
    for clip in tqdm(clips, desc="generator features", unit="clip", disable=not progress):
        foa, patches = _clip_foa(clip, rate, patch_samples)
        tensors[f"{clip.id}.intensity"] = _intensity(foa, patch_samples)
        axis = pseudo_axis(clip.id)
        both = torch.from_numpy(np.stack([foa, pseudo_foa(foa, axis)]))
        mean, _ = vae.encode(both)  # (2, latent_dim, F)
        tensors[f"{clip.id}.latent"] = mean[0].contiguous()
        tensors[f"{clip.id}.pseudo"] = mean[1].contiguous()
        cells = svac_token_shape(svac)[0]
        saliency = torch.zeros(patches, cells)
        if clip.has_video:
            frames, fps = clip.load_video()  # (n, H, W, 3) uint8
            size = svac.video_encoder.frame_size
            video = panorama_canvases(frames, size)  # as served
            cues = frame_cues(svac, video, patch_embeddings=spec.saliency_window > 0)
            tokens = cues.tokens.to(torch.float16)
            index = patch_frame_index(patches, patch_seconds, np.arange(len(frames)) / fps)
            if spec.saliency_window:
                per_patch = cues[torch.from_numpy(np.asarray(index, dtype=np.int64))]
                saliency = patch_saliency(svac, per_patch, spec.saliency_window)
        else:
            tokens = torch.zeros(1, *svac_token_shape(svac), dtype=torch.float16)
            index = np.zeros(patches, dtype=np.int64)
        tensors[f"{clip.id}.video"] = tokens.contiguous()
        tensors[f"{clip.id}.saliency"] = saliency.float().contiguous()
        tensors[f"{clip.id}.video_index"] = torch.from_numpy(np.asarray(index, dtype=np.int64))
        records[clip.id].update({"pseudo_axis": axis, "patches": int(patches)})
    captions = [clip.caption_text() or "" for clip in clips]
    encoder = CaptionEncoder(None if spec.text_encoder == "minilm" else spec.text_encoder)
    for start in range(0, len(clips), _TEXT_BATCH):
        chunk = captions[start : start + _TEXT_BATCH]
        states, mask = encoder.encode_tokens(chunk, spec.max_text_tokens)
        for k, clip in enumerate(clips[start : start + _TEXT_BATCH]):
            tensors[f"{clip.id}.text"] = states[k].to(torch.float16).contiguous()
            tensors[f"{clip.id}.text_mask"] = mask[k].contiguous()
            records[clip.id]["has_text"] = bool(chunk[k])
    return tensors, meta


def svac_token_shape(svac) -> tuple[int, int]:
    """(G, video_dim) of one frame's SVAC tokens."""
    rows, cols = svac.video_encoder.grid
    return rows * cols, svac.video_encoder.dim


def _write_atomic(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write the cache through a temporary file and a rename (never a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={_META_KEY: json.dumps(meta, sort_keys=True)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


__all__ = [
    "FEATURE_WEIGHTS",
    "ClipFeatures",
    "FeatureSpec",
    "add_missing_intensity",
    "build_features",
    "feature_digest",
    "load_or_build_features",
    "pseudo_axis",
    "pseudo_foa",
    "read_feature_meta",
    "tensor_digest",
]
