import urllib.request

from swansphere.serve.metrics import Metrics, serve_metrics


def test_text_format_and_http_endpoint():
    m = Metrics()
    m.inc("swansphere_chunks_sent_total", 3, "chunks")
    m.set("swansphere_queue_depth", 2)
    m.observe("swansphere_ttfc_seconds", 0.12, "ttfc")
    m.observe("swansphere_ttfc_seconds", 0.3)
    text = m.render()
    assert "# TYPE swansphere_chunks_sent_total counter" in text
    assert "swansphere_chunks_sent_total 3.0" in text
    assert 'swansphere_ttfc_seconds_bucket{le="0.15"} 1' in text
    assert 'swansphere_ttfc_seconds_bucket{le="+Inf"} 2' in text
    assert "swansphere_ttfc_seconds_count 2" in text
    count, total = m.histogram("swansphere_ttfc_seconds")
    assert count == 2 and abs(total - 0.42) < 1e-12
    assert m.histogram("swansphere_never_observed_seconds") == (0, 0.0)
    http = serve_metrics(m, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{http.server_address[1]}/metrics"
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        assert "swansphere_queue_depth 2.0" in body
    finally:
        http.shutdown()
