"""The FastAPI application factory: ``create_app(settings)``.

Serves every collection under ``settings.data_dir``. Routes are thin; the work happens in
Store (collections and documents), SearchPipeline (search) and JobManager (batch indexing).
"""
from __future__ import annotations

import logging
import os
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException

from .encoder_cache import ENCODERS
from .errors import ServiceError
from .jobs import JobManager
from .middleware import BodyLimit, Metrics
from .pipeline import SearchPipeline
from .query_batching import QueryBatcher
from .routes import collections, health, jobs, rag, search
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


def create_app(settings: Settings | None = None, preload: bool = False) -> FastAPI:
    """Build the app; ``preload`` loads the default encoders before /readyz says ready."""
    settings = settings or Settings()
    if settings.models_dir is not None:
        os.environ["LSR_MODELS_DIR"] = str(settings.models_dir)
    if settings.torch_threads is not None:
        import torch
        torch.set_num_threads(settings.torch_threads)
    ENCODERS.dense_int8 = settings.dense_int8
    store = Store(settings.data_dir, ENCODERS, settings.encode_batch_size)
    job_manager = JobManager(store, settings.data_dir / ".jobs", settings.job_chunk_docs)
    ready = threading.Event()

    def warm_up() -> None:
        try:
            ENCODERS.sparse(settings.sparse_encoder)
            ENCODERS.dense(settings.dense_encoder)
            ENCODERS.multivector(settings.multivector_encoder)
        except Exception:  # readiness reports it; requests will name the failing model
            log.exception("preloading encoders failed")
        ready.set()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if not settings.auth_enabled:
            log.warning("no API keys configured (LSR_API_KEYS / LSR_READ_KEYS): the API is open "
                        "to localhost clients only")
        job_manager.start()
        if preload:
            threading.Thread(target=warm_up, name="lsr-warmup", daemon=True).start()
        else:
            ready.set()
        try:
            yield
        finally:
            job_manager.stop()
            store.close()

    app = FastAPI(title="lsr-search", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    registry = CollectorRegistry()
    app.state.settings = settings
    app.state.store = store
    batch_sizes = Histogram(
        "lsr_query_batch_size", "queries encoded per forward pass (concurrent requests share one)",
        ["encoder", "model"], registry=registry, buckets=(1, 2, 4, 8, 16, 32))

    def record_batch(encoder, size: int) -> None:
        batch_sizes.labels(type(encoder).__name__, getattr(encoder, "name", "?")).observe(size)
    queries = QueryBatcher(on_batch=record_batch)
    app.state.pipeline = SearchPipeline(store, settings.max_k, queries=queries)
    app.state.jobs = job_manager
    app.state.registry = registry
    app.state.search_seconds = Histogram(
        "lsr_search_seconds", "search pipeline time by mode and rerank", ["mode", "rerank"],
        registry=registry, buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
    app.state.ready = ready

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError):
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        status = 400 if any(e.get("type") == "json_invalid" for e in errors) else 422
        safe = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
        return JSONResponse({"detail": _validation_message(errors), "errors": safe}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    for r in (health, collections, search, jobs, rag):
        app.include_router(r.router)
    # Outermost first: metrics see every answer, including a 413 from the body limit.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(Metrics, registry=registry)
    return app
