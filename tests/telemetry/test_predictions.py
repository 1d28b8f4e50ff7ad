"""PredictionLog over a real SQLite registry: logged rows joined with outcomes and scored; what one
prediction keeps; the outcomes body."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_manager.errors import InvalidInput, NotFound
from model_manager.registry import Registry
from model_manager.runtimes.signature import Signature, TensorSpec
from model_manager.telemetry import PredictionLog, parse_outcomes, prediction_of

SIGNATURE = Signature((TensorSpec("input", "FP32", (-1, 4)),), (TensorSpec("label", "INT64", (-1,)),))


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry.from_url(f"sqlite:///{tmp_path}/r.db")
    registry.migrate()
    for name in ("iris", "iris", "house"):
        registry.create_version(name, sha256="0" * 64, size=1, format="onnx", signature=SIGNATURE,
                                metadata={})
    yield registry
    registry.close()


@pytest.fixture
def log(registry: Registry) -> PredictionLog:
    return PredictionLog(registry, max_rows=100, clock=Clock())


def label(*values: Any) -> dict[str, np.ndarray]:
    return {"label": np.array(values)}


def regression(*values: float) -> dict[str, np.ndarray]:
    return {"variable": np.array(values, dtype=np.float32).reshape(-1, 1)}


def test_classification_accuracy_per_version_and_role(log: PredictionLog) -> None:
    for i, (served, shadow) in enumerate([(0, 0), (1, 2), (2, 2), (1, 1)]):
        log.record("iris", f"p{i}", 1, "primary", label(served))
        log.record("iris", f"p{i}", 2, "shadow", label(shadow))
    log.flush()

    counts = log.add_outcomes("iris", [("p0", 0), ("p1", 1), ("p2", 2)])

    assert counts == {"received": 3, "matched": 3, "unmatched": 0}
    assert log.scores("iris") == [
        {"version": 1, "role": "primary", "logged": 4, "with_outcome": 3, "kind": "classification",
         "accuracy": 1.0},
        {"version": 2, "role": "shadow", "logged": 4, "with_outcome": 3, "kind": "classification",
         "accuracy": pytest.approx(2 / 3)}]


def test_text_labels_are_scored_against_text_outcomes(log: PredictionLog) -> None:
    log.record("iris", "a", 1, "primary", {"label": np.array([b"setosa"], dtype=object)})
    log.record("iris", "b", 1, "primary", {"label": np.array([b"virginica"], dtype=object)})

    log.add_outcomes("iris", [("a", "setosa"), ("b", "versicolor")])

    [score] = log.scores("iris")
    assert (score["kind"], score["accuracy"]) == ("classification", 0.5)


def test_regression_mae_and_rmse(log: PredictionLog) -> None:
    for i, value in enumerate([1.5, 2.5, 4.5]):
        log.record("house", f"h{i}", 1, "primary", regression(value))

    log.add_outcomes("house", [("h0", 2.5), ("h1", 2.5), ("h2", 1.5)])

    [score] = log.scores("house")
    assert score["kind"] == "regression"
    assert score["mae"] == pytest.approx((1 + 0 + 3) / 3)
    assert score["rmse"] == pytest.approx(math.sqrt((1 + 0 + 9) / 3))
    assert "accuracy" not in score


def test_integer_outcomes_score_a_regression(log: PredictionLog) -> None:
    log.record("house", "h", 1, "primary", regression(2.5))

    log.add_outcomes("house", [("h", 2)])

    [score] = log.scores("house")
    assert (score["kind"], score["mae"]) == ("regression", pytest.approx(0.5))


def test_a_whole_valued_regression_prediction_is_still_a_regression(log: PredictionLog) -> None:
    log.record("house", "h", 1, "primary", regression(2.0))

    log.add_outcomes("house", [("h", 3.0)])

    [score] = log.scores("house")
    assert (score["kind"], score["mae"]) == ("regression", pytest.approx(1.0))


def test_a_multi_row_prediction_is_scored_row_by_row_on_a_list_outcome(log: PredictionLog) -> None:
    log.record("iris", "batch", 1, "primary", label(0, 1, 2, 1))

    counts = log.add_outcomes("iris", [("batch", [0, 1, 1, 1])])

    assert counts["matched"] == 1
    [score] = log.scores("iris")
    assert (score["logged"], score["with_outcome"], score["accuracy"]) == (1, 1, 0.75)


def test_multi_row_regression_is_scored_row_by_row(log: PredictionLog) -> None:
    log.record("house", "batch", 1, "primary", regression(1.0, 3.0))

    log.add_outcomes("house", [("batch", [2.0, 3.0])])

    [score] = log.scores("house")
    assert score["mae"] == pytest.approx(0.5)
    assert score["rmse"] == pytest.approx(math.sqrt(0.5))


def test_each_model_keeps_only_its_newest_rows(registry: Registry) -> None:
    log = PredictionLog(registry, max_rows=3, clock=Clock())
    for i in range(5):
        log.record("iris", f"p{i}", 1, "primary", label(1))
    log.record("house", "h", 1, "primary", regression(1.0))
    log.flush()

    counts = log.add_outcomes("iris", [(f"p{i}", 1) for i in range(5)])

    assert counts == {"received": 5, "matched": 3, "unmatched": 2}
    assert [s["logged"] for s in log.scores("iris")] == [3]
    assert [s["logged"] for s in log.scores("house")] == [1]  # another model's rows are its own


def test_trimming_keeps_the_newest_rows_across_flushes(registry: Registry) -> None:
    log = PredictionLog(registry, max_rows=2, clock=Clock())
    log.record("iris", "old", 1, "primary", label(1))
    log.flush()
    log.record("iris", "mid", 1, "primary", label(1))
    log.record("iris", "new", 1, "primary", label(1))
    log.flush()

    assert log.add_outcomes("iris", [("old", 1)])["matched"] == 0
    assert log.add_outcomes("iris", [("mid", 1), ("new", 1)])["matched"] == 2


def test_outcomes_for_unknown_ids_are_unmatched(log: PredictionLog) -> None:
    log.record("iris", "known", 1, "primary", label(1))

    counts = log.add_outcomes("iris", [("known", 1), ("unknown", 1), ("other", 2)])

    assert counts == {"received": 3, "matched": 1, "unmatched": 2}


def test_an_outcome_matches_every_version_that_answered_the_request(log: PredictionLog) -> None:
    log.record("iris", "p", 1, "primary", label(1))
    log.record("iris", "p", 2, "shadow", label(0))

    assert log.add_outcomes("iris", [("p", 1)]) == {"received": 1, "matched": 1, "unmatched": 0}
    assert [(s["version"], s["accuracy"]) for s in log.scores("iris")] == [(1, 1.0), (2, 0.0)]


def test_long_prediction_ids_match_on_their_first_128_characters(log: PredictionLog) -> None:
    long_id = "x" * 200
    log.record("iris", long_id, 1, "primary", label(1))

    assert log.add_outcomes("iris", [(long_id, 1)])["matched"] == 1


def test_pending_rows_count_as_logged_before_the_flush(log: PredictionLog) -> None:
    log.record("iris", "flushed", 1, "primary", label(1))
    log.flush()
    log.record("iris", "pending", 1, "primary", label(1))
    log.record("iris", "pending", 2, "shadow", label(1))
    log.record("house", "elsewhere", 1, "primary", regression(1.0))

    assert log.scores("iris") == [{"version": 1, "role": "primary", "logged": 2, "with_outcome": 0},
                                  {"version": 2, "role": "shadow", "logged": 1, "with_outcome": 0}]


def test_rows_of_models_not_in_the_registry_are_dropped_at_flush(log: PredictionLog) -> None:
    log.record("ghost", "p", 1, "primary", label(1))
    log.record("iris", "p", 1, "primary", label(1))
    log.flush()

    assert [s["logged"] for s in log.scores("iris")] == [1]
    with pytest.raises(NotFound):
        log.scores("ghost")


def test_a_model_without_rows_has_no_scores(log: PredictionLog) -> None:
    assert log.scores("iris") == []


def test_unknown_model_is_not_found(log: PredictionLog) -> None:
    with pytest.raises(NotFound, match="nope"):
        log.scores("nope")
    with pytest.raises(NotFound, match="nope"):
        log.add_outcomes("nope", [("p", 1)])


def test_prediction_prefers_a_label_output_over_scores() -> None:
    outputs = {"probabilities": np.array([[0.9, 0.1], [0.2, 0.8]]), "label": np.array([5, 6])}

    assert prediction_of(outputs) == [5, 6]


def test_prediction_of_text_labels_is_text() -> None:
    assert prediction_of({"label": np.array([b"setosa", b"virginica"], dtype=object)}) == [
        "setosa", "virginica"]
    assert prediction_of({"label": np.array([b"setosa"], dtype=object)}) == "setosa"


def test_prediction_of_scores_is_the_argmax_per_row() -> None:
    scores = {"probabilities": np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]], dtype=np.float32)}

    assert prediction_of(scores) == [1, 0]


def test_prediction_of_a_regression_is_its_value() -> None:
    assert prediction_of(regression(2.5)) == 2.5
    assert prediction_of({"y": np.array([1.5, -2.0])}) == [1.5, -2.0]
    assert isinstance(prediction_of({"y": np.array([3.0])}), float)


def test_prediction_of_a_single_row_is_a_plain_value() -> None:
    value = prediction_of(label(7))
    assert value == 7
    assert type(value) is int


def test_prediction_of_no_outputs_is_none() -> None:
    assert prediction_of({}) is None


def test_parse_outcomes_gives_id_value_pairs() -> None:
    body = [{"id": "a", "value": 1}, {"id": "b", "value": "cat"}, {"id": "c", "value": 2.5},
            {"id": "d", "value": True}, {"id": "e", "value": [1, 2]}]

    assert parse_outcomes(body) == [("a", 1), ("b", "cat"), ("c", 2.5), ("d", True), ("e", [1, 2])]
    assert parse_outcomes([]) == []


@pytest.mark.parametrize("body", [
    {"id": "a", "value": 1},
    "a=1",
    None,
    [["a", 1]],
    [{"value": 1}],
    [{"id": 7, "value": 1}],
    [{"id": "a"}],
    [{"id": "a", "value": None}],
    [{"id": "a", "value": {"label": 1}}],
    [{"id": "a", "value": 1}, {"id": "b"}],
])
def test_parse_outcomes_rejects_bad_bodies(body: Any) -> None:
    with pytest.raises(InvalidInput):
        parse_outcomes(body)
