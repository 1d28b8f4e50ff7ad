"""Drift statistics and the monitor, with a fake clock: bins from the reference, PSI and KS,
a verdict only on enough rows, one alarm per onset, the window forgetting old rows, and a full
queue skipping requests rather than holding them up."""

from __future__ import annotations

import numpy as np
import pytest

from model_manager.telemetry import drift
from model_manager.telemetry.drift import Column, DriftMonitor, Profile, Thresholds, ks, psi
from model_manager.types import VersionKey

KEY: VersionKey = ("m", 1)


def test_numeric_columns_are_binned_by_the_references_deciles() -> None:
    values = np.arange(1000, dtype=np.float64)
    column = Column.fit("x", values)
    assert column.kind == "numeric" and len(column.edges) == 9
    assert column.count(values).tolist() == [100] * 10
    assert column.count(np.array([np.nan, np.inf, -1.0])).sum() == 1  # non-finite left out


def test_few_integers_and_texts_are_categories() -> None:
    assert Column.fit("n", np.array([1, 2, 2, 3])).categories == ("1", "2", "3")
    texts = Column.fit("t", np.array([b"a", b"b", b"a"], dtype=object))
    assert texts.kind == "categorical" and texts.bins == ["a", "b", "(other)"]
    assert texts.count(np.array([b"a", b"zzz"], dtype=object)).tolist() == [1, 0, 1]
    assert Column.fit("many", np.arange(100)).kind == "numeric"


def test_psi_and_ks_grow_with_the_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=5000)
    column = Column.fit("x", reference)
    base = column.count(reference).astype(float)
    same, moved = column.count(rng.normal(size=2000)), column.count(rng.normal(1.0, size=2000))
    assert psi(base, base) == pytest.approx(0.0) and ks(base, base) == 0.0
    assert psi(base, same) < 0.05 and psi(base, moved) > 0.5
    assert 0 < ks(base, same) < 0.05 < 0.3 < ks(base, moved) <= 1


def test_a_profile_reads_back_from_json() -> None:
    profile = Profile.build({"x": np.arange(50.0), "t": np.array([b"a"] * 5, dtype=object)},
                            "upload")
    assert Profile.from_json(profile.to_json()) == profile
    assert profile.rows == 50


class Recorder:
    def __init__(self) -> None:
        self.now = 1000.0
        self.alarms: list[str] = []
        self.saved: dict[VersionKey, Profile] = {}

    def monitor(self, baseline_rows: int = 1000) -> DriftMonitor:
        return DriftMonitor(lambda key: None, self.saved.__setitem__, lambda m: Thresholds(),
                            60.0, lambda key, reason: self.alarms.append(reason),
                            lambda key, column, score: None, baseline_rows, lambda: self.now)


def feed(monitor: DriftMonitor, rows: np.ndarray, per_request: int = 10) -> None:
    for start in range(0, len(rows), per_request):
        monitor.observe(KEY, {"x": rows[start:start + per_request]})
    monitor.digest()


def test_one_alarm_per_onset_and_only_on_enough_rows() -> None:
    rng = np.random.default_rng(1)
    recorder = Recorder()
    monitor = recorder.monitor()
    monitor.set_reference(KEY, {"x": rng.normal(size=(2000, 3))})
    shifted = rng.normal(size=(150, 3))
    shifted[:, 1] += 2
    feed(monitor, shifted)
    assert monitor.report(KEY)["judged"] is False and recorder.alarms == []  # 150 < 200 rows
    feed(monitor, shifted)
    assert recorder.alarms == [recorder.alarms[0]] and "input x[1] drifted" in recorder.alarms[0]
    feed(monitor, shifted)
    assert len(recorder.alarms) == 1  # still drifted: no second alarm
    assert monitor.reasons(KEY)[0].startswith("input x[1] drifted: PSI ")

    recorder.now += 120  # past the window: the live profile is empty again
    monitor.digest()
    assert monitor.report(KEY)["live_rows"] == 0 and monitor.reasons(KEY) == []


def test_a_baseline_from_the_first_rows() -> None:
    recorder = Recorder()
    monitor = recorder.monitor(baseline_rows=100)
    feed(monitor, np.random.default_rng(2).normal(size=(60, 2)))
    assert monitor.report(KEY)["reference"] is None and monitor.report(KEY)["baseline_rows"] == 60
    feed(monitor, np.random.default_rng(3).normal(size=(60, 2)))
    assert recorder.saved[KEY].source == "baseline" and recorder.saved[KEY].rows == 100


def test_a_full_queue_skips_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drift, "PENDING_LIMIT", 3)
    monitor = Recorder().monitor()
    for _ in range(5):
        monitor.observe(KEY, {"x": np.zeros((1, 2))})
    assert monitor.skipped == 2 and monitor.report(KEY)["skipped_requests"] == 2


def test_requests_binned_together_count_as_each_would_alone() -> None:
    """The digest stacks a second's requests before binning them; requests that do not stack
    (one asked for fewer outputs) are binned one by one. Either way each request counts its
    first SAMPLE_ROWS rows, in the columns it has."""
    rng = np.random.default_rng(4)

    def request(rows: int, outputs: tuple[str, ...] = ("label", "p")) -> tuple[dict, dict]:
        answered = {"label": rng.integers(0, 3, rows), "p": rng.random((rows, 2))}
        return {"x": rng.normal(size=(rows, 3))}, {k: answered[k] for k in outputs}

    stackable = [request(1), request(100), request(7)]
    mixed = [*stackable, request(5, ("label",))]
    for requests in (stackable, mixed):
        monitor = Recorder().monitor()
        reference = monitor.set_reference(KEY, *request(2000))
        for inputs, outputs in requests:
            monitor.observe(KEY, inputs, outputs)
        monitor.digest()
        live = {c["column"]: c["live"] for c in monitor.report(KEY)["columns"]}
        for column in reference.columns:
            expected = np.zeros(len(column.bins), dtype=np.int64)
            for inputs, outputs in requests:
                values = drift.all_columns(inputs, outputs).get(column.name)
                if values is not None:
                    expected += column.count(values)
            assert live[column.name] == expected.tolist(), column.name
        assert monitor.report(KEY)["live_rows"] == sum(min(len(i["x"]), drift.SAMPLE_ROWS)
                                                       for i, _ in requests)


def test_a_bucket_made_after_a_clock_step_back_still_leaves_the_window() -> None:
    rng = np.random.default_rng(5)
    recorder = Recorder()
    monitor = recorder.monitor()
    monitor.set_reference(KEY, {"x": rng.normal(size=(500, 2))})
    feed(monitor, rng.normal(size=(30, 2)))  # the bucket of t=1000
    recorder.now -= 30  # the wall clock steps back: an older bucket is made after a newer one
    feed(monitor, rng.normal(size=(20, 2)))
    assert monitor.report(KEY)["live_rows"] == 50
    recorder.now += 30 + 60 - 5  # the older bucket is out of the 60 s window, the newer is not
    monitor.digest()
    assert monitor.report(KEY)["live_rows"] == 30
