"""``create_app(settings)``: builds every component; the lifespan starts and stops them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio.to_thread
from fastapi import FastAPI
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from model_manager import __version__, devices, scheduling, workers
from model_manager.access import KeyRing
from model_manager.api import (
    ApiKeyAuth,
    BodySizeLimit,
    InferEndpoint,
    Readiness,
    dashboard_routes,
    governance_routes,
    install_error_handlers,
    keys_routes,
    management_routes,
    memory_routes,
    metrics_routes,
    monitoring_routes,
    status_routes,
    v1_routes,
    v2_routes,
)
from model_manager.api.codec import TensorLimits
from model_manager.api.replicas import replica_routes
from model_manager.api.whole import WholeServer
from model_manager.catalog import Catalog
from model_manager.clock import Clock
from model_manager.errors import ModelManagerError, Unreachable
from model_manager.fleet import HEARTBEAT, Fleet, Holding, address_of, replica_id
from model_manager.governance import Governance, Limits
from model_manager.health import HealthMonitor, Thresholds
from model_manager.notify import HealthWatch, Notifier
from model_manager.registry import Registry, VersionRecord
from model_manager.runtimes import LoadOptions
from model_manager.runtimes.remote import FORK_SERVER, Isolation
from model_manager.serving import LoadedModel, ModelCache, PredictionRouter, VersionLifecycle
from model_manager.serving.guard import CanaryGuard
from model_manager.serving.hooks import HookFanout
from model_manager.serving.lifecycle import warm
from model_manager.serving.memory import freeze_startup_objects, tune_allocator
from model_manager.serving.model_settings import SettingsCache
from model_manager.serving.routes import RouteTable
from model_manager.serving.shadow import ShadowDispatcher
from model_manager.settings import Settings
from model_manager.sizes import human_size
from model_manager.store import open_store
from model_manager.store.space import measure
from model_manager.telemetry import (
    CacheHistory,
    EventLog,
    Metrics,
    PredictionLog,
    ShadowStats,
    UsageRecorder,
    UsageStore,
)
from model_manager.telemetry.audit import AuditTrail
from model_manager.telemetry.drift import DriftMonitor, ReferenceStore
from model_manager.telemetry.drift import Thresholds as DriftThresholds
from model_manager.telemetry.metrics import WriteBehind, worker_exited

log = logging.getLogger(__name__)

_SETTINGS_REFRESH = 2.0
"""Seconds between re-reads of per-model settings (other replicas may change them)."""
_DRIFT_EVERY = 1.0
"""Seconds between digests of the inputs queued for drift."""
_NOTIFY_EVERY = 1.0
"""Seconds between rounds of notification delivery."""


def create_app(settings: Settings) -> ASGIApp:
    clock = Clock(settings.clock_file)
    now = clock.reader()  # for what reads the time on every request
    registry = Registry.from_url(settings.resolved_db_url, clock)
    store = open_store(settings.resolved_store_url, settings.data_dir / "cache")
    events = EventLog()
    options = LoadOptions(allow_pickle=settings.allow_pickle,
                          allow_custom_code=settings.allow_custom_code,
                          threads=settings.model_threads, device=settings.device)
    catalog = Catalog(registry, store, options, settings.max_upload_size, events,
                      max_unpacked_size=settings.unpacked_limit, isolation=Isolation.from_settings(settings))
    metrics = Metrics()
    usage = UsageRecorder(UsageStore(registry), metrics, events, now)
    history = CacheHistory(clock)

    async def after_load(entry: LoadedModel) -> None:
        if await health.probe(entry) is None:  # a probe warms the model; else one dry run does
            await anyio.to_thread.run_sync(warm, entry.runtime)

    siblings = workers.joined()  # None unless `serve --workers` started this process
    accelerator = (None if settings.device == devices.CPU else devices.open_accelerator(
        settings.device, settings.gpu_memory_budget, share=1 / settings.workers))
    placement = (None if accelerator is None else
                 devices.Placement(accelerator, catalog.device_for, catalog.first_use))
    cache = ModelCache(catalog.load_runtime, settings.memory_budget,
                       hooks=HookFanout([metrics, events, history]), room_wait=settings.load_wait,
                       after_load=after_load, clock=now, shared=siblings, device=placement)
    thresholds = Thresholds(settings.health_max_error_rate, settings.health_max_invalid_rate,
                            settings.health_max_p99)
    model_settings = SettingsCache(registry, settings.prediction_log_rate)
    references = ReferenceStore(registry)
    drift = DriftMonitor(references.load, references.save,
                         lambda model: DriftThresholds(model_settings.get(model).drift_psi,
                                                       model_settings.get(model).drift_ks),
                         settings.health_window,
                         lambda key, reason: events.emit("drift", model=key[0], version=key[1],
                                                         reason=reason),
                         lambda key, column, score: metrics.drift_score.labels(
                             key[0], str(key[1]), column).set(score),
                         settings.drift_baseline, now)
    health = HealthMonitor(cache, usage, events, thresholds, settings.health_window, clock,
                           drift.reasons)
    metrics.watch_cache(lambda: cache.used, lambda: len(cache.loaded()), settings.memory_budget)
    if accelerator is not None:
        metrics.watch_device(lambda: {e.key: e.device_size for e in cache.loaded()
                                      if e.device_size},
                             accelerator.budget, lambda: accelerator.context_bytes,
                             accelerator.memory.used)
    predictions = PredictionLog(registry, settings.prediction_log_rows, now)
    shadow_stats = ShadowStats(registry, clock)
    shadows = ShadowDispatcher(cache, shadow_stats, predictions, metrics,
                               settings.predict_timeout, settings.shadow_queue)
    routes = RouteTable(registry, on_read=lambda outcome: metrics.route_reads.labels(outcome).inc())
    router = PredictionRouter(routes, cache, usage, settings.predict_timeout, model_settings,
                              predictions, shadows, settings.inference_threads,
                              settings.model_concurrency, settings.model_queue,
                              drift if settings.drift else None)
    lifecycle = VersionLifecycle(catalog, cache, health, events,
                                 siblings.announce if siblings is not None else None)
    if siblings is not None:
        registry.on_change = functools.partial(siblings.announce, "registry")
    guard = CanaryGuard(registry, model_settings, usage, lifecycle, events, clock)
    audit = AuditTrail(registry)
    governance = Governance(catalog, cache, usage, health, thresholds,
                            Limits.from_settings(settings), settings.memory_budget, events, audit,
                            settings.cleanup_notice)
    flushed = (usage, shadow_stats, predictions, audit)
    whole = WholeServer(siblings, usage, cache, history, clock, functools.partial(_flush, *flushed),
                        accelerator)
    fleet = Fleet(registry, address_of(settings.host, settings.port), settings.memory_budget,
                  functools.partial(_holdings, cache, siblings),
                  replica_id(os.environ.get(workers.RUN_DIR_ENV)))
    notifier = Notifier(registry, model_settings, fleet.id,
                        f"http://{address_of(settings.host, settings.port)}", clock=clock,
                        retry=settings.notify_retry)
    events.listeners.append(notifier.on_event)
    health_watch = HealthWatch(notifier, model_settings, functools.partial(_live_versions, registry),
                               health.version_health)
    writers: dict[str, WriteBehind] = {"usage": usage, "shadow": shadow_stats,
                                       "predictions": predictions, "audit": audit}
    metrics.watch_registry(lambda: float(registry.status.is_up), registry.status.down_seconds,
                           writers)
    disks = {"data_dir": settings.data_dir, "staging": store.staging_dir}
    metrics.watch_disks(lambda: {place: measure(path) for place, path in disks.items()})
    readiness = Readiness()
    keys = KeyRing(registry)
    limits = TensorLimits(settings.max_inputs, settings.max_tensor_elements,
                          settings.max_bytes_element)
    grpc_server = _grpc_server(settings, router, registry, cache, lifecycle, readiness, keys,
                               limits, shared_port=siblings is not None)

    async def once(duty: Callable[[], Awaitable[Any]]) -> None:
        """Run a once-per-server duty: in the leading worker only, when there are several."""
        if siblings is None or siblings.is_leader():
            await duty()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tune_allocator()
        if siblings is None:  # else the command did both before starting the workers
            await anyio.to_thread.run_sync(registry.migrate)
            if settings.demo:
                await anyio.to_thread.run_sync(_register_demo, catalog, settings)
        freeze_startup_objects()
        log.info("ml-model-manager %s serving on %s:%d (registry %s, store %s, memory budget "
                 "%s)", __version__, settings.host, settings.port,
                 registry.engine.url.render_as_string(), settings.resolved_store_url,
                 human_size(settings.memory_budget))
        await anyio.to_thread.run_sync(keys.refresh)
        _check_exposure(settings, keys)
        with contextlib.suppress(Unreachable):
            await once(functools.partial(anyio.to_thread.run_sync, fleet.beat))
        await anyio.to_thread.run_sync(model_settings.refresh)
        if grpc_server is not None:
            await grpc_server.start()
        scheduling.wake_promptly()  # its helpers have started, and keep the batch policy
        tasks = [asyncio.create_task(_start_up(lifecycle, settings, readiness)),
                 asyncio.create_task(_every(settings.usage_flush_interval, _flush, *flushed)),
                 asyncio.create_task(_every(_SETTINGS_REFRESH, _in_thread, model_settings.refresh)),
                 asyncio.create_task(_every(_SETTINGS_REFRESH, _in_thread, keys.refresh)),
                 asyncio.create_task(_every(settings.guard_interval, once, guard.check)),
                 asyncio.create_task(_every(HEARTBEAT, once, functools.partial(
                     anyio.to_thread.run_sync, fleet.beat))),
                 asyncio.create_task(_every(metrics.PUBLISH_EVERY, _in_thread, metrics.publish)),
                 asyncio.create_task(_every(_NOTIFY_EVERY, notifier.deliver)),
                 asyncio.create_task(_every(_DRIFT_EVERY, _in_thread, drift.digest)),
                 asyncio.create_task(_every(settings.guard_interval, _in_thread,
                                            health_watch.check))]
        if settings.idle_unload > 0:
            tasks.append(asyncio.create_task(
                _every(min(settings.idle_unload / 4, 30.0), cache.unload_idle, settings.idle_unload)))
        if settings.cleanup_interval > 0:
            tasks.append(asyncio.create_task(
                _every(settings.cleanup_interval, once, governance.scheduled)))
        if siblings is not None:
            tasks.append(asyncio.create_task(_every(workers.TICK, _keep_in_step, siblings, cache,
                                                    lifecycle, registry, model_settings, keys,
                                                    whole)))
        if settings.probe_interval > 0:
            tasks.append(asyncio.create_task(_every(settings.probe_interval, health.probe_loaded)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if grpc_server is not None:
                await grpc_server.stop(settings.shutdown_timeout)
            await shadows.close()
            await notifier.close()
            try:
                await _flush(*flushed)
            except Unreachable as exc:
                lost = {kind: w.pending_count() for kind, w in writers.items()}
                log.error("stopping with writes the registry could not take, which are lost "
                          "(%s): %s", lost, exc.message)
            await cache.close()
            if siblings is None or siblings.is_leader():
                with contextlib.suppress(Unreachable):
                    await anyio.to_thread.run_sync(fleet.leave)
            registry.close()
            if siblings is not None:
                siblings.close()

    app = FastAPI(title="ml-model-manager", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(v2_routes(router, registry, cache, lifecycle, readiness))
    app.include_router(v1_routes(router, registry, cache, limits))
    app.include_router(management_routes(catalog, lifecycle, cache, usage, health, whole, fleet,
                                         siblings, drift))
    app.include_router(replica_routes(fleet))
    app.include_router(monitoring_routes(registry, model_settings, shadow_stats, predictions,
                                         notifier, health_watch, drift, cache))
    app.include_router(governance_routes(governance, lifecycle, catalog, disks))
    app.include_router(keys_routes(keys))
    app.include_router(memory_routes(whole))
    app.include_router(metrics_routes(metrics))
    app.include_router(status_routes(registry.status, writers, disks, FORK_SERVER))
    app.include_router(dashboard_routes())
    app.add_middleware(BodySizeLimit, max_request_size=settings.max_request_size,
                       max_upload_size=settings.max_upload_size)
    # The infer endpoint sits in front of the framework, whose middleware stack (error pages,
    # its own limits) would cost a small prediction more than the prediction: the hot path
    # is the key check, then the endpoint. Everything else goes on to the framework, behind
    # uvicorn's proxy headers (a trusted proxy's X-Forwarded-For and -Proto: its
    # FORWARDED_ALLOW_IPS, 127.0.0.1 by default), which the servers leave to the app
    # (``proxy_headers=False``): a prediction reads neither the client's address nor the scheme.
    behind: Any = ProxyHeadersMiddleware(cast(Any, app), trusted_hosts=os.environ.get(
        "FORWARDED_ALLOW_IPS", "127.0.0.1"))  # (uvicorn types ASGI apps its own way)
    return ApiKeyAuth(InferEndpoint(behind, router=router,
                                    max_request_size=settings.max_request_size, limits=limits),
                      keys=keys)


def _grpc_server(settings: Settings, router: PredictionRouter, registry: Registry,
                 cache: ModelCache, lifecycle: VersionLifecycle, readiness: Readiness,
                 keys: KeyRing, limits: TensorLimits, shared_port: bool) -> Any:
    """The gRPC endpoint (a ``GrpcServer``), or None with ``--grpc-port 0``: grpc is imported
    only when it serves."""
    if settings.grpc_port == 0:
        return None
    from model_manager.api.grpc import GrpcServer, InferenceService

    service = InferenceService(router, registry, cache, lifecycle, readiness, keys, limits)
    return GrpcServer(service, readiness, settings.host, settings.grpc_port,
                      settings.max_request_size, shared_port)


def _check_exposure(settings: Settings, keys: KeyRing) -> None:
    """Refuse to serve a non-loopback address with no API key, unless told ``--insecure``. Once
    a key has existed, requests need one for good (``KeyRing.enforced``), so revoking keys while
    serving cannot open the server either."""
    loopback = settings.host in ("127.0.0.1", "::1", "localhost") or settings.host.startswith("127.")
    if not loopback and not keys.enforced and not settings.insecure:
        raise RuntimeError(
            f"refusing to serve on {settings.host} without an API key: anyone who can reach it "
            f"could change or delete models. Create a key first (`model-manager keys create "
            f"--data-dir {settings.data_dir} --role admin --name ops`, or serve on 127.0.0.1 "
            f"and create it there), or pass --insecure")


def app_from_environment() -> ASGIApp:
    """The app for servers that import it by name (granian, the workers of ``serve
    --workers``): settings from MODEL_MANAGER_*."""
    settings = Settings.load()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(settings)


def prepare_registry(settings: Settings) -> None:
    """Migrate the registry and register the demo models (with ``--demo``), once for the
    workers that will share it."""
    registry = Registry.from_url(settings.resolved_db_url)
    try:
        registry.migrate()
        if settings.demo:
            store = open_store(settings.resolved_store_url, settings.data_dir / "cache")
            _register_demo(Catalog(registry, store, LoadOptions(), settings.max_upload_size,
                                   EventLog()), settings)
    finally:
        registry.close()


async def _start_up(lifecycle: VersionLifecycle, settings: Settings, readiness: Readiness) -> None:
    """Load pinned versions and the --preload aliases; the server is ready once they are in."""
    readiness.set(False, "preloading models")
    await lifecycle.preload(settings.preload_aliases)
    readiness.set(True)


async def _every(seconds: float, work: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """Run ``work`` every ``seconds``; a failure is logged and the next round still runs. While
    the registry is unreachable (logged once, by ``RegistryStatus``) a round just waits for the
    next: flushes keep their batches, the guard and cleanup pause."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await work(*args)
        except Unreachable as exc:
            log.debug("periodic %s waits for the registry: %s", getattr(work, "__name__", work),
                      exc.message)
        except Exception:
            log.exception("periodic %s failed", getattr(work, "__name__", work))


def _holdings(cache: ModelCache, siblings: workers.Siblings | None) -> list[Holding]:
    """The versions this server holds, (model, version, bytes), over all its workers."""
    if siblings is None:
        return [(*e.key, e.size) for e in cache.loaded()]
    return [(model, version, sum(h["bytes"] for h in held))
            for (model, version), held in siblings.holders().items()]


async def _keep_in_step(siblings: workers.Siblings, cache: ModelCache,
                        lifecycle: VersionLifecycle, registry: Registry,
                        model_settings: SettingsCache, keys: KeyRing, whole: WholeServer) -> None:
    """Apply what the other workers announced, answer what they asked, make room they wait
    for, and (in the leading worker) forget the workers that died."""
    news = siblings.news()
    if any(n["kind"] == "registry" for n in news):
        registry.changed_elsewhere()  # routes are re-read by the next request
        await anyio.to_thread.run_sync(model_settings.refresh)
        await anyio.to_thread.run_sync(keys.refresh)
    for item in news:
        try:
            if item["kind"] == "question":
                await whole.respond(item)
            elif item["kind"] != "registry":
                await lifecycle.apply(item)
        except ModelManagerError as exc:
            log.warning("%s from another worker failed here: %s", item, exc.message)
        except Exception:
            log.exception("%s from another worker failed here", item)
    await cache.relieve()
    if siblings.is_leader():
        for pid in await anyio.to_thread.run_sync(siblings.reap):
            log.warning("worker pid %d is gone; its slot in the budget is free", pid)
            worker_exited(pid)


async def _flush(*recorders: UsageRecorder | ShadowStats | PredictionLog | AuditTrail) -> None:
    """Write what each recorder gathered; one failing does not keep the others from writing."""
    failed = None
    for recorder in recorders:
        try:
            await anyio.to_thread.run_sync(recorder.flush)
        except Exception as exc:
            failed = exc
    if failed is not None:
        raise failed


async def _in_thread(work: Callable[[], Any]) -> None:
    await anyio.to_thread.run_sync(work)


def _register_demo(catalog: Catalog, settings: Settings) -> None:
    """Register the demo models on a first start, in a child process: training and converting
    them imports much of scikit-learn, which the server itself then never holds in memory."""
    if not catalog.registry.is_empty():
        return
    import multiprocessing

    from model_manager.demo import register_demo_models_from

    child = multiprocessing.get_context("spawn").Process(
        target=register_demo_models_from, args=(settings,), name="register-demo")
    child.start()
    child.join()
    if child.exitcode != 0:
        log.error("registering the demo models failed (exit code %s); see the log above",
                  child.exitcode)


def _live_versions(registry: Registry, model: str) -> list[VersionRecord]:
    return [v for v in registry.get_model(model).versions if not v.archived]
