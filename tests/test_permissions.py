"""Outputs written atomically (through mkstemp / mkdtemp, private by default) end up
with the permissions a plain open() or mkdir() gives: another account reads them."""

import os
from pathlib import Path

from swansphere.models.bundle import atomic_directory
from swansphere.permissions import publish
from swansphere_training.data.clip import write_clip_dir


def modes(tmp_path: Path) -> tuple[int, int]:
    (tmp_path / "plain_file").write_bytes(b"")
    (tmp_path / "plain_dir").mkdir()
    return (
        (tmp_path / "plain_file").stat().st_mode & 0o777,
        (tmp_path / "plain_dir").stat().st_mode & 0o777,
    )


def test_atomic_folders_and_clips_read_like_plain_ones(tmp_path):
    file_mode, dir_mode = modes(tmp_path)
    with atomic_directory(tmp_path / "bundle") as tmp:
        (tmp / "manifest.json").write_text("{}")
    clip = write_clip_dir(
        tmp_path / "train", "clip-0", lambda d: (d / "clip.json").write_text("{}")
    )
    for folder in (tmp_path / "bundle", clip):
        assert folder.stat().st_mode & 0o777 == dir_mode
        assert all(f.stat().st_mode & 0o777 == file_mode for f in folder.iterdir())


def test_publish_sets_what_open_and_mkdir_give(tmp_path):
    import tempfile

    file_mode, dir_mode = modes(tmp_path)
    fd, name = tempfile.mkstemp(dir=tmp_path)
    os.close(fd)
    folder = tempfile.mkdtemp(dir=tmp_path)
    assert Path(name).stat().st_mode & 0o777 == 0o600  # what publish is for
    publish(name)
    publish(folder)
    assert Path(name).stat().st_mode & 0o777 == file_mode
    assert Path(folder).stat().st_mode & 0o777 == dir_mode
