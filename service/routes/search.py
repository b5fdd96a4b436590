from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ..auth import require_read
from ..schemas import SearchRequest, SearchResponse

router = APIRouter(tags=["search"])


@router.post("/collections/{name}/search", response_model=SearchResponse,
             dependencies=[Depends(require_read)])
def search(name: str, body: SearchRequest, request: Request):
    """Search one collection: sparse, bm25, dense or hybrid (fused), with optional filter,
    PRF, MaxSim rerank, pagination (offset) and per-term explanations."""
    return request.app.state.pipeline.search(name, body)
