"""Shadow comparison: per-row agreement of labels and argmax, float differences, and PairStats sums."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model_manager.telemetry import Comparison, PairStats, compare

MS = 0.001


def test_integer_labels_agree_row_by_row() -> None:
    result = compare({"label": np.array([0, 1, 2, 2])}, {"label": np.array([0, 1, 1, 2])})

    assert (result.rows, result.agreed) == (4, 3)
    assert result.abs_diff_count == 0  # labels give no differences


def test_text_labels_in_object_arrays_agree_row_by_row() -> None:
    primary = {"label": np.array([b"setosa", b"virginica", b"setosa"], dtype=object)}
    shadow = {"label": np.array([b"setosa", b"versicolor", b"setosa"], dtype=object)}

    result = compare(primary, shadow)

    assert (result.rows, result.agreed) == (3, 2)


def test_a_row_of_labels_agrees_only_when_every_column_does() -> None:
    result = compare({"label": np.array([[1, 2], [3, 4]])}, {"label": np.array([[1, 2], [3, 5]])})

    assert (result.rows, result.agreed) == (2, 1)


def test_class_scores_agree_by_argmax_and_give_their_differences() -> None:
    primary = {"probabilities": np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]])}
    shadow = {"probabilities": np.array([[0.6, 0.4], [0.7, 0.3], [0.2, 0.8]])}

    result = compare(primary, shadow)

    assert (result.rows, result.agreed) == (3, 2)
    assert result.abs_diff_count == 6
    assert result.abs_diff_sum == pytest.approx(0.3 + 0.3 + 0.3 + 0.3)
    assert result.abs_diff_max == pytest.approx(0.3)


@pytest.mark.parametrize("shape", [(3,), (3, 1)])
def test_regression_values_give_only_differences(shape: tuple[int, ...]) -> None:
    primary = {"variable": np.array([1.0, 2.0, 3.0]).reshape(shape)}
    shadow = {"variable": np.array([1.5, 2.0, 1.0]).reshape(shape)}

    result = compare(primary, shadow)

    assert (result.rows, result.agreed) == (0, 0)
    assert result.abs_diff_count == 3
    assert result.abs_diff_sum == pytest.approx(2.5)
    assert result.abs_diff_max == pytest.approx(2.0)


def test_outputs_of_another_shape_disagree_on_every_row() -> None:
    result = compare({"label": np.array([1, 2, 3])}, {"label": np.array([1, 2])})

    assert (result.rows, result.agreed) == (3, 0)


def test_scores_of_another_shape_disagree_and_give_no_differences() -> None:
    result = compare({"p": np.zeros((2, 3))}, {"p": np.zeros((2, 2))})

    assert (result.rows, result.agreed) == (2, 0)
    assert result.abs_diff_count == 0


def test_a_row_agrees_only_when_every_output_agrees() -> None:
    primary = {"label": np.array([0, 1, 1]), "probabilities": np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])}
    shadow = {"label": np.array([0, 1, 0]), "probabilities": np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])}

    result = compare(primary, shadow)

    assert (result.rows, result.agreed) == (3, 1)


def test_only_outputs_both_sides_produced_are_compared() -> None:
    result = compare({"label": np.array([1, 2]), "extra": np.array([1.0, 2.0])},
                     {"label": np.array([1, 3]), "other": np.array([5.0, 6.0])})

    assert (result.rows, result.agreed) == (2, 1)
    assert result.abs_diff_count == 0


def test_nan_differences_are_ignored() -> None:
    result = compare({"variable": np.array([1.0, np.nan, 3.0])},
                     {"variable": np.array([2.0, 5.0, np.nan])})

    assert result.abs_diff_count == 1
    assert result.abs_diff_sum == pytest.approx(1.0)
    assert result.abs_diff_max == pytest.approx(1.0)


def test_no_common_outputs_compare_nothing() -> None:
    assert compare({"a": np.array([1])}, {"b": np.array([1])}) == Comparison(rows=0, agreed=0)


def test_add_counts_pairs_rows_differences_and_latencies() -> None:
    stats = PairStats()
    stats.add(Comparison(rows=4, agreed=3, abs_diff_sum=1.0, abs_diff_count=4, abs_diff_max=0.5),
              10 * MS, 20 * MS)
    stats.add(Comparison(rows=2, agreed=2, abs_diff_sum=0.5, abs_diff_count=2, abs_diff_max=0.25),
              10 * MS, 20 * MS)

    summary = stats.summary()

    assert (summary["pairs"], summary["rows_compared"]) == (2, 6)
    assert summary["agreement"] == round(5 / 6, 6)
    assert summary["mean_abs_diff"] == pytest.approx(1.5 / 6)
    assert summary["max_abs_diff"] == 0.5
    assert 10 <= summary["primary_p50_ms"] < 10 * 1.25
    assert 20 <= summary["shadow_p99_ms"] < 20 * 1.25
    assert (summary["shadow_errors"], summary["dropped"]) == (0, 0)


def test_an_empty_summary_has_none_for_every_ratio_and_quantile() -> None:
    summary = PairStats().summary()

    assert (summary["pairs"], summary["rows_compared"]) == (0, 0)
    for key in ("agreement", "mean_abs_diff", "max_abs_diff", "primary_p50_ms", "primary_p99_ms",
                "shadow_p50_ms", "shadow_p99_ms"):
        assert summary[key] is None, key


def test_regression_pairs_have_differences_but_no_agreement() -> None:
    stats = PairStats()
    stats.add(compare({"y": np.array([1.0, 2.0])}, {"y": np.array([1.0, 4.0])}), MS, MS)

    summary = stats.summary()

    assert summary["agreement"] is None
    assert summary["mean_abs_diff"] == pytest.approx(1.0)
    assert summary["max_abs_diff"] == pytest.approx(2.0)


def test_merge_adds_counts_and_histograms_and_keeps_the_largest_difference() -> None:
    a = PairStats(shadow_errors=1, dropped=2)
    a.add(Comparison(rows=2, agreed=1, abs_diff_sum=1.0, abs_diff_count=2, abs_diff_max=0.75), MS, MS)
    b = PairStats(shadow_errors=3)
    b.add(Comparison(rows=3, agreed=3, abs_diff_sum=0.5, abs_diff_count=3, abs_diff_max=0.25),
          2.0, 2.0)

    merged = PairStats().merge(a).merge(b)

    assert (merged.pairs, merged.shadow_errors, merged.dropped) == (2, 4, 2)
    assert (merged.rows, merged.agreed) == (5, 4)
    assert (merged.abs_diff_sum, merged.abs_diff_count, merged.abs_diff_max) == (1.5, 5, 0.75)
    assert sum(merged.primary_latency) == sum(merged.shadow_latency) == 2
    assert merged.summary()["primary_p50_ms"] < merged.summary()["primary_p99_ms"]


def test_json_round_trip_through_text_keeps_everything() -> None:
    stats = PairStats(shadow_errors=2, dropped=1)
    stats.add(Comparison(rows=3, agreed=2, abs_diff_sum=0.5, abs_diff_count=3, abs_diff_max=0.3),
              5 * MS, 50 * MS)
    stats.add(Comparison(rows=1, agreed=1), 5 * MS, 3.0)

    data = json.loads(json.dumps(stats.to_json()))

    assert PairStats.from_json(data) == stats
    assert len(data["shadow_latency"]) == 2  # stored sparse: only non-empty buckets


def test_json_of_empty_stats_round_trips() -> None:
    data = json.loads(json.dumps(PairStats().to_json()))

    assert data["primary_latency"] == {}
    assert PairStats.from_json(data) == PairStats()
