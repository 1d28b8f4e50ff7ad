"""Clock: the wall clock, shifted by the seconds written in an offset file, re-read on change."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from model_manager.clock import Clock

DAY = 86400.0


def offset_of(clock: Clock) -> float:
    """The clock's offset from time.time(), to a tenth of a second."""
    before = time.time()
    return round(clock() - before, 1)


def write(path: Path, text: str, mtime_ns: int | None = None) -> None:
    """Write the file; with ``mtime_ns``, stamp it so, as an edit at another time would."""
    path.write_text(text)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_without_a_file_the_clock_is_the_wall_clock() -> None:
    before = time.time()
    now = Clock()()
    assert before <= now <= time.time()


def test_the_file_offset_shifts_the_clock(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    write(path, "2592000\n")
    assert offset_of(Clock(path)) == 30 * DAY


def test_a_negative_or_fractional_offset_shifts_the_clock_back(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    write(path, " -3600.5 ")
    assert offset_of(Clock(path)) == -3600.5


def test_a_changed_offset_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    write(path, "3600")
    clock = Clock(path)
    assert offset_of(clock) == 3600
    write(path, "-86400")
    assert offset_of(clock) == -DAY


def test_a_rewrite_of_the_same_length_is_picked_up_when_the_file_time_changes(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    write(path, "3600", mtime_ns=1_700_000_000_000_000_000)
    clock = Clock(path)
    assert offset_of(clock) == 3600
    write(path, "7200", mtime_ns=1_700_000_001_000_000_000)
    assert offset_of(clock) == 7200


def test_a_missing_file_is_no_offset(tmp_path: Path) -> None:
    assert offset_of(Clock(tmp_path / "absent")) == 0


def test_removing_the_file_drops_the_offset_and_writing_it_again_restores_it(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    write(path, "3600")
    clock = Clock(path)
    assert offset_of(clock) == 3600
    path.unlink()
    assert offset_of(clock) == 0
    write(path, "3600")
    assert offset_of(clock) == 3600


def test_an_empty_file_is_no_offset(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    write(path, "3600")
    clock = Clock(path)
    assert offset_of(clock) == 3600
    write(path, "\n")
    assert offset_of(clock) == 0


def test_garbage_keeps_the_previous_offset_and_warns_once(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "offset"
    write(path, "3600")
    clock = Clock(path)
    assert offset_of(clock) == 3600
    write(path, "thirty days")
    with caplog.at_level(logging.WARNING, logger="model_manager.clock"):
        assert offset_of(clock) == 3600
        assert offset_of(clock) == 3600
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert str(path) in record.getMessage()
    assert "thirty days" in record.getMessage()
    assert "keeping an offset of 3600s" in record.getMessage()


def test_garbage_in_a_new_file_keeps_no_offset(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "offset"
    write(path, "soon")
    with caplog.at_level(logging.WARNING, logger="model_manager.clock"):
        assert offset_of(Clock(path)) == 0
    assert "keeping an offset of 0s" in caplog.text


def test_a_fixed_file_after_garbage_is_picked_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "offset"
    write(path, "oops")
    clock = Clock(path)
    with caplog.at_level(logging.WARNING, logger="model_manager.clock"):
        assert offset_of(clock) == 0
    write(path, "600")
    assert offset_of(clock) == 600


def test_a_non_finite_offset_keeps_the_previous_one(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    path.write_text("100")
    clock = Clock(path)
    assert clock() - time.time() == pytest.approx(100, abs=1)
    path.write_text("nan\n")
    assert clock() - time.time() == pytest.approx(100, abs=1)
