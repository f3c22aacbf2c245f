"""Where SwanSphere keeps what it can rebuild or download again (compiled engines, bundles
fetched from a model registry): ``$SWANSPHERE_CACHE``, else ``~/.cache/swansphere``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache directory (not created here)."""
    root = os.environ.get("SWANSPHERE_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "swansphere"


__all__ = ["cache_root"]
