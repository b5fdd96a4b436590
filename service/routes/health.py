from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from indexer.native import variant as native_variant

from .. import models
from ..auth import require_metrics
from ..encoder_cache import ENCODERS

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz():
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request):
    """Readiness: the data directory is usable and preloaded models (if any) are in memory.

    "degraded" (still 200: the healthy collections serve) lists the damaged collections.
    ``role`` is "writer" or "follower" (which forwards writes to the writer); a follower also
    says when it last caught up with the writer (``last_refresh``, Unix time). ``models``: the
    loaded encoders (kind:name); ``registry``: every model the server can load, with kind,
    dimension and device (as GET /models)."""
    st = request.app.state
    ready = st.ready.is_set() and st.store.data_dir.is_dir()
    damaged = st.store.damaged()
    status = "starting" if not ready else "degraded" if damaged else "ready"
    body = {"status": status, **st.role.public(), "models": ENCODERS.loaded(), "kernels": native_variant(),
            "registry": [{k: m[k] for k in ("name", "kind", "dimension", "device", "loaded")}
                         for m in models.describe(ENCODERS)],
            "collections": len(st.store.names()),
            "damaged": [{"name": n, **d.public()} for n, d in sorted(damaged.items())]}
    return JSONResponse(body, status_code=200 if ready else 503)


class PrometheusText(Response):
    """Declares Prometheus' content type in the OpenAPI document, not JSON."""
    media_type = CONTENT_TYPE_LATEST


@router.get("/metrics", response_class=PrometheusText, dependencies=[Depends(require_metrics)],
            responses={401: {"description": "missing or wrong key"}})
def metrics(request: Request):
    """Prometheus text format. Needs LSR_METRICS_KEY when it is set, else a read key when keys
    are configured."""
    return PrometheusText(generate_latest(request.app.state.registry))
