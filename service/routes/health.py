from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..encoder_cache import ENCODERS

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz():
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request):
    """Readiness: the data directory is usable and preloaded models (if any) are in memory."""
    st = request.app.state
    ready = st.ready.is_set() and st.store.data_dir.is_dir()
    body = {"status": "ready" if ready else "starting", "models": ENCODERS.loaded(),
            "collections": len(st.store.names())}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
def metrics(request: Request):
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
