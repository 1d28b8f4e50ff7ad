"""The process's resident memory, as the model cache measures it.

A model's size is what its load adds to the process's RSS. For that to be honest in both
directions, memory freed by an unload must go back to the system: glibc keeps freed heap pages
unless ``malloc_trim`` asks it to return them, so the cache trims after each load and unload.
And glibc's default raises its mmap threshold each time a large block is freed, after which
large blocks (model weights) come from per-thread arenas whose tops ``malloc_trim`` does not
shrink: a later load then reuses that memory and measures as nothing. ``tune_allocator`` fixes
the threshold so large blocks are always mapped and unmapped on their own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os

_M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
_LARGE_BLOCK = 1024 * 1024


def process_rss() -> int:
    """Resident set size of this process, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def release_freed_memory() -> None:
    """Collect garbage, then return freed heap memory to the system where the C library allows
    it. Frameworks leave large buffers in reference cycles (Keras loads, torch.fx modules): only
    a collection frees them, and a measurement that skipped it would count or miss them."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def freeze_startup_objects() -> None:
    """Exempt everything allocated so far (modules, the app) from garbage collection, so the
    full collections that keep measurements honest scan only what came later (~100 ms -> ~0)."""
    gc.collect()
    gc.freeze()


def tune_allocator() -> None:
    """Serve blocks of 1 MiB and more by mmap, so freeing them returns them to the system."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, _LARGE_BLOCK)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    libc = _libc()
    return getattr(libc, "malloc_trim", None)  # glibc only: not musl, not macOS
