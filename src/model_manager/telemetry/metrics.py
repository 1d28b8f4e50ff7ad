"""Prometheus metrics, in a registry of their own per server (no module-level state).

With ``PROMETHEUS_MULTIPROC_DIR`` set, the server is several worker processes on one port and
each writes its samples to that directory (prometheus_client's multiprocess mode); whichever
worker answers a scrape reads them all, so ``/metrics`` shows the whole server: counters and
histograms are sums over every worker that ever ran, the loaded-model and pending-write gauges
sums over the live ones. Facts about shared things (the registry, the disks) are read by the
scraping worker alone, at scrape time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from model_manager.telemetry.counts import add_to_histogram
from model_manager.types import VersionKey

__all__ = ["CONTENT_TYPE", "MULTIPROC_DIR", "Metrics", "worker_exited"]

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable naming the directory the workers of one server share."""

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                    10, 30)
_LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def worker_exited(pid: int) -> None:
    """Forget the gauges of the dead worker ``pid`` (its loaded models, its pending writes);
    its counters and histograms still count. Nothing to do for a single-process server."""
    if MULTIPROC_DIR in os.environ:
        mark_process_dead(pid)  # type: ignore[no-untyped-call]


class WriteBehind(Protocol):
    """Something that keeps writes in memory until the registry takes them."""

    writes_dropped: int

    def pending_count(self) -> int: ...


class DiskFigures(Protocol):
    """A filesystem's free and total bytes (``store.space.DiskSpace``)."""

    @property
    def free(self) -> int: ...

    @property
    def total(self) -> int: ...


class Metrics:
    """The server's metrics; also the model cache's hooks."""

    PUBLISH_EVERY = 1.0
    """Seconds between two ``publish()`` calls: how stale another worker's pending writes may
    be in a scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._multiprocess = MULTIPROC_DIR in os.environ
        self._scraped: list[Collector] = []
        self._cache: tuple[Callable[[], float], Callable[[], float]] = (lambda: 0, lambda: 0)
        self._writers: Mapping[str, WriteBehind] = {}
        self._device_sizes: Callable[[], Mapping[VersionKey, int]] | None = None
        self._device_context: Callable[[], int] = lambda: 0
        self._device_held: Callable[[], int] = lambda: 0
        self._dropped: dict[str, int] = {}
        self._dropped_lock = threading.Lock()
        labels = ["model", "version"]
        self.loads = Counter("model_manager_loads", "Model versions loaded into memory.", labels,
                             registry=self.registry)
        self.load_failures = Counter("model_manager_load_failures",
                                     "Loads that failed.", labels, registry=self.registry)
        self.load_seconds = Histogram("model_manager_load_seconds", "Time to load a version.",
                                      buckets=_LOAD_BUCKETS, registry=self.registry)
        self.evictions = Counter("model_manager_evictions",
                                 "Versions evicted to keep within the memory budget.", labels,
                                 registry=self.registry)
        self.unloads = Counter("model_manager_unloads", "Versions unloaded, by reason.",
                               [*labels, "reason"], registry=self.registry)
        self.crashes = Counter("model_manager_crashes",
                               "Deaths of a model's process (crash, memory, hang).", labels,
                               registry=self.registry)
        self.loaded_bytes = Gauge("model_manager_loaded_bytes",
                                  "Accounted memory of the loaded versions.",
                                  multiprocess_mode="livesum", registry=self.registry)
        self.loaded_models = Gauge("model_manager_loaded_models", "Versions loaded now.",
                                   multiprocess_mode="livesum", registry=self.registry)
        self.takes_batches = not self._multiprocess
        """Whether successful requests may come in batches (``on_requests``), counted when
        scraped. With several workers, each request is written to the shared files at once:
        whichever worker answers a scrape reads them."""
        self._counted: _RequestCounts | None = None
        if self.takes_batches:
            self._counted = _RequestCounts()
            self.registry.register(self._counted)
        else:
            self.requests = Counter(_REQUESTS[0], _REQUESTS[1], [*labels, "outcome"],
                                    registry=self.registry)
            self.request_seconds = Histogram(*_REQUEST_SECONDS, labelnames=labels,
                                             buckets=_LATENCY_BUCKETS, registry=self.registry)
            self.inference_seconds = Histogram(*_INFERENCE_SECONDS, labelnames=labels,
                                               buckets=_LATENCY_BUCKETS, registry=self.registry)
        self._requests: dict[tuple[VersionKey, str], Counter] = {}
        self._latency: dict[VersionKey, Histogram] = {}
        self._inference: dict[VersionKey, Histogram] = {}
        self.shadow_requests = Counter("model_manager_shadow_requests",
                                       "Shadow copies of requests: compared, failed or dropped.",
                                       [*labels, "outcome"], registry=self.registry)
        self.batch_rows = Histogram("model_manager_batch_rows",
                                    "Rows of each dynamically batched prediction.", labels,
                                    buckets=(2, 4, 8, 16, 32, 64, 128, 256, 512),
                                    registry=self.registry)
        # Every worker has the same budget: the server's is any one of them, not their sum.
        self.memory_budget = Gauge("model_manager_memory_budget_bytes",
                                   "Memory the loaded versions may hold in all.",
                                   multiprocess_mode="max", registry=self.registry)
        self.drift_score = Gauge("model_manager_drift_score", "Population stability index of "
                                 "each input column's live values against its reference.",
                                 [*labels, "column"], multiprocess_mode="max",
                                 registry=self.registry)
        self.route_reads = Counter("model_manager_route_reads",
                                   "Reads of a model's routes from the registry, by outcome "
                                   "(ok, not_found, failed).", ["outcome"],
                                   registry=self.registry)
        self.writes_pending = Gauge("model_manager_writes_pending", "Items (usage and shadow "
                                    "buckets, prediction rows, audit events) waiting in memory "
                                    "to be written to the registry.", ["kind"],
                                    multiprocess_mode="livesum", registry=self.registry)
        self.writes_dropped = Counter("model_manager_writes_dropped", "Items dropped unwritten "
                                      "because too many waited for the registry.", ["kind"],
                                      registry=self.registry)

    def watch_cache(self, used: Callable[[], float], count: Callable[[], float],
                    budget: int) -> None:
        """Export the cache's accounted bytes and loaded versions, read after each load and
        unload (the hooks below) and at each scrape."""
        self._cache = (used, count)
        self.memory_budget.set(budget)
        self._publish_cache()

    def watch_device(self, sizes: Callable[[], Mapping[VersionKey, int]], budget: int,
                     context: Callable[[], int], held: Callable[[], int]) -> None:
        """Export the accelerator's budget, each loaded version's device bytes and their sum
        (after each load and unload, and at each scrape), the server's own bytes there (the
        CUDA context) and what the process holds there, measured at each scrape."""
        livesum: dict[str, Any] = {"multiprocess_mode": "livesum", "registry": self.registry}
        self._device_sizes = sizes
        self._device_context = context
        self._device_held = held
        self.device_budget = Gauge("model_manager_device_memory_budget_bytes",
                                   "Device memory the loaded versions may hold in all.", **livesum)
        self.device_loaded = Gauge("model_manager_device_loaded_bytes",
                                   "Accounted device memory of the loaded versions.", **livesum)
        self.device_version = Gauge("model_manager_device_version_bytes",
                                    "Accounted device memory of each loaded version (0 once "
                                    "unloaded).", ["model", "version"], **livesum)
        self.device_context = Gauge("model_manager_device_context_bytes",
                                    "Device memory the server holds for itself: the CUDA "
                                    "context, frameworks' first use.", **livesum)
        self.device_process = Gauge("model_manager_device_process_bytes",
                                    "Device memory the process holds, as the driver counts it.",
                                    **livesum)
        self._device_shown: set[VersionKey] = set()
        self.device_budget.set(budget)
        self._publish_cache()

    def watch_registry(self, is_up: Callable[[], float], down_seconds: Callable[[], float],
                       writers: Mapping[str, WriteBehind]) -> None:
        """Export whether the registry answers, for how long it has not, and the writes
        waiting for it (per kind: usage, shadow, predictions, audit)."""
        self._add_scraped(_RegistryHealth(is_up, down_seconds))
        self._writers = writers
        self._dropped = dict.fromkeys(writers, 0)
        self.publish()

    def watch_disks(self, measure: Callable[[], Mapping[str, DiskFigures]]) -> None:
        """Export the free and total bytes of each place the server writes (by ``place``: the
        data dir, the store's staging folder), measured at each scrape."""
        self._add_scraped(_Disks(measure))

    def publish(self) -> None:
        """Bring this worker's pending and dropped writes up to date in the server's sums. A
        scrape does it for the scraping worker; the others must call it every
        ``PUBLISH_EVERY`` seconds. (The loaded-model gauges follow the cache's hooks.)"""
        self._publish_device_held()
        for kind, writer in self._writers.items():
            self.writes_pending.labels(kind).set(writer.pending_count())
            with self._dropped_lock:  # a scrape and the periodic call may race
                dropped = writer.writes_dropped
                self.writes_dropped.labels(kind).inc(dropped - self._dropped[kind])
                self._dropped[kind] = dropped

    def render(self) -> bytes:
        self._publish_cache()
        self.publish()
        return generate_latest(self._scrape_registry())

    def _add_scraped(self, collector: Collector) -> None:
        self._scraped.append(collector)
        self.registry.register(collector)

    def _scrape_registry(self) -> CollectorRegistry:
        """The whole server's samples: this registry, or in multiprocess mode every worker's
        files plus what this worker measures at scrape time."""
        if not self._multiprocess:
            return self.registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        for collector in self._scraped:
            registry.register(collector)
        return registry

    def _publish_cache(self) -> None:
        used, count = self._cache
        self.loaded_bytes.set(used())
        self.loaded_models.set(count())
        if self._device_sizes is not None:
            sizes = self._device_sizes()
            for key in self._device_shown - sizes.keys():
                self.device_version.labels(key[0], str(key[1])).set(0)
            for key, size in sizes.items():
                self.device_version.labels(key[0], str(key[1])).set(size)
            self._device_shown = set(sizes)
            self.device_loaded.set(sum(sizes.values()))
            self.device_context.set(self._device_context())

    def _publish_device_held(self) -> None:
        if self._device_sizes is not None:
            self.device_process.set(self._device_held())

    def settle_before_scrape(self, settle: Callable[[], None]) -> None:
        """Call ``settle`` before each scrape: it hands over the requests it holds back."""
        if self._counted is not None:
            self._counted.before_scrape = settle

    def on_requests(self, key: VersionKey, outcome: str, seconds: Sequence[float],
                    inference: Sequence[float | None]) -> None:
        """Requests of one version and outcome, at once: the i-th took ``seconds[i]``,
        ``inference[i]`` of them in the model (None: not timed)."""
        if self._counted is not None:
            self._counted.add(key, outcome, seconds, inference)
            return
        for took, inside in zip(seconds, inference, strict=True):
            self.on_request(key, outcome, took, inside)

    def on_request(self, key: VersionKey, outcome: str, seconds: float,
                   inference: float | None) -> None:
        if self._counted is not None:
            self._counted.add(key, outcome, (seconds,), (inference,))
            return
        # The labelled series are looked up once per version (and outcome), not per request:
        # ``labels()`` costs more than the observation. None of them is ever removed.
        requests = self._requests.get((key, outcome))
        if requests is None:
            requests = self._requests[key, outcome] = self.requests.labels(
                key[0], str(key[1]), outcome)
        requests.inc()
        latency = self._latency.get(key)
        if latency is None:
            latency = self._latency[key] = self.request_seconds.labels(key[0], str(key[1]))
        latency.observe(seconds)
        if inference is not None:
            inside = self._inference.get(key)
            if inside is None:
                inside = self._inference[key] = self.inference_seconds.labels(key[0], str(key[1]))
            inside.observe(inference)

    def on_batch(self, key: VersionKey, rows: int) -> None:
        self.batch_rows.labels(key[0], str(key[1])).observe(rows)

    def on_shadow(self, key: VersionKey, outcome: str) -> None:
        """A shadow copy for version ``key`` was compared (``ok``), failed (``error``) or
        ``dropped``."""
        self.shadow_requests.labels(key[0], str(key[1]), outcome).inc()

    # CacheHooks

    def on_load(self, key: VersionKey, size: int, seconds: float) -> None:
        self.loads.labels(key[0], str(key[1])).inc()
        self.load_seconds.observe(seconds)
        self._publish_cache()

    def on_load_failure(self, key: VersionKey, reason: str) -> None:
        self.load_failures.labels(key[0], str(key[1])).inc()

    def on_crash(self, key: VersionKey, reason: str) -> None:
        self.crashes.labels(key[0], str(key[1])).inc()

    def on_unload(self, key: VersionKey, reason: str) -> None:
        self.unloads.labels(key[0], str(key[1]), reason).inc()
        if reason == "evicted":
            self.evictions.labels(key[0], str(key[1])).inc()
        self._publish_cache()


_REQUESTS = ("model_manager_requests", "Predictions, by outcome.")
_REQUEST_SECONDS = ("model_manager_request_seconds", "Prediction latency as the server sees it.")
_INFERENCE_SECONDS = ("model_manager_inference_seconds", "Time inside the model's runtime.")
_LE = [*(floatToGoString(b) for b in _LATENCY_BUCKETS), "+Inf"]  # type: ignore[no-untyped-call]


class _Times:
    """One version's latency histogram: counts per bucket (the last one past every bound), sum,
    and when it was made."""

    __slots__ = ("buckets", "created", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(_LATENCY_BUCKETS) + 1)
        self.total = 0.0
        self.created = time.time()

    def add(self, seconds: Sequence[float]) -> None:
        add_to_histogram(self.buckets, _LATENCY_BUCKETS, seconds)
        total = self.total
        for took in seconds:  # one by one, as observations add up: the same sum to the last bit
            total += took
        self.total = total

    def cumulative(self) -> list[tuple[str, float]]:
        counted, running = [], 0
        for le, n in zip(_LE, self.buckets, strict=True):
            running += n
            counted.append((le, float(running)))
        return counted


class _RequestCounts:
    """``model_manager_requests``, ``..._request_seconds`` and ``..._inference_seconds`` of a
    single-process server, kept as plain counts that a scrape turns into the samples
    prometheus_client's Counter and Histograms would write. The usage recorder hands over each
    version's successful requests in batches, so a request costs no lock and no bucket search
    of its own; ``before_scrape`` hands over what it still holds."""

    def __init__(self) -> None:
        self.before_scrape: Callable[[], None] = lambda: None
        self._lock = threading.Lock()  # batches come from any thread; scrapes from a thread
        self._requests: dict[tuple[VersionKey, str], list[float]] = {}
        """(version, outcome) -> [requests, created]."""
        self._latency: dict[VersionKey, _Times] = {}
        self._inference: dict[VersionKey, _Times] = {}

    def add(self, key: VersionKey, outcome: str, seconds: Sequence[float],
            inference: Sequence[float | None]) -> None:
        timed = [s for s in inference if s is not None]
        with self._lock:
            counted = self._requests.get((key, outcome))
            if counted is None:
                counted = self._requests[key, outcome] = [0, time.time()]
            counted[0] += len(seconds)
            self._times(self._latency, key).add(seconds)
            if timed:
                self._times(self._inference, key).add(timed)

    @staticmethod
    def _times(histograms: dict[VersionKey, _Times], key: VersionKey) -> _Times:
        found = histograms.get(key)
        if found is None:
            found = histograms[key] = _Times()
        return found

    def collect(self) -> Iterator[Metric]:
        self.before_scrape()
        with self._lock:
            requests = CounterMetricFamily(*_REQUESTS, labels=["model", "version", "outcome"])
            for (key, outcome), (n, created) in self._requests.items():
                requests.add_metric([key[0], str(key[1]), outcome], n, created=created)
            yield requests
            for (name, documentation), histograms in ((_REQUEST_SECONDS, self._latency),
                                                      (_INFERENCE_SECONDS, self._inference)):
                family = HistogramMetricFamily(name, documentation, labels=["model", "version"])
                for key, times in histograms.items():
                    labels = [key[0], str(key[1])]
                    family.add_metric(labels, times.cumulative(), times.total)
                    family.add_sample(f"{name}_created", {"model": labels[0], "version": labels[1]},
                                      times.created)
                yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())  # (the registry then need not call collect to learn the names)


class _RegistryHealth:
    """Whether the registry answers and since when it has not, as the scraping worker sees it
    (the registry is shared: one worker's view is the server's)."""

    def __init__(self, is_up: Callable[[], float], down_seconds: Callable[[], float]) -> None:
        self._is_up = is_up
        self._down_seconds = down_seconds

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("model_manager_registry_up", "1 while the registry's database "
                                "answers and takes writes, else 0.", value=self._is_up())
        yield GaugeMetricFamily("model_manager_registry_down_seconds", "Seconds since the "
                                "registry stopped answering (0 while it answers); routes in "
                                "force are at most this old plus 2 s.",
                                value=self._down_seconds())


class _Disks:
    """Free and total bytes where the server writes, measured when scraped."""

    def __init__(self, measure: Callable[[], Mapping[str, DiskFigures]]) -> None:
        self._measure = measure

    def collect(self) -> Iterator[Metric]:
        free = GaugeMetricFamily("model_manager_disk_free_bytes", "Bytes free to the server on "
                                 "the filesystem of each place it writes: data_dir (the registry "
                                 "and local store by default), staging (where uploads are "
                                 "written: the local store, or the S3 store's cache).",
                                 labels=["place"])
        total = GaugeMetricFamily("model_manager_disk_total_bytes", "Size of the filesystem of "
                                  "each place the server writes.", labels=["place"])
        for place, space in self._measure().items():
            free.add_metric([place], space.free)
            total.add_metric([place], space.total)
        yield free
        yield total
