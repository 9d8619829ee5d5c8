"""glibc malloc settings that keep a worker's resident memory close to its live data."""

from __future__ import annotations

import os
import sys

__all__ = ["MALLOC_SETTINGS", "tune_malloc"]

_MMAP_THRESHOLD, _TRIM_THRESHOLD = 2**25, 2**27  # bytes: 32 MB, 128 MB

#: glibc ``mallopt`` settings :func:`tune_malloc` applies (the values of :data:`WORKER_CONFIG`):
#: ``M_MMAP_THRESHOLD`` (-3) 32 MB, ``M_TRIM_THRESHOLD`` (-1) 128 MB.
MALLOC_SETTINGS = ((-3, _MMAP_THRESHOLD), (-1, _TRIM_THRESHOLD))
_malloc_tuned = False


def tune_malloc() -> bool:
    """Let glibc keep freed memory for reuse in this process (once; True if applied).

    Per-run arrays of events (hundreds of kB) are allocated and freed many times a second.
    By default glibc returns such blocks to the system and the next allocation page-faults
    them back in, which costs a 2D build time (docs/performance.rst). Called by the
    per-run tasks, it sets :data:`MALLOC_SETTINGS` with ``mallopt``: the process keeps up to
    128 MB of freed heap. Applies on Linux with glibc only; set the environment variable
    ``XBKG_MALLOC_TUNING=0`` to leave malloc alone.
    """
    global _malloc_tuned
    if _malloc_tuned:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("XBKG_MALLOC_TUNING", "1") == "0":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        _malloc_tuned = all(libc.mallopt(option, value) == 1 for option, value in MALLOC_SETTINGS)
    except (OSError, AttributeError):  # not glibc
        return False
    return _malloc_tuned
