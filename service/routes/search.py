from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from ..auth import AuthFirstRoute, require_read
from ..schemas import SearchRequest, SearchResponse
from ..timing import Timings

router = APIRouter(tags=["search"], route_class=AuthFirstRoute)
SEARCH_PATH = "/collections/{name}/search"


def _runs_inline(body: SearchRequest) -> bool:
    """A BM25 search without rerank or PRF is a fraction of a millisecond of index work: it
    runs on the event loop, which saves the thread hop it would otherwise cost. Anything that
    runs a model goes to the thread pool, where concurrent queries share encoder batches."""
    return body.mode == "bm25" and body.rerank is None and body.prf is None


async def answer(state, name: str, body: SearchRequest) -> tuple[bytes, str]:
    """(JSON body, Server-Timing header) of a search: the route below and the fast lane
    (service/fast_search.py) both answer through here."""
    timings = Timings()
    t0 = time.perf_counter()
    if _runs_inline(body):
        res = state.pipeline.search(name, body, timings)
    else:
        res = await run_in_threadpool(state.pipeline.search, name, body, timings)
    with timings.stage("serialize"):
        # the pipeline built a valid SearchResponse: dump it once (pydantic-core), no re-validation
        content = res.model_dump_json().encode()
    elapsed = time.perf_counter() - t0
    state.search_seconds.labels(body.mode, str(body.rerank is not None).lower()).observe(elapsed)
    timings.stages["total"] = elapsed
    return content, timings.header()


@router.post(SEARCH_PATH, response_model=SearchResponse, dependencies=[Depends(require_read)])
async def search(name: str, body: SearchRequest, request: Request):
    """Search one collection: sparse, bm25, dense or hybrid (fused), with optional filter,
    PRF, MaxSim rerank, pagination (offset) and per-term explanations. The Server-Timing
    header splits the server's time into its stages (encode, retrieve, fuse, rerank, fetch)."""
    content, timing = await answer(request.app.state, name, body)
    return Response(content, media_type="application/json", headers={"Server-Timing": timing})
