from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from .. import models
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
    "highlight": {"summary": "Highlight: the fragments that carry the top contributing terms", "value": {
        "query": "wind turbines electricity", "mode": "hybrid", "k": 3,
        "highlight": {"fragments": 2, "fragment_chars": 120}}},
    "facets": {"summary": "Facets: value counts over the hits and over the filtered collection", "value": {
        "query": "renewable energy", "mode": "hybrid", "k": 3,
        "facets": [{"key": "topic", "scope": "hits", "size": 5},
                   {"key": "year", "scope": "collection", "size": 5}]}},
    "exclusions": {"summary": "Exclusions: -term, -\"phrase\", must_not (remove or demote), negation", "value": {
        "query": "renewable energy -solar, but not wind", "mode": "hybrid", "k": 5, "negation": True,
        "must_not": ["fossil fuels", {"text": "hydroelectric", "weight": 0.5}]}},
}
RESPONSE_EXAMPLE = {"results": [
    {"id": "energy-02", "score": 0.04918, "text": "Wind turbines turn the kinetic energy of moving air "
     "into electrical power through a generator.", "metadata": {"topic": "energy", "year": 2016},
     "explanation": None},
    {"id": "energy-07", "score": 0.03226, "text": "Offshore wind farms benefit from stronger, "
     "steadier winds than sites on land.", "metadata": {"topic": "energy", "year": 2019},
     "explanation": None, "highlights": [
         {"text": "Offshore wind farms benefit from stronger, steadier winds than sites on land.",
          "start": 0, "matches": [[9, 13], [57, 62]], "terms": ["wind"], "score": 0.61,
          "marked": "Offshore <mark>wind</mark> farms benefit from stronger, steadier "
                    "<mark>winds</mark> than sites on land."}]}],
    "mode": "hybrid", "offset": 0, "k": 2, "candidates": 187, "reranked": 0, "rerank_stats": None,
    "query": "wind power", "exclusions": [{"text": "coal", "weight": None, "source": "syntax"}],
    "excluded": 4, "facets": [{"key": "topic", "scope": "hits", "values": [
        {"value": "energy", "count": 9}, {"value": "climate", "count": 4}], "other": 170, "missing": 0}]}


def _runs_inline(body: SearchRequest, store, name: str) -> bool:
    """A model-free search (BM25, or an inference-free sparse field: service/models.py) without
    rerank or PRF is a fraction of a millisecond of index work: it runs on the event loop,
    which saves the thread hop it would otherwise cost. Anything that runs a model goes to the
    thread pool, where concurrent queries share encoder batches, and so does every search of a
    store that waits on other processes (a cluster's shards) or may scan a collection's
    metadata (facets)."""
    return (not store.remote and body.rerank is None and body.prf is None and not body.facets
            and models.model_free(store, name, body.mode))


async def answer(state, name: str, body: SearchRequest) -> tuple[bytes, str]:
    """(JSON body, Server-Timing header) of a search: the route below and the fast lane
    (service/fast_search.py) both answer through here."""
    timings = Timings()
    t0 = time.perf_counter()
    if _runs_inline(body, state.store, name):
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
    PRF, MaxSim rerank, pagination (offset), per-term explanations, highlights, facets and
    exclusions (`must_not`, `-term` / `-"phrase"` in the query, optional natural-language
    negation). The Server-Timing header splits the server's time into its stages (encode,
    retrieve, exclude, fuse, rerank, facets, fetch)."""
    content, timing = await answer(request.app.state, name, body)
    return Response(content, media_type="application/json", headers={"Server-Timing": timing})
