from swansphere.bench.machine import cpu_description
from swansphere.bench.render import bench_render


def test_bench_render_reports_and_agrees_with_textbook_renderer():
    result = bench_render(block=128, streams=4, sample_rate=48000, seconds=0.1)
    for key in (
        "block",
        "streams",
        "ours_x_realtime_per_core",
        "baseline_x_realtime_per_core",
        "speedup",
    ):
        assert key in result
    assert result["streams"] == 4 and result["block"] == 128
    # Both renderers compute the same signal when the head is still.
    assert result["max_abs_diff_at_fixed_pose"] < 1e-9
    assert result["cpu"] == cpu_description()
