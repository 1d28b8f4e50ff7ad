"""``create_app(settings)``: builds every component; the lifespan starts and stops them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from model_manager import __version__
from model_manager.api import BodySizeLimit, install_error_handlers, management_routes, v2_routes
from model_manager.catalog import Catalog
from model_manager.registry import Registry
from model_manager.runtimes import LoadOptions
from model_manager.serving import ModelCache, PredictionRouter
from model_manager.settings import Settings
from model_manager.store import open_store

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    registry = Registry.from_url(settings.resolved_db_url)
    store = open_store(settings.resolved_store_url)
    catalog = Catalog(registry, store, LoadOptions(allow_pickle=settings.allow_pickle),
                      settings.max_upload_size)
    cache = ModelCache(catalog.load_runtime)
    router = PredictionRouter(registry, cache)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(registry.migrate)
        if settings.demo:
            await anyio.to_thread.run_sync(_register_demo, catalog)
        log.info("ml-model-manager %s serving on %s:%d (registry %s, store %s)", __version__,
                 settings.host, settings.port, registry.engine.url.render_as_string(),
                 settings.resolved_store_url)
        try:
            yield
        finally:
            await cache.close()
            registry.close()

    app = FastAPI(title="ml-model-manager", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.catalog = catalog
    app.state.cache = cache
    install_error_handlers(app)
    app.include_router(v2_routes(router, registry, cache))
    app.include_router(management_routes(catalog, cache))
    app.add_middleware(BodySizeLimit, max_request_size=settings.max_request_size,
                       max_upload_size=settings.max_upload_size)
    return app


def _register_demo(catalog: Catalog) -> None:
    from model_manager.demo import register_demo_models

    if catalog.registry.is_empty():
        register_demo_models(catalog)
