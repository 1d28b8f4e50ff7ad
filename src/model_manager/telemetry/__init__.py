"""What happened: metrics for Prometheus."""

from __future__ import annotations

from model_manager.telemetry.metrics import CONTENT_TYPE, Metrics

__all__ = ["CONTENT_TYPE", "Metrics"]
