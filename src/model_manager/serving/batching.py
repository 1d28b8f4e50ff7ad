"""Dynamic batching: concurrent requests for one version stacked along the batch axis, run once.

A ``Batcher`` (one per version with batching on) collects requests until it holds
``max_batch_size`` rows or the first one has waited ``max_queue_delay_us``; it concatenates their
inputs along the first axis, runs the model once, and gives each caller exactly its rows of every
output. Requests that cannot be stacked with the others (other outputs asked for, other trailing
shapes or dtypes), and outputs that are not row-aligned, fall back to running alone, so batching
never changes an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import numpy as np

from model_manager.errors import InvalidInput
from model_manager.types import Array, Tensors

Run = Callable[[Tensors, Sequence[str]], Awaitable[tuple[dict[str, Array], float]]]
"""Runs the model once: its outputs by name and the seconds the prediction took."""


@dataclasses.dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int
    """Rows in one batch at most."""
    max_queue_delay_us: int
    """How long the first request of a batch waits for others."""

    @classmethod
    def from_json(cls, data: Any) -> BatchPolicy:
        if not isinstance(data, Mapping) or not data.keys() <= {"max_batch_size",
                                                               "max_queue_delay_us"}:
            raise InvalidInput('batching is {"max_batch_size": 32, "max_queue_delay_us": 500}, '
                               'or null')
        size, delay = data.get("max_batch_size", 32), data.get("max_queue_delay_us", 500)
        for name, value in (("max_batch_size", size), ("max_queue_delay_us", delay)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"{name} is a positive integer, got {value!r}")
        return cls(size, delay)

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class _Pending:
    inputs: Tensors
    names: tuple[str, ...]
    rows: int
    done: asyncio.Future[tuple[dict[str, Array], float]]


class Batcher:
    def __init__(self, policy: BatchPolicy, run: Run,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.policy = policy
        self._run = run
        self._on_batch = on_batch
        """Told the rows of each stacked batch that ran."""
        self._pending: list[_Pending] = []
        self._collector: asyncio.Task[None] | None = None
        self._full = asyncio.Event()

    async def predict(self, inputs: Tensors, names: Sequence[str]) -> tuple[dict[str, Array], float]:
        """This request's outputs, computed in a batch with whatever arrives meanwhile."""
        rows = _rows(inputs)
        if rows is None or rows >= self.policy.max_batch_size:
            return await self._run(inputs, names)
        done: asyncio.Future[tuple[dict[str, Array], float]] = \
            asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(inputs, tuple(names), rows, done))
        if sum(p.rows for p in self._pending) >= self.policy.max_batch_size:
            self._full.set()
        if self._collector is None or self._collector.done():
            self._collector = asyncio.create_task(self._collect())
        return await done

    async def _collect(self) -> None:
        while self._pending:
            self._full.clear()
            if sum(p.rows for p in self._pending) < self.policy.max_batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.policy.max_queue_delay_us / 1e6)
            batch = self._take()
            await self._run_batch(batch)

    def _take(self) -> list[_Pending]:
        """The oldest requests that fit in one batch and stack with the first."""
        first, batch, rows, left = self._pending[0], [], 0, []
        for item in self._pending:
            if rows + item.rows <= self.policy.max_batch_size and _stackable(first, item):
                batch.append(item)
                rows += item.rows
            else:
                left.append(item)
        self._pending = left
        return batch

    async def _run_batch(self, batch: list[_Pending]) -> None:
        if len(batch) == 1:
            await _settle(batch[0], self._run(batch[0].inputs, batch[0].names))
            return
        stacked = {name: np.concatenate([p.inputs[name] for p in batch]) for name in batch[0].inputs}
        try:
            outputs, seconds = await self._run(stacked, batch[0].names)
        except Exception as exc:  # each caller then gets its own answer or error
            if isinstance(exc, asyncio.CancelledError):
                raise
            await asyncio.gather(*(_settle(p, self._run(p.inputs, p.names)) for p in batch))
            return
        total = sum(p.rows for p in batch)
        if self._on_batch is not None:
            self._on_batch(total)
        if any(np.ndim(a) == 0 or np.shape(a)[0] != total for a in outputs.values()):
            await asyncio.gather(*(_settle(p, self._run(p.inputs, p.names)) for p in batch))
            return
        start = 0
        for item in batch:
            if not item.done.done():  # its caller may have gone
                item.done.set_result(({k: v[start:start + item.rows] for k, v in outputs.items()},
                                      seconds))
            start += item.rows


async def _settle(item: _Pending, work: Awaitable[tuple[dict[str, Array], float]]) -> None:
    try:
        result = await work
    except Exception as exc:
        if not item.done.done():
            item.done.set_exception(exc)
    else:
        if not item.done.done():
            item.done.set_result(result)


def _rows(inputs: Tensors) -> int | None:
    """The batch size shared by every input, or None when they do not share one."""
    counts = {a.shape[0] if a.ndim else None for a in inputs.values()}
    if len(counts) != 1:
        return None
    rows = counts.pop()
    return rows if rows else None


def _stackable(a: _Pending, b: _Pending) -> bool:
    return a.names == b.names and a.inputs.keys() == b.inputs.keys() and all(
        a.inputs[k].shape[1:] == b.inputs[k].shape[1:] and a.inputs[k].dtype == b.inputs[k].dtype
        for k in a.inputs)
