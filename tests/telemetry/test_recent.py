"""RecentUsage: minute buckets of the last hour, hour buckets of the last day, and their JSON."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model_manager.telemetry.recent import RecentUsage, fleet_report, recent_report, total

KEY = ("iris", 1)
HOUR = 3600.0
START = 1_800_000_000.0 - 1_800_000_000.0 % HOUR
"""The start of an hour (and so of a minute)."""
MS = 0.001


def requests(recent: RecentUsage, at: float, n: int, key: tuple[str, int] = KEY,
             outcome: str = "ok", seconds: float = 2 * MS) -> None:
    for _ in range(n):
        recent.add(key, outcome, seconds, seconds / 2, at)


def test_each_minute_is_a_bucket_of_the_hour_and_each_hour_one_of_the_day() -> None:
    recent = RecentUsage()
    requests(recent, START + 10, 2)
    requests(recent, START + 70, 3)
    requests(recent, START + 75, 1, outcome="runtime_error")
    requests(recent, START + 190, 4)

    minutes = recent.series(KEY, "hour", now=START + 200)
    assert [(start - START, c.requests, c.errors) for start, c in minutes] == [
        (0, 2, 0), (60, 4, 1), (180, 4, 0)]
    hours = recent.series(KEY, "day", now=START + 200)
    assert [(start - START, c.requests) for start, c in hours] == [(0, 10)]


def test_buckets_past_the_span_are_left_out() -> None:
    recent = RecentUsage()
    requests(recent, START + 10, 1)
    requests(recent, START + HOUR + 10, 1)
    an_hour_later = recent.series(KEY, "hour", now=START + HOUR + 20)
    assert [start - START for start, _ in an_hour_later] == [HOUR]
    assert [start - START for start, _ in recent.series(KEY, "day", now=START + HOUR + 20)] == [0, HOUR]
    assert recent.versions(now=START + HOUR + 20) == [KEY]
    assert recent.versions(now=START + 26 * HOUR) == []  # nothing in the last day
    assert recent.series(KEY, "day", now=START + 26 * HOUR) == []


def test_the_day_is_the_last_24_hours_from_the_start_of_the_hour() -> None:
    recent = RecentUsage()
    requests(recent, START - 24 * HOUR - 10, 1)  # in the 25th hour back: left out
    requests(recent, START - 24 * HOUR + 10, 2)  # the start of the hour 24 hours ago
    requests(recent, START + 50 * 60, 3)
    now = START + 55 * 60
    assert [(start - START, c.requests) for start, c in recent.series(KEY, "day", now)] == [
        (-24 * HOUR, 2), (0, 3)]
    assert (recent.totals(now)[KEY].day.requests, recent.totals(now)[KEY].hour.requests) == (5, 3)


def test_reading_forgets_nothing_and_forget_idle_drops_what_the_day_left() -> None:
    recent = RecentUsage()
    requests(recent, START, 1)
    requests(recent, START + 20 * HOUR, 1, key=("iris", 2))
    a_day_later = START + 26 * HOUR
    assert recent.versions(a_day_later) == [("iris", 2)]
    assert recent.totals(a_day_later).keys() == {("iris", 2)}
    assert len(recent.series(KEY, "hour", now=START)) == 1  # only left out: still held

    recent.forget_idle(a_day_later)
    assert recent.series(KEY, "hour", now=START) == []  # gone, whatever the clock reads
    assert recent.versions(a_day_later) == [("iris", 2)]


def test_series_are_copies() -> None:
    recent = RecentUsage()
    requests(recent, START, 1)
    [(_, counts)] = recent.series(KEY, "hour", now=START)
    counts.requests = 99
    assert recent.series(KEY, "hour", now=START)[0][1].requests == 1


def test_recent_report_lists_every_version_with_its_buckets() -> None:
    recent = RecentUsage()
    requests(recent, START + 10, 3, seconds=4 * MS)
    now = START + 30
    report = recent_report("iris", "hour", now, {1: recent.series(KEY, "hour", now), 2: []})
    assert (report["span"], report["step_seconds"]) == ("hour", 60)
    assert report["until"] == "2027-01-15T08:00:30+00:00"
    assert report["since"] == "2027-01-15T07:01:00+00:00"
    one, two = report["versions"]
    assert (one["version"], one["requests"], two["version"], two["requests"]) == (1, 3, 2, 0)
    assert [(b["start"], b["requests"]) for b in one["buckets"]] == [("2027-01-15T08:00:00+00:00", 3)]
    assert one["buckets"][0]["p99_ms"] == pytest.approx(4, rel=0.25)
    assert two["buckets"] == []


def test_fleet_report_totals_each_model_over_its_versions() -> None:
    recent = RecentUsage()
    requests(recent, START - 2 * HOUR, 5, key=("iris", 1))
    requests(recent, START + 10, 2, key=("iris", 1))
    requests(recent, START + 20, 1, key=("iris", 2), outcome="bad_input", seconds=900 * MS)
    requests(recent, START + 30, 1, key=("other", 1))
    now = START + 40
    report = fleet_report(now, recent.totals(now))
    assert report["until"] == "2027-01-15T08:00:40+00:00"
    iris, other = report["models"]
    assert (iris["model"], other["model"]) == ("iris", "other")
    assert (iris["hour"]["requests"], iris["hour"]["errors"], iris["day"]["requests"]) == (3, 1, 8)
    assert iris["hour"]["p99_ms"] == pytest.approx(900, rel=0.25)  # over both versions' requests
    assert [(v["version"], v["hour"]["requests"], v["day"]["requests"]) for v in iris["versions"]] == [
        (1, 2, 7), (2, 1, 1)]
    assert (other["hour"]["requests"], other["day"]["requests"]) == (1, 1)


def test_totals_match_the_series_they_sum() -> None:
    recent = RecentUsage()
    for minute in range(0, 24 * 60, 7):
        requests(recent, START - 23 * HOUR + minute * 60, 1 + minute % 3)
    now = START + 30
    totals = recent.totals(now)[KEY]
    for span, counts in (("hour", totals.hour), ("day", totals.day)):
        series = recent.series(KEY, span, now)
        assert counts.requests == sum(c.requests for _, c in series) > 0
        assert counts.latency == total(series).latency


def test_an_hour_adds_its_rolled_up_minutes_to_those_still_in_the_last_hour() -> None:
    recent = RecentUsage()
    requests(recent, START + 10, 1)  # rolled up into its hour by the request below
    requests(recent, START + 3590, 2)  # the same hour, still within the last hour
    requests(recent, START + HOUR + 120, 4)
    now = START + HOUR + 130
    assert [(start - START, c.requests) for start, c in recent.series(KEY, "day", now)] == [
        (0, 3), (HOUR, 4)]
    assert [(start - START, c.requests) for start, c in recent.series(KEY, "hour", now)] == [
        (3540, 2), (HOUR + 120, 4)]


@given(rows=st.lists(st.tuples(st.floats(0, 2), st.one_of(st.none(), st.floats(0, 1)),
                               st.floats(START - 2 * HOUR, START + HOUR)), min_size=1, max_size=30),
       earlier=st.integers(0, 5))
def test_adding_many_at_once_fills_the_buckets_as_adding_each(
        rows: list[tuple[float, float | None, float]], earlier: int) -> None:
    """Requests that span minutes and hours, out of order, after some already counted."""
    together, one_by_one = RecentUsage(), RecentUsage()
    for recent in (together, one_by_one):
        requests(recent, START - HOUR, earlier)
    seconds, inference, at = (list(column) for column in zip(*rows, strict=True))
    together.add_many(KEY, "ok", seconds, inference, at)
    for moment in sorted(set(int(a // 60) for a in at)):  # each minute's requests, in order
        for row in rows:
            if int(row[2] // 60) == moment:
                one_by_one.add(KEY, "ok", *row)

    for span in ("hour", "day"):
        now = START + HOUR
        assert together.series(KEY, span, now) == one_by_one.series(KEY, span, now)
