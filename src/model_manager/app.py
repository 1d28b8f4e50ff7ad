"""``create_app(settings)``: builds every component; the lifespan starts and stops them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from model_manager import __version__
from model_manager.api import (
    BodySizeLimit,
    Readiness,
    install_error_handlers,
    management_routes,
    metrics_routes,
    v2_routes,
)
from model_manager.catalog import Catalog
from model_manager.registry import Registry
from model_manager.runtimes import LoadOptions
from model_manager.serving import ModelCache, PredictionRouter, VersionLifecycle
from model_manager.serving.memory import tune_allocator
from model_manager.settings import Settings
from model_manager.store import open_store
from model_manager.telemetry import Metrics

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    registry = Registry.from_url(settings.resolved_db_url)
    store = open_store(settings.resolved_store_url)
    catalog = Catalog(registry, store, LoadOptions(allow_pickle=settings.allow_pickle),
                      settings.max_upload_size)
    metrics = Metrics()
    cache = ModelCache(catalog.load_runtime, settings.memory_budget, hooks=metrics,
                       room_wait=settings.load_wait)
    metrics.watch_cache(lambda: cache.used, lambda: len(cache.loaded()), settings.memory_budget)
    router = PredictionRouter(registry, cache)
    lifecycle = VersionLifecycle(catalog, cache)
    readiness = Readiness()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tune_allocator()
        await anyio.to_thread.run_sync(registry.migrate)
        if settings.demo:
            await anyio.to_thread.run_sync(_register_demo, catalog)
        log.info("ml-model-manager %s serving on %s:%d (registry %s, store %s, memory budget "
                 "%d bytes)", __version__, settings.host, settings.port,
                 registry.engine.url.render_as_string(), settings.resolved_store_url,
                 settings.memory_budget)
        tasks = [asyncio.create_task(_start_up(lifecycle, settings, readiness))]
        if settings.idle_unload > 0:
            tasks.append(asyncio.create_task(_unload_idle(cache, settings.idle_unload)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await cache.close()
            registry.close()

    app = FastAPI(title="ml-model-manager", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(v2_routes(router, registry, cache, lifecycle, readiness))
    app.include_router(management_routes(catalog, lifecycle, cache))
    app.include_router(metrics_routes(metrics))
    app.add_middleware(BodySizeLimit, max_request_size=settings.max_request_size,
                       max_upload_size=settings.max_upload_size)
    return app


async def _start_up(lifecycle: VersionLifecycle, settings: Settings, readiness: Readiness) -> None:
    """Load pinned versions and the --preload aliases; the server is ready once they are in."""
    readiness.set(False, "preloading models")
    await lifecycle.preload(settings.preload_aliases)
    readiness.set(True)


async def _unload_idle(cache: ModelCache, max_idle: float) -> None:
    while True:
        await asyncio.sleep(min(max_idle / 4, 30.0))
        await cache.unload_idle(max_idle)


def _register_demo(catalog: Catalog) -> None:
    from model_manager.demo import register_demo_models

    if catalog.registry.is_empty():
        register_demo_models(catalog)
