"""The process's resident memory, as the model cache measures it.

A model's size is what its load adds to the process's RSS. For that to be honest in both
directions, memory freed by an unload must go back to the system: glibc keeps freed heap pages
unless ``malloc_trim`` asks it to return them, so the cache trims after each load and unload.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os


def process_rss() -> int:
    """Resident set size of this process, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def release_freed_memory() -> None:
    """Return freed heap memory to the system where the C library allows it."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
