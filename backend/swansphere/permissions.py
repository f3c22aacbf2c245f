"""Permissions of what is written atomically.

``tempfile.mkstemp`` and ``mkdtemp`` make private files (0600) and folders (0700): right
for a temporary, wrong for the output it becomes once renamed into place, which another
account (a DAW, a web server, a training job) should read as it reads any file this user
writes. :func:`publish` gives the file or folder what ``open()`` or ``mkdir()`` would
have: 0o666 or 0o777 less the process umask.
"""

from __future__ import annotations

import os


def _umask() -> int:
    """The process umask, read the only way POSIX offers (setting it and back), once."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _umask()


def publish(path: str | os.PathLike) -> None:
    """Give a file or folder made by ``mkstemp``/``mkdtemp`` the permissions of one made
    by ``open()``/``mkdir()`` (its contents keep theirs)."""
    base = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, base & ~UMASK)


__all__ = ["UMASK", "publish"]
