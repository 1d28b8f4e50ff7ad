"""UsageCounts: counts and latency histograms that add up, quantile estimates, and their JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model_manager.telemetry.counts import BOUNDS, ERROR_KINDS, OUTCOMES, UsageCounts

MS = 0.001


def counts_of(*samples: tuple[str, float, float | None, float]) -> UsageCounts:
    counts = UsageCounts()
    for outcome, seconds, inference, at in samples:
        counts.add(outcome, seconds, inference, at)
    return counts


def test_add_counts_requests_outcomes_and_latencies() -> None:
    counts = counts_of(("ok", 10 * MS, 8 * MS, 100.0), ("ok", 20 * MS, None, 50.0),
                       ("timeout", 5.0, None, 200.0))

    assert counts.requests == 3
    assert counts.outcomes == {"ok": 2, "timeout": 1}
    assert counts.errors == 1
    assert sum(counts.latency) == 3
    assert sum(counts.inference) == 1  # only the request that reached the model
    assert (counts.first_used, counts.last_used) == (50.0, 200.0)


def test_merge_adds_everything_and_keeps_the_earliest_and_latest_use() -> None:
    a = counts_of(("ok", 10 * MS, 5 * MS, 100.0), ("bad_input", 1 * MS, None, 150.0))
    b = counts_of(("ok", 10 * MS, 5 * MS, 90.0), ("runtime_error", 2.0, 1.5, 120.0))

    merged = UsageCounts().merge(a).merge(b)

    assert merged.requests == 4
    assert merged.outcomes == {"ok": 2, "bad_input": 1, "runtime_error": 1}
    assert merged.latency == [x + y for x, y in zip(a.latency, b.latency, strict=True)]
    assert merged.inference == [x + y for x, y in zip(a.inference, b.inference, strict=True)]
    assert (merged.first_used, merged.last_used) == (90.0, 150.0)


def test_merging_an_empty_count_changes_nothing() -> None:
    a = counts_of(("ok", 10 * MS, None, 100.0))
    expected = counts_of(("ok", 10 * MS, None, 100.0))

    assert a.merge(UsageCounts()) == expected
    assert UsageCounts().merge(expected) == expected


def test_merging_gives_the_same_histogram_as_counting_everything_in_one() -> None:
    samples = [("ok", s * MS, None, float(i)) for i, s in enumerate((1, 3, 10, 30, 100, 300, 1000))]
    whole = counts_of(*samples)
    halves = counts_of(*samples[:3]).merge(counts_of(*samples[3:]))

    assert halves == whole


def test_p50_of_constant_latency_is_within_one_bucket() -> None:
    counts = counts_of(*[("ok", 10 * MS, None, 0.0)] * 1000)

    p50 = counts.quantile(0.5)
    assert p50 is not None
    assert 10 * MS <= p50 <= 10 * MS * 1.25


def test_quantiles_see_a_slow_tail() -> None:
    counts = counts_of(*[("ok", 10 * MS, None, 0.0)] * 900, *[("ok", 1.0, None, 0.0)] * 100)

    p50, p95, p99 = (counts.quantile(q) for q in (0.5, 0.95, 0.99))
    assert p50 is not None and 10 * MS <= p50 <= 12.5 * MS
    assert p95 is not None and 1.0 <= p95 <= 1.25
    assert p99 is not None and 1.0 <= p99 <= 1.25


def test_quantile_of_the_inference_histogram_is_separate() -> None:
    counts = counts_of(*[("ok", 1.0, 2 * MS, 0.0)] * 10)

    inference = counts.quantile(0.5, "inference")
    assert inference is not None and 2 * MS <= inference <= 2.5 * MS
    latency = counts.quantile(0.5)
    assert latency is not None and latency >= 1.0


def test_latency_beyond_the_last_bucket_is_reported_as_the_top_bound() -> None:
    counts = counts_of(("ok", 600.0, None, 0.0))

    assert counts.quantile(0.99) == BOUNDS[-1]
    assert 60.0 <= BOUNDS[-1] < 75.0


def test_quantiles_are_none_without_data() -> None:
    counts = counts_of(("ok", 10 * MS, None, 0.0))  # latency only: no inference timing

    assert UsageCounts().quantile(0.5) is None
    assert counts.quantile(0.99, "inference") is None


def test_json_round_trip_keeps_everything() -> None:
    counts = counts_of(("ok", 10 * MS, 4 * MS, 100.0), ("ok", 10 * MS, 4 * MS, 101.0),
                       ("invalid_output", 3.0, 2.9, 300.0))

    data = json.loads(json.dumps(counts.to_json()))
    restored = UsageCounts.from_json(data, counts.first_used, counts.last_used)

    assert restored == counts
    assert restored.quantile(0.5) == counts.quantile(0.5)


def test_json_histograms_are_sparse() -> None:
    counts = counts_of(*[("ok", 10 * MS, None, 0.0)] * 5, ("ok", 2.0, None, 0.0))

    data = counts.to_json()

    assert len(data["latency"]) == 2
    assert sorted(data["latency"].values()) == [1, 5]
    assert data["inference"] == {}
    assert all(isinstance(k, str) for k in data["latency"])


def test_from_json_of_an_empty_object_is_empty() -> None:
    assert UsageCounts.from_json({}) == UsageCounts()


def test_summary_lists_every_error_kind_and_latency_percentiles_in_ms() -> None:
    counts = counts_of(*[("ok", 10 * MS, 5 * MS, 0.0)] * 98, ("timeout", 10 * MS, None, 0.0),
                       ("bad_input", 10 * MS, None, 0.0))

    summary = counts.summary()

    assert summary["requests"] == 100
    assert summary["errors"] == 2
    assert summary["errors_by_kind"] == {"bad_input": 1, "runtime_error": 0, "timeout": 1,
                                         "invalid_output": 0, "overloaded": 0, "unavailable": 0}
    assert set(summary["errors_by_kind"]) == set(ERROR_KINDS) == set(OUTCOMES) - {"ok"}
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        assert 10.0 <= summary[key] <= 12.5
    assert 5.0 <= summary["inference_p50_ms"] <= 6.25
    assert 5.0 <= summary["inference_p99_ms"] <= 6.25


def test_summary_of_nothing_has_no_percentiles() -> None:
    summary = UsageCounts().summary()

    assert summary["requests"] == summary["errors"] == 0
    assert set(summary["errors_by_kind"].values()) == {0}
    assert [summary[k] for k in ("p50_ms", "p95_ms", "p99_ms", "inference_p50_ms",
                                 "inference_p99_ms")] == [None] * 5


@pytest.mark.parametrize("seconds", [0.00005, 0.0003, 0.004, 0.07, 0.9, 12.0, 59.0])
def test_each_quantile_is_an_upper_bound_at_most_a_bucket_above(seconds: float) -> None:
    estimate = counts_of(("ok", seconds, None, 0.0)).quantile(0.5)

    assert estimate is not None
    assert seconds <= estimate <= max(seconds * 1.25, BOUNDS[0])


SECONDS = st.one_of(st.floats(0, 120), st.sampled_from(BOUNDS), st.just(0.0))


@given(rows=st.lists(st.tuples(SECONDS, st.one_of(st.none(), SECONDS), st.floats(0, 2e9)),
                     min_size=1, max_size=40))
def test_adding_many_at_once_counts_as_adding_each(
        rows: list[tuple[float, float | None, float]]) -> None:
    seconds, inference, at = (list(column) for column in zip(*rows, strict=True))
    together = UsageCounts(requests=3, outcomes={"ok": 2, "timeout": 1}, first_used=1e9,
                           last_used=1e9)
    together.add_many("ok", seconds, inference, at)

    one_by_one = UsageCounts(requests=3, outcomes={"ok": 2, "timeout": 1}, first_used=1e9,
                             last_used=1e9)
    for row in rows:
        one_by_one.add("ok", *row)
    assert together == one_by_one
