"""The HTTP adapter: v2 inference, KServe V1 over the same router, management, the dashboard,
error mapping. Only this package knows HTTP."""

from __future__ import annotations

from model_manager.api.auth import ApiKeyAuth, keys_routes
from model_manager.api.dashboard import dashboard_routes
from model_manager.api.errors import STATUS, install_error_handlers, status_of
from model_manager.api.governance import governance_routes
from model_manager.api.infer import InferEndpoint
from model_manager.api.limits import BodySizeLimit
from model_manager.api.management import management_routes
from model_manager.api.memory import memory_routes
from model_manager.api.metrics import metrics_routes
from model_manager.api.monitoring import monitoring_routes
from model_manager.api.status import status_routes
from model_manager.api.v1 import v1_routes
from model_manager.api.v2 import Readiness, v2_routes

__all__ = [
    "STATUS",
    "ApiKeyAuth",
    "BodySizeLimit",
    "InferEndpoint",
    "Readiness",
    "dashboard_routes",
    "governance_routes",
    "install_error_handlers",
    "keys_routes",
    "management_routes",
    "memory_routes",
    "metrics_routes",
    "monitoring_routes",
    "status_of",
    "status_routes",
    "v1_routes",
    "v2_routes",
]
