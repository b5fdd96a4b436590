from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request

from ..auth import AuthFirstRoute, require_read
from ..schemas import SearchRequest, SearchResponse

router = APIRouter(tags=["search"], route_class=AuthFirstRoute)


@router.post("/collections/{name}/search", response_model=SearchResponse,
             dependencies=[Depends(require_read)])
def search(name: str, body: SearchRequest, request: Request):
    """Search one collection: sparse, bm25, dense or hybrid (fused), with optional filter,
    PRF, MaxSim rerank, pagination (offset) and per-term explanations."""
    st = request.app.state
    t0 = time.perf_counter()
    res = st.pipeline.search(name, body)
    st.search_seconds.labels(body.mode, str(body.rerank is not None).lower()).observe(time.perf_counter() - t0)
    return res
