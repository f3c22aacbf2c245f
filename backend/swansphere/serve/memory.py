"""Give freed heap back to the OS between sessions (glibc only; a no-op elsewhere).

Every session runs its generation on a fresh thread, and glibc gives threads their own
malloc arenas; torch and the decoders leave those arenas fragmented, so a long-running
server's RSS creeps up though nothing leaks. Capping the arena count and trimming after
each session keeps it flat (``swansphere bench serve``: RSS after 100 dropped sessions).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

_M_ARENA_MAX = -8
_lock = threading.Lock()
_libc = None


def _load():
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.malloc_trim  # noqa: B018 (raises AttributeError off glibc)
        except (OSError, AttributeError):
            _libc = False
    return _libc


def limit_arenas(count: int = 2) -> bool:
    """Cap glibc malloc arenas for threads started from now on; True if applied."""
    libc = _load()
    return bool(libc) and libc.mallopt(_M_ARENA_MAX, int(count)) == 1


def trim() -> None:
    """Return free heap pages to the OS (glibc ``malloc_trim(0)``)."""
    libc = _load()
    if libc:
        with _lock:
            libc.malloc_trim(0)
