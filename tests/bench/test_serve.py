"""``bench serve`` on a random tiny model with the smallest settings (about 10 s)."""

import pytest

from swansphere.bench.machine import cpu_model
from swansphere.bench.serve import bench_serve
from swansphere.serve.live import TTFC_GENERATE_PARTS, TTFC_STAGES


def test_bench_serve_reports_where_the_first_chunk_went(monkeypatch):
    from swansphere.serve import memory

    trims = []
    real_trim = memory.trim
    monkeypatch.setattr(memory, "trim", lambda: (trims.append(1), real_trim()))
    result = bench_serve(
        model="random:tiny:0", steps=2, trials=2, seconds=0.5, max_sessions=1, dropped_sessions=2
    )
    assert len(result["ttfc_ms_trials"]) == 2 and result["ttfc_ms"] > 0
    split = result["ttfc_split_ms"]
    assert list(split) == [*TTFC_STAGES, *TTFC_GENERATE_PARTS, "client"]
    # The server's stages lie inside each trial's client-side time, so what is left for
    # the client (set-up, transport) is never negative, and the generation of the first
    # patch is a real share of it.
    assert all(v >= 0 for v in split.values())
    assert split["generate"] > 0
    mean_trial = sum(result["ttfc_ms_trials"]) / 2
    assert sum(split[k] for k in (*TTFC_STAGES, "client")) == pytest.approx(mean_trial, abs=0.5)
    assert 0 < sum(split[k] for k in TTFC_GENERATE_PARTS) <= split["generate"] + 0.2
    assert 0 < result["session_open_ms"] < mean_trial
    assert result["sessions_left_open"] == 0 and result["rtf"] > 0
    assert result["cpu"].startswith(cpu_model()) and result["cpu_cores"] >= 1
    # Both memory readings come after a trim of the free heap (the sessions' own trims
    # run in the server's module, which imported trim before the patch).
    assert len(trims) == 2 and result["rss_mb_before"] > 0 and result["rss_mb_after"] > 0
