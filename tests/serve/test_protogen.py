"""The committed generated modules match protos/ (regenerate with ``make proto``)."""

from swansphere.serve import protogen


def test_generated_code_is_up_to_date(tmp_path):
    written = protogen.generate(out_dir=tmp_path)
    assert written
    for path in written:
        committed = protogen.OUT_DIR / path.name
        assert committed.read_text() == path.read_text(), f"{committed} is stale: run make proto"
