import json
from dataclasses import replace

import pytest

from swansphere.captions import CallableCaptioner, regions_in_caption
from swansphere.errors import InputError
from swansphere_training.corpus.captioning import caption_corpus
from swansphere_training.corpus.scene import PRESETS
from swansphere_training.corpus.synth import synthesize_corpus

TINY = replace(PRESETS["small"], seconds=3.0, max_distractors=0, moving_probability=0.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    synthesize_corpus(
        root, clips=6, seed=4, split="test", config=TINY, workers=1, n_sources=1, progress=False
    )
    synthesize_corpus(
        root, clips=3, seed=4, split="val", config=TINY, workers=1, n_sources=2, progress=False
    )
    return root


def test_captions_written_and_scored(corpus):
    summary = caption_corpus(corpus, progress=False)
    assert summary["captioned"] == 9 and summary["skipped"] == 0
    assert summary["by_sources"]["1"]["clips"] == 6 and summary["by_sources"]["2"]["clips"] == 3
    assert summary["by_sources"]["1"]["doa_mean_error_deg"] < 20.0  # 90+ on a convention slip
    assert summary["by_sources"]["1"]["region_accuracy"] >= 0.8
    record = json.loads(next((corpus / "test").glob("*/caption.json")).read_text())
    assert record["caption"] and record["trajectory"] and record["structured"]["sources"]
    assert regions_in_caption(record["caption"])


def test_plugged_in_captioner_receives_structured_json(corpus):
    seen = []

    def fake_llm(scene_json):
        seen.append(scene_json)
        return "An LLM says: something on the left."

    summary = caption_corpus(
        corpus, split="test", captioner=CallableCaptioner(fake_llm), progress=False
    )
    assert summary["captioned"] == 6 and len(seen) == 6
    assert "sources" in seen[0] and seen[0]["sources"][0]["track"]


def test_broken_clip_is_skipped_with_reason(corpus, tmp_path):
    import shutil

    root = tmp_path / "c"
    shutil.copytree(corpus / "test", root / "test")
    victim = sorted((root / "test").iterdir())[0]
    (victim / "clip.wav").write_bytes(b"garbage")
    summary = caption_corpus(root, progress=False)
    assert summary["skipped"] == 1 and "cannot read" in summary["skipped_reasons"][0][1]
    with pytest.raises(InputError, match="no clips"):
        caption_corpus(tmp_path / "empty", progress=False)
