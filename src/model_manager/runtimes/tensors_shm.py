"""Tensors through shared memory: one process writes arrays into a segment, the other reads
them by name, dtype, shape and offset, so no tensor is pickled through a pipe.

A segment grows (a new, larger one under a new name) when a write does not fit; the reader
attaches by the name each message carries. BYTES (object) arrays cannot live in shared memory
and travel pickled in the message instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from multiprocessing import shared_memory

import numpy as np

from model_manager.types import Array

Layout = list[tuple[str, str, tuple[int, ...], int] | tuple[str, Array]]
"""Each tensor: (name, dtype, shape, offset) in the segment, or (name, array) pickled."""

_ALIGN = 64
_MIN_SIZE = 1 << 16


class TensorWriter:
    """Owns a segment this process writes tensors into (and unlinks it when closed)."""

    def __init__(self) -> None:
        self._segment: shared_memory.SharedMemory | None = None

    def write(self, tensors: Mapping[str, Array]) -> tuple[str, Layout]:
        """The segment's name and where each tensor lies in it."""
        tensors = {name: np.asarray(array) for name, array in tensors.items()}
        need = sum(_padded(a.nbytes) for a in tensors.values() if a.dtype.kind != "O")
        segment = self._room(need)
        layout: Layout = []
        offset = 0
        for name, array in tensors.items():
            if array.dtype.kind == "O":
                layout.append((name, array))
                continue
            view = np.ndarray(array.shape, array.dtype, segment.buf, offset)
            view[...] = array
            layout.append((name, array.dtype.str, array.shape, offset))
            offset += _padded(array.nbytes)
        return segment.name, layout

    def close(self) -> None:
        if self._segment is not None:
            _release(self._segment, unlink=True)
            self._segment = None

    def _room(self, need: int) -> shared_memory.SharedMemory:
        if self._segment is None or self._segment.size < need:
            self.close()
            self._segment = shared_memory.SharedMemory(create=True, size=max(_MIN_SIZE, 2 * need))
        return self._segment


class TensorReader:
    """Reads tensors from the segments another process writes, attaching by name."""

    def __init__(self) -> None:
        self._segment: shared_memory.SharedMemory | None = None

    def read(self, name: str, layout: Layout, copy: bool = True) -> dict[str, Array]:
        """The tensors; views into the segment unless ``copy`` (views last until the next
        read)."""
        segment = self._attach(name)
        tensors: dict[str, Array] = {}
        for entry in layout:
            if len(entry) == 2:
                tensors[entry[0]] = entry[1]
                continue
            key, dtype, shape, offset = entry
            view: Array = np.ndarray(shape, np.dtype(dtype), segment.buf, offset)
            tensors[key] = view.copy() if copy else view
        return tensors

    def close(self, unlink: bool = False) -> None:
        """Detach; ``unlink`` also removes the segment, when its writer died without doing so."""
        if self._segment is not None:
            _release(self._segment, unlink)
            self._segment = None

    def _attach(self, name: str) -> shared_memory.SharedMemory:
        if self._segment is None or self._segment.name != name:
            self.close()
            self._segment = shared_memory.SharedMemory(name=name)
        return self._segment


def _padded(size: int) -> int:
    return (size + _ALIGN - 1) // _ALIGN * _ALIGN


def _release(segment: shared_memory.SharedMemory, unlink: bool) -> None:
    with contextlib.suppress(BufferError):  # a view still exported: it goes with the process
        segment.close()
    if unlink:
        with contextlib.suppress(FileNotFoundError):
            segment.unlink()
