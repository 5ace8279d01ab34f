"""``create_app(settings)``: the FastAPI application of API v1.

The model and index load in a background thread after the server starts, so ``/healthz``
answers at once and ``/readyz`` says 503 until the gallery is reconciled (which may mean
re-embedding every reference after a model change).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from detector import __version__
from detector.compute import ComputeThread
from detector.model_folder import load_model
from detector.runtime import open_runtime
from detector.service.admission import Admission
from detector.service.batching import MicroBatcher
from detector.service.errors import install_error_handlers
from detector.service.metrics import ServiceMetrics
from detector.service.routes import admin, brands, check, checks, health, me, pages, references
from detector.service.settings import Settings
from detector.service.uploads import BodyGuard
from detector.store import LOCAL_ACTOR, Store
from detector.thumbnails import Thumbnails
from detector.webhooks import Dispatcher

log = logging.getLogger("detector.service")
FOLLOW_RETRY_S = 1.0  # the gallery follower's pause after the database failed it
access_log = logging.getLogger("detector.access")


def create_app(settings: Settings, *, compute: ComputeThread | None = None) -> FastAPI:
    """``compute``: the thread that loads and runs the model (``cfd serve`` passes the one that took
    the process's intra-op threads, ``detector.compute``); by default a thread of its own."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loader = asyncio.create_task(_load(app))
        pruner = asyncio.create_task(_prune_periodically(app))
        follower = asyncio.create_task(_follow_gallery(app))
        app.state.dispatcher.start()
        try:
            yield
        finally:
            loader.cancel()
            pruner.cancel()
            follower.cancel()
            await asyncio.to_thread(app.state.dispatcher.stop)
            if app.state.batcher is not None:
                await app.state.batcher.stop()
            await asyncio.to_thread(app.state.compute.shutdown)
            if app.state.runtime is not None:
                await asyncio.to_thread(app.state.runtime.gallery.save_index)
                app.state.runtime.close()
            app.state.store.close()

    app = FastAPI(
        title="Counterfeit detector API", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        description="Check marketplace listing photos against brands' authentic reference galleries. "
                    "Every /v1 request needs `Authorization: Bearer <api-key>` (create one with `cfd keys create`).",
    )
    app.state.settings = settings
    app.state.compute = compute or ComputeThread()
    app.state.store = Store(settings.store_location)
    app.state.dispatcher = Dispatcher(app.state.store, settings.webhooks)
    app.state.runtime = None
    app.state.loaded = asyncio.Event()  # set once the runtime is in place
    app.state.batcher = None
    app.state.admission = Admission(settings.max_queue)
    app.state.startup_error = None
    app.state.metrics = ServiceMetrics(
        gallery_size=lambda: len(app.state.runtime.gallery.index) if app.state.runtime else 0,
        queue_depth=lambda: app.state.batcher.queued_images if app.state.batcher else 0,
    )
    install_error_handlers(app)
    for router in (health.router, brands.router, references.router, check.build_router(settings.limits), checks.router,
                   admin.router, me.router, pages.router):
        app.include_router(router)
    app.mount("/static/swagger", pages.swagger_assets(), name="swagger")
    app.middleware("http")(_observe)
    app.add_middleware(BodyGuard, max_form_bytes=settings.max_form_bytes, max_json_bytes=settings.limits.max_batch_bytes,
                       timeout_s=settings.body_timeout_s)
    return app


async def _load(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    compute: ComputeThread = app.state.compute
    try:  # on the compute thread, as every forward pass after it (a re-embedding at start included)
        model = await asyncio.wrap_future(compute.submit(load_model, settings.model, precision=settings.precision))
        runtime = await asyncio.wrap_future(compute.submit(open_runtime, settings.data_dir, model, limits=settings.limits,
                                                           align=settings.alignment, database=settings.database))
        runtime.gallery.embedder.run_on(compute)  # uploads' forward passes too, from their request threads
    except Exception as exc:  # the service stays up, not ready, and says why
        log.exception("startup failed")
        app.state.startup_error = str(exc)
        return
    batcher = MicroBatcher(runtime.detector.embedder.embed_tensor, compute=compute, max_batch=settings.max_batch,
                           max_wait_ms=settings.max_wait_ms,
                           enabled=settings.micro_batching, on_batch=app.state.metrics.batch_size.observe)
    await batcher.start()
    app.state.batcher = batcher
    # thumbnails decode within the same process-wide decoded-pixel budget as checks and uploads
    app.state.thumbnails = Thumbnails(limits=settings.limits, budget=runtime.gallery.pixels)
    app.state.runtime = runtime
    app.state.loaded.set()
    log.info("ready: model %s %s (%s), %d references", runtime.model.name, runtime.model.version,
             runtime.gallery.embedder.precision, len(runtime.gallery.index))


async def _prune_periodically(app: FastAPI) -> None:
    """Retention: undecided checks older than the setting go, once at start and then every hour."""
    settings: Settings = app.state.settings
    if settings.check_retention_days is None:
        return
    while True:
        runtime = app.state.runtime
        if runtime is not None:
            try:
                deleted = await asyncio.to_thread(runtime.gallery.checks.prune, older_than_days=settings.check_retention_days,
                                                  actor=LOCAL_ACTOR)
                if deleted:
                    log.info("retention: deleted %d undecided checks older than %s days", deleted, settings.check_retention_days)
            except Exception:  # a full disk or a busy database: try again next round
                log.exception("pruning old checks failed")
        await asyncio.sleep(settings.prune_interval_s if runtime is not None else 1.0)


async def _follow_gallery(app: FastAPI) -> None:
    """Between checks too, the index follows references other replicas (or a ``cfd`` beside the
    service) added or removed, so a check rarely waits for a catch-up; a check still looks first
    (``Gallery.refresh``), so none answers from a copy older than its own start. PostgreSQL wakes
    it at each committed change (LISTEN/NOTIFY); on SQLite it looks every ``follow_interval_s``."""
    interval = app.state.settings.follow_interval_s
    await app.state.loaded.wait()
    runtime = app.state.runtime
    while True:
        try:
            await asyncio.to_thread(runtime.gallery.store.database.wait_for_change, interval)
            await asyncio.to_thread(runtime.gallery.refresh)
        except Exception as exc:  # the database is unreachable for now: checks say so; try again shortly
            log.warning("following the gallery's changes failed: %s", exc)
            await asyncio.sleep(FOLLOW_RETRY_S)


async def _observe(request: Request, call_next):
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
    request.state.request_id = request_id
    start = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        response.headers["X-Request-ID"] = request_id
        return response
    finally:
        elapsed = time.perf_counter() - start
        route = request.scope.get("route")
        route_path = getattr(route, "path", "unmatched")
        request.app.state.metrics.observe(route_path, request.method, status, elapsed)
        access_log.info(json.dumps({"request_id": request_id, "method": request.method, "path": request.url.path,
                                    "route": route_path, "status": status, "duration_ms": round(elapsed * 1000, 1)}))
