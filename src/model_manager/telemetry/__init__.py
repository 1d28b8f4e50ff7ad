"""What happened: usage counters and latency histograms, Prometheus metrics, lifecycle events,
the cache's history."""

from __future__ import annotations

from model_manager.telemetry.cache_history import CacheHistory
from model_manager.telemetry.comparison import Comparison, PairStats, compare
from model_manager.telemetry.counts import ERROR_KINDS, OUTCOMES, UsageCounts
from model_manager.telemetry.events import EventLog
from model_manager.telemetry.metrics import CONTENT_TYPE, Metrics, worker_exited
from model_manager.telemetry.predictions import PredictionLog, parse_outcomes, prediction_of
from model_manager.telemetry.shadow_stats import ShadowStats
from model_manager.telemetry.usage import UsageRecorder, WindowStats, usage_report
from model_manager.telemetry.usage_store import UsageStore

__all__ = [
    "CONTENT_TYPE",
    "ERROR_KINDS",
    "OUTCOMES",
    "CacheHistory",
    "Comparison",
    "EventLog",
    "Metrics",
    "PairStats",
    "PredictionLog",
    "ShadowStats",
    "UsageCounts",
    "UsageRecorder",
    "UsageStore",
    "WindowStats",
    "compare",
    "parse_outcomes",
    "prediction_of",
    "usage_report",
    "worker_exited",
]
