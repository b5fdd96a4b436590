from __future__ import annotations

import time

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from ..auth import AuthFirstRoute, require_read
from ..observability import slow_search
from ..schemas import SearchRequest, SearchResponse
from ..timing import Timings

router = APIRouter(tags=["search"], route_class=AuthFirstRoute)
SEARCH_PATH = "/collections/{name}/search"

# The request examples of /docs' drop-down; a test runs each against the demo collection.
EXAMPLES = {
    "hybrid": {"summary": "Hybrid: SPLADE + BM25 + dense, fused by RRF", "value": {
        "query": "how do wind turbines make electricity", "mode": "hybrid", "k": 5}},
    "convex_rerank": {"summary": "Convex fusion and MaxSim rerank", "value": {
        "query": "how do wind turbines make electricity", "mode": "hybrid", "k": 5,
        "fusion": {"method": "convex", "alpha": 0.3},
        "rerank": {"kappa": 50, "first_stage_weight": 0.2, "alpha": 0.1, "beta": 15}}},
    "filter": {"summary": "Metadata filter", "value": {
        "query": "renewable energy", "mode": "sparse", "k": 5,
        "filter": {"topic": "energy", "year": {"gte": 2015}}}},
    "explain": {"summary": "Explain: each list's rank and score, per-term contributions", "value": {
        "query": "black holes and gravity", "mode": "hybrid", "k": 3, "explain": True}},
    "prf_page": {"summary": "Pseudo-relevance feedback, second page", "value": {
        "query": "renewable energy sources", "mode": "hybrid", "k": 3, "offset": 3,
        "prf": {"docs": 3, "terms": 32}}},
}
RESPONSE_EXAMPLE = {"results": [
    {"id": "energy-02", "score": 0.04918, "text": "Wind turbines turn the kinetic energy of moving air "
     "into electrical power through a generator.", "metadata": {"topic": "energy", "year": 2016},
     "explanation": None},
    {"id": "energy-07", "score": 0.03226, "text": "Offshore wind farms benefit from stronger, "
     "steadier winds than sites on land.", "metadata": {"topic": "energy", "year": 2019},
     "explanation": None}],
    "mode": "hybrid", "offset": 0, "k": 2, "candidates": 187, "reranked": 0, "rerank_stats": None}


def _runs_inline(body: SearchRequest, store) -> bool:
    """A BM25 search without rerank or PRF is a fraction of a millisecond of index work: it
    runs on the event loop, which saves the thread hop it would otherwise cost. Anything that
    runs a model goes to the thread pool, where concurrent queries share encoder batches, and
    so does every search of a store that waits on other processes (a cluster's shards)."""
    return not store.remote and body.mode == "bm25" and body.rerank is None and body.prf is None


async def answer(state, name: str, body: SearchRequest) -> tuple[bytes, str]:
    """(JSON body, Server-Timing header) of a search: the route below and the fast lane
    (service/fast_search.py) both answer through here."""
    timings = Timings()
    t0 = time.perf_counter()
    if _runs_inline(body, state.store):
        res = state.pipeline.search(name, body, timings)
    else:
        res = await run_in_threadpool(state.pipeline.search, name, body, timings)
    with timings.stage("serialize"):
        # the pipeline built a valid SearchResponse: dump it once (pydantic-core), no re-validation
        content = res.model_dump_json().encode()
    elapsed = time.perf_counter() - t0
    state.search_seconds.labels(body.mode, str(body.rerank is not None).lower()).observe(elapsed)
    timings.stages["total"] = elapsed
    slow_search(state.settings.slow_search_ms, elapsed, name, body, timings.stages)
    return content, timings.header()


@router.post(SEARCH_PATH, response_model=SearchResponse, dependencies=[Depends(require_read)],
             responses={200: {"content": {"application/json": {"example": RESPONSE_EXAMPLE}}}})
async def search(name: str, body: Annotated[SearchRequest, Body(openapi_examples=EXAMPLES)], request: Request):
    """Search one collection: sparse, bm25, dense or hybrid (fused), with optional filter,
    PRF, MaxSim rerank, pagination (offset) and per-term explanations. The Server-Timing
    header splits the server's time into its stages (encode, retrieve, fuse, rerank, fetch)."""
    content, timing = await answer(request.app.state, name, body)
    return Response(content, media_type="application/json", headers={"Server-Timing": timing})
