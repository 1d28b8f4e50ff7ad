"""``Clock``: the server's wall clock, which a file may shift forward or back.

Everything time-based that is stored or judged (upload and audit times, usage days, staleness,
purge ages) reads this clock. With ``--clock-file`` it adds the number of seconds written in that
file, re-read whenever the file changes, so a time-based policy can be tried out or tested
("what does the report say 30 days from now?") on a running server. Without it, it is
``time.time``. ``iso`` writes such a time for JSON.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import overload

log = logging.getLogger(__name__)


class Clock:
    def __init__(self, offset_file: Path | None = None) -> None:
        self._file = offset_file
        self._stamp: tuple[int, int] | None = None
        self._offset = 0.0

    def __call__(self) -> float:
        """Seconds since the epoch, shifted by the file's offset."""
        if self._file is not None:
            self._reread(self._file)
        return time.time() + self._offset

    def reader(self) -> Callable[[], float]:
        """What reads this clock at least cost: ``time.time`` itself when no file shifts it
        (for a caller that reads it on every request)."""
        return time.time if self._file is None else self

    def _reread(self, path: Path) -> None:
        """Take the file's offset if it changed; a missing file is no offset, and an
        unreadable one keeps the previous offset."""
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            self._stamp, self._offset = None, 0.0
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            text = path.read_text().strip()
            offset = float(text) if text else 0.0
            if not math.isfinite(offset):
                raise ValueError(f"{text!r} is not a number of seconds")
            self._offset = offset
        except (OSError, ValueError) as exc:
            log.warning("clock file %s: %s; keeping an offset of %gs", path, exc, self._offset)


@overload
def iso(at: float, timespec: str = "seconds") -> str: ...


@overload
def iso(at: None, timespec: str = "seconds") -> None: ...


def iso(at: float | None, timespec: str = "seconds") -> str | None:
    """``at`` (seconds since the epoch) as an ISO 8601 time in UTC, to ``timespec`` as
    ``datetime.isoformat`` takes it; no time (None) stays None."""
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec=timespec)
