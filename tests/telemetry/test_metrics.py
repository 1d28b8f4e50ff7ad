"""Metrics: one scrape shows the whole server, whether it is one process or several workers
sharing PROMETHEUS_MULTIPROC_DIR (real processes, prometheus_client's own files)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from model_manager.telemetry import Metrics, worker_exited
from model_manager.telemetry.metrics import MULTIPROC_DIR
from tests.telemetry.metrics_worker import BUDGET, FREE, Space

WORKER = str(Path(__file__).with_name("metrics_worker.py"))


def sample(text: str, name: str, **labels: str) -> float:
    values = [s.value for family in text_string_to_metric_families(text)
              for s in family.samples if s.name == name and s.labels == labels]
    assert len(values) == 1, f"{name}{labels} appears {len(values)} times"
    return values[0]


def family_names(text: str) -> list[str]:
    return [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]


@dataclass
class Server:
    """A directory the workers share, and the processes that wrote to it."""

    directory: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, MULTIPROC_DIR: str(self.directory)}

    def run_workers(self, *workers: tuple[int, int, int, int]) -> list[int]:
        """Run the workers at once, each given (requests, size, pending, dropped); their pids."""
        procs = [subprocess.Popen([sys.executable, WORKER, *map(str, args)], env=self.env)
                 for args in workers]
        for proc in procs:
            assert proc.wait(timeout=60) == 0
        return [proc.pid for proc in procs]

    def scrape(self) -> str:
        """What another worker, with nothing of its own, answers to a scrape."""
        done = subprocess.run([sys.executable, WORKER, "0", "0", "0", "0", "scrape"],
                              env=self.env, capture_output=True, text=True, timeout=60,
                              check=True)
        return done.stdout


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv(MULTIPROC_DIR, str(tmp_path))  # as the supervisor's own environment
    return Server(tmp_path)


def test_one_scrape_sums_the_workers(server: Server) -> None:
    server.run_workers((120, 100, 3, 5), (80, 50, 4, 2))

    text = server.scrape()

    iris = {"model": "iris", "version": "1"}
    assert sample(text, "model_manager_requests_total", **iris, outcome="ok") == 200
    assert sample(text, "model_manager_request_seconds_count", **iris) == 200
    assert sample(text, "model_manager_loads_total", **iris) == 2
    assert sample(text, "model_manager_load_seconds_count") == 2
    assert sample(text, "model_manager_loaded_bytes") == 150
    assert sample(text, "model_manager_loaded_models") == 2
    assert sample(text, "model_manager_writes_pending", kind="usage") == 7
    assert sample(text, "model_manager_writes_dropped_total", kind="usage") == 7
    # The same for every worker, or measured by the scraping one: once, not summed.
    assert sample(text, "model_manager_memory_budget_bytes") == BUDGET
    assert sample(text, "model_manager_registry_up") == 1
    assert sample(text, "model_manager_disk_free_bytes", place="data_dir") == FREE


def test_an_exited_worker_leaves_the_gauges_and_its_counts_stay(server: Server) -> None:
    first, _ = server.run_workers((120, 100, 3, 5), (80, 50, 4, 2))

    worker_exited(first)
    text = server.scrape()

    assert sample(text, "model_manager_loaded_bytes") == 50
    assert sample(text, "model_manager_loaded_models") == 1
    assert sample(text, "model_manager_writes_pending", kind="usage") == 4
    assert sample(text, "model_manager_requests_total", model="iris", version="1",
                  outcome="ok") == 200
    assert sample(text, "model_manager_writes_dropped_total", kind="usage") == 7
    assert sample(text, "model_manager_memory_budget_bytes") == BUDGET


def test_no_metric_appears_twice_in_a_scrape(server: Server) -> None:
    server.run_workers((3, 100, 1, 1), (2, 50, 1, 1))

    names = family_names(server.scrape())

    assert len(names) == len(set(names))
    assert {"model_manager_requests_total", "model_manager_registry_up",
            "model_manager_disk_total_bytes", "model_manager_writes_pending"} <= set(names)


class Writer:
    def __init__(self) -> None:
        self.pending, self.writes_dropped = 0, 0

    def pending_count(self) -> int:
        return self.pending


def test_one_process_reads_the_cache_and_the_writes_when_scraped() -> None:
    metrics, writer, used = Metrics(), Writer(), [0]
    metrics.watch_cache(lambda: used[0], lambda: 1 if used[0] else 0, BUDGET)
    metrics.watch_registry(lambda: 0.0, lambda: 12.0, {"audit": writer})
    metrics.watch_disks(lambda: {"staging": Space()})
    metrics.render()

    used[0], writer.pending, writer.writes_dropped = 40, 5, 3
    metrics.render()
    text = metrics.render().decode()

    assert sample(text, "model_manager_loaded_bytes") == 40
    assert sample(text, "model_manager_loaded_models") == 1
    assert sample(text, "model_manager_writes_pending", kind="audit") == 5
    assert sample(text, "model_manager_writes_dropped_total", kind="audit") == 3
    assert sample(text, "model_manager_registry_down_seconds") == 12
    assert sample(text, "model_manager_disk_total_bytes", place="staging") == Space().total
    names = family_names(text)
    assert len(names) == len(set(names))


REQUEST_FAMILIES = ("model_manager_requests", "model_manager_request_seconds",
                    "model_manager_inference_seconds")
SECONDS = st.one_of(st.floats(0, 60), st.sampled_from([0.0005, 0.001, 0.25, 1.0, 30.0]))


def request_lines(text: str) -> list[str]:
    """The request metrics' lines of a scrape, but the creation times' values."""
    return [line.split(" ")[0] if "_created{" in line else line for line in text.splitlines()
            if line.split("{")[0].split(" ")[-1].startswith(REQUEST_FAMILIES)]


@settings(max_examples=60, deadline=None)
@given(calls=st.lists(st.tuples(
    st.sampled_from([("iris", 1), ("iris", 2), ("wine", 7)]),
    st.sampled_from(["ok", "ok", "timeout", "bad_input"]),
    st.lists(st.tuples(SECONDS, st.one_of(st.none(), SECONDS)), min_size=1, max_size=6)),
    max_size=12))
def test_one_process_writes_the_request_metrics_as_prometheus_clients_own_would(
        calls: list[tuple[tuple[str, int], str, list[tuple[float, float | None]]]]) -> None:
    """A single-process server counts requests in plain counts, turned into samples when
    scraped; the scrape reads as if prometheus_client's Counter and Histograms had observed
    each request."""
    metrics, reference = Metrics(), CollectorRegistry()
    buckets = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
    requests = Counter("model_manager_requests", "Predictions, by outcome.",
                       ["model", "version", "outcome"], registry=reference)
    latency = Histogram("model_manager_request_seconds", "Prediction latency as the server sees "
                        "it.", ["model", "version"], buckets=buckets, registry=reference)
    inside = Histogram("model_manager_inference_seconds", "Time inside the model's runtime.",
                       ["model", "version"], buckets=buckets, registry=reference)
    for key, outcome, rows in calls:
        seconds, inference = [r[0] for r in rows], [r[1] for r in rows]
        if len(rows) == 1:
            metrics.on_request(key, outcome, seconds[0], inference[0])
        else:
            metrics.on_requests(key, outcome, seconds, inference)
        for took, timed in rows:
            requests.labels(key[0], str(key[1]), outcome).inc()
            latency.labels(key[0], str(key[1])).observe(took)
            if timed is not None:
                inside.labels(key[0], str(key[1])).observe(timed)

    assert request_lines(metrics.render().decode()) == request_lines(
        generate_latest(reference).decode())
