"""The FastAPI application factory: ``create_app(settings)``, and ``app_from_env`` for uvicorn.

Serves every collection under ``settings.data_dir``. Routes are thin; the work happens in
Store (collections and documents), SearchPipeline (search) and JobManager (batch indexing).
At start the app becomes the data directory's writer or a follower (roles.py): any number of
processes may serve one data directory, and followers forward writes to the writer.
"""
from __future__ import annotations

import logging
import os
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import (CollectorRegistry, GCCollector, Histogram, PlatformCollector,
                               ProcessCollector)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from encoders.models import models_dir
from indexer.datadir import acquire_writer
from indexer.errors import LsrError
from indexer.maintenance import add_timing_hook, remove_timing_hook

from .console import mount_console
from .encoder_cache import ENCODERS
from .errors import client_message, http_status
from .fast_search import FastSearch
from .forwarding import ForwardWrites
from .middleware import BodyLimit, Metrics
from .observability import CollectionCollector, OperationMetrics, RequestId, configure_logging
from .pipeline import SearchPipeline
from .query_batching import QueryBatcher
from .roles import Follower, Writer
from .routes import aliases, collections, health, jobs, models, rag, search
from .schemas import ERROR_RESPONSES
from .settings import Settings
from .store import Store

log = logging.getLogger("lsr.service")

DESCRIPTION = """Retrieval over learned sparse representations: SPLADE, BM25 and dense lists,
fused by RRF or a convex combination, reranked by multivector MaxSim. Send an API key in
`X-API-Key` or `Authorization: Bearer` when the server has keys configured."""


def _validation_message(errors: list) -> str:
    parts = []
    for e in errors:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {e.get('msg')}")
    return "; ".join(parts) or "invalid request"


# search first: the hot route is matched before the others' templates are tried
ROUTERS = (search, health, collections, aliases, jobs, rag, models)


def _allowed_methods(scope) -> list[str]:
    """The methods of the resource at this path, for the Allow header of a 405. Where templates
    overlap (.../documents/get is also .../documents/{doc_id:path}), the most specific one —
    fewest parameters, as in the OpenAPI document — names the resource."""
    matching = [route for r in ROUTERS for route in r.router.routes
                if route.matches({**scope, "method": "GET"})[0] != Match.NONE]
    if not matching:
        return []
    fewest = min(len(route.param_convertors) for route in matching)
    return sorted({m for route in matching if len(route.param_convertors) == fewest for m in route.methods})


def create_app(settings: Settings | None = None, preload: bool = False, backend=None) -> FastAPI:
    """Build the app; ``preload`` loads the default encoders before /readyz says ready.
    ``backend(settings) -> (store, role)``: where the collections live instead of the local
    data directory — a cluster router's shards (cluster/backend.py); the routes are the same."""
    settings = settings or Settings()
    settings.apply()  # models dir, torch threads, ONNX paths: as for the CLI's local commands
    configure_logging(settings.log_format)
    ready = threading.Event()

    def warm_up() -> None:
        try:
            sparse = ENCODERS.sparse(settings.sparse_encoder)
            # the query graphs too (loaded lazily otherwise): the first query pays for nothing
            if hasattr(sparse, "query_hidden"):
                sparse.query_hidden()
            ENCODERS.dense(settings.dense_encoder).backbone.query_model()
            ENCODERS.multivector(settings.multivector_encoder).backbone.query_model()
        except Exception:  # readiness reports it; requests will name the failing model
            log.exception("preloading encoders failed")
        ready.set()

    lifespans = 0  # running lifespans of this app object

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # One app object has one role: a second lifespan of it (schemathesis runs its own beside
        # a TestClient's) shares the running one, and the last to end stops it.
        nonlocal lifespans
        lifespans += 1
        if lifespans == 1:
            try:
                start(app)
            except BaseException:
                lifespans -= 1
                remove_timing_hook(operations.hook)
                raise
        try:
            yield
        finally:
            lifespans -= 1
            if lifespans == 0:
                remove_timing_hook(operations.hook)
                app.state.forwarder = None
                await app.state.role.stop()

    def start(app: FastAPI) -> None:
        if not settings.auth_enabled:
            log.warning("no API keys configured (LSR_API_KEYS / LSR_READ_KEYS): the API is open "
                        "to localhost clients only")
        if backend is not None:
            start_backend(app, *backend(settings))
            return
        lock = acquire_writer(settings.data_dir)
        try:
            store = Store(settings.data_dir, ENCODERS, settings.encode_batch_size, settings.wal_recovery,
                          read_only=lock is None)
            store.open_all()  # finds and reports damaged collections before the first request
            role = Writer(app, settings, store, lock) if lock is not None else Follower(settings, store)
        except BaseException:
            if lock is not None:  # a failed start must not keep the data directory's writer lock
                lock.close()
            raise
        store.on_encode = operations.encoded
        add_timing_hook(operations.hook)
        start_backend(app, store, role)

    def start_backend(app: FastAPI, store, role) -> None:
        app.state.store, app.state.role = store, role
        app.state.jobs, app.state.forwarder = role.jobs, role.forwarder
        app.state.pipeline = SearchPipeline(store, settings.max_k, queries=queries)
        role.start()
        log.info("serving %s as its %s", settings.data_dir, role.name)
        if preload:
            threading.Thread(target=warm_up, name="lsr-warmup", daemon=True).start()
        else:
            ready.set()

    # /docs and /redoc come from mount_console: local assets instead of FastAPI's CDN pages
    app = FastAPI(title="lsr-search", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    registry = CollectorRegistry()
    # The default registry's process_*, python_info and python_gc_* series, in this app's own.
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    app.state.settings = settings
    app.state.forwarder = None  # set in a follower's lifespan
    batch_sizes = Histogram(
        "lsr_query_batch_size", "queries encoded per forward pass (concurrent requests share one)",
        ["encoder", "model"], registry=registry, buckets=(1, 2, 4, 8, 16, 32))

    def record_batch(encoder, size: int) -> None:
        batch_sizes.labels(type(encoder).__name__, getattr(encoder, "name", "?")).observe(size)
    operations = OperationMetrics(registry, settings.data_dir)
    queries = QueryBatcher(on_batch=record_batch, on_encode=operations.encoded)
    app.state.registry = registry
    registry.register(CollectionCollector(lambda: getattr(app.state, "store", None)))
    app.state.search_seconds = Histogram(
        "lsr_search_seconds", "search pipeline time by mode and rerank", ["mode", "rerank"],
        registry=registry, buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
    app.state.ready = ready

    private = tuple(sorted({str(p) for d in (settings.data_dir, models_dir()) for p in (d, d.resolve())},
                           key=len, reverse=True))

    async def known_error(request: Request, exc: Exception):
        """Every indexer and service error, through the one table in errors.py."""
        status = http_status(exc)
        if status is None:
            return await unexpected_error(request, exc)
        if status >= 500:
            log.error("%s %s -> %d: %s", request.method, request.url.path, status, exc)
        return JSONResponse({"detail": client_message(exc, private)}, status_code=status)

    async def unexpected_error(request: Request, exc: Exception):
        # a bug: the client gets no internals (paths, types), the log gets everything
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    app.add_exception_handler(LsrError, known_error)
    app.add_exception_handler(OSError, known_error)
    app.add_exception_handler(Exception, unexpected_error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        status = 400 if any(e.get("type") == "json_invalid" for e in errors) else 422
        safe = [{"loc": [str(x) for x in e.get("loc", ())], "msg": e.get("msg"), "type": e.get("type")}
                for e in errors]
        return JSONResponse({"detail": _validation_message(errors), "errors": safe}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        headers = exc.headers
        allowed = _allowed_methods(request.scope) if exc.status_code == 405 else None
        if allowed:  # Starlette names only the first matching route's methods
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    for r in ROUTERS:
        app.include_router(r.router, responses={} if r is health else ERROR_RESPONSES)
    mount_console(app)  # the web console at /, offline /docs and /redoc (no key, not in the schema)
    # Outermost last: metrics see every answer, including a 413 from the body limit; writes
    # are forwarded (in a follower) only once within the limit; the search fast lane is inside
    # them all (counted, bounded, and as a read never forwarded).
    search_route = next(r for r in search.router.routes if r.path == search.SEARCH_PATH)
    app.add_middleware(FastSearch, route=search_route)
    app.add_middleware(ForwardWrites, routes=[route for r in ROUTERS for route in r.router.routes])
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(Metrics, registry=registry)
    app.add_middleware(RequestId)  # outermost: every answer carries one, and so do its log lines
    return app


def app_from_env() -> FastAPI:
    """The app of each ``lsr serve --workers N`` process (uvicorn imports it by name): settings
    from LSR_* variables, which the CLI sets from its options; LSR_PRELOAD=1 for --preload."""
    return create_app(Settings(), preload=os.environ.get("LSR_PRELOAD") == "1")
