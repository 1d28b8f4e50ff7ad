"""Where a version's predictions run: on the event loop, when they take microseconds (a trip to
a worker thread would cost more than the prediction), else in a worker thread.

The choice comes from the wall times of recent predictions, read so that waiting for the
interpreter does not pass for the model's cost. A prediction on the loop can be held up for a
switch interval (5 ms) when the runtime releases the interpreter and another thread takes it;
one in a worker thread waits for the interpreter while the loop serves everyone else. So:

- a version leaves the loop when the median of its last few runs there is over the bound (one
  held-up run does not move it), or at once when a run takes ``WAIT_BOUND`` or more;
- a version comes (back) to the loop when its fastest recent run in a thread was under the
  bound: waiting only ever adds to a run, so the fastest says what the model costs.

Wall times only, never CPU time: a model that sleeps or waits on I/O is never taken for a
cheap one.
"""

from __future__ import annotations

import collections
import statistics

INLINE_BELOW = 500e-6
"""A version whose predictions take less than this runs on the event loop... A trip to a worker
thread and back costs about 170 us of CPU per request on one core at 8 connections (a text
classifier of ~250 us: 1,479 req/s in threads, 2,015 on the loop), so below this bound the
trip costs more than the loop's wait."""
INLINE_MAX_ELEMENTS = 4096
"""...for requests of at most this many input elements."""
WAIT_BOUND = 0.02
"""A run on the loop this long moves the version off it at once."""
WINDOW = 8
"""Recent runs remembered, on the loop and in threads."""
MEDIAN_OF = 3
"""Runs on the loop needed before their median can move the version off it."""


class Placement:
    """One version's recent run times and where its next prediction runs."""

    __slots__ = ("_in_threads", "_on_loop", "inline")

    def __init__(self) -> None:
        self.inline = False
        """Whether the next (small) prediction runs on the event loop."""
        self._on_loop: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self._in_threads: collections.deque[float] = collections.deque(maxlen=WINDOW)

    def ran_inline(self, seconds: float) -> None:
        self._on_loop.append(seconds)
        if seconds < INLINE_BELOW:
            return
        if seconds >= WAIT_BOUND or (len(self._on_loop) >= MEDIAN_OF
                                     and statistics.median(self._on_loop) >= INLINE_BELOW):
            self.inline = False
            self._in_threads.clear()

    def ran_in_thread(self, seconds: float) -> None:
        self._in_threads.append(seconds)
        if not self.inline and min(self._in_threads) < INLINE_BELOW:
            self.inline = True
            self._on_loop.clear()
