from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from ..auth import require_admin, require_read
from ..errors import NotFound, TooLarge
from ..schemas import (CollectionCreate, CollectionList, CollectionStats, DocumentOut, UpsertRequest,
                       UpsertResponse)

router = APIRouter(tags=["collections"])


def _state(request: Request):
    return request.app.state


@router.post("/collections", status_code=201, response_model=CollectionStats,
             dependencies=[Depends(require_admin)])
def create_collection(body: CollectionCreate, request: Request):
    """Create a collection. Encoders default to the server's (SPLADE, BM25, MiniLM dense and
    MiniLM multivector for reranking); pass null to leave one out."""
    st = _state(request)
    given = body.model_fields_set
    s = st.settings
    pick = lambda field, default: getattr(body, field) if field in given else default  # noqa: E731
    st.store.create(body.name, pick("sparse_encoder", s.sparse_encoder), pick("dense_encoder", s.dense_encoder),
                    pick("multivector_encoder", s.multivector_encoder), body.bm25,
                    body.index.options() if body.index else None)
    return st.store.stats(body.name)


@router.get("/collections", response_model=CollectionList, dependencies=[Depends(require_read)])
def list_collections(request: Request):
    store = _state(request).store
    return {"collections": [store.stats(n) for n in store.names()]}


@router.get("/collections/{name}", response_model=CollectionStats, dependencies=[Depends(require_read)])
def get_collection(name: str, request: Request):
    return _state(request).store.stats(name)


@router.delete("/collections/{name}", status_code=204, dependencies=[Depends(require_admin)])
def delete_collection(name: str, request: Request):
    st = _state(request)
    st.store.get(name)
    st.jobs.cancel_collection(name)
    st.store.drop(name)
    return Response(status_code=204)


@router.put("/collections/{name}/documents", response_model=UpsertResponse,
            dependencies=[Depends(require_admin)])
def upsert_documents(name: str, body: UpsertRequest, request: Request):
    """Insert or replace documents (bulk). Answers once they are durable (write-ahead log)."""
    st = _state(request)
    limit = st.settings.max_batch_docs
    if len(body.documents) > limit:
        raise TooLarge(f"{len(body.documents)} documents in one request; the limit is {limit} "
                       "(split the batch or use a job)")
    docs = body.documents
    n = st.store.upsert(name, [d.id for d in docs], [d.text for d in docs], [d.metadata for d in docs])
    return {"upserted": n}


@router.get("/collections/{name}/documents/{doc_id}", response_model=DocumentOut,
            dependencies=[Depends(require_read)])
def get_document(name: str, doc_id: str, request: Request):
    doc = _state(request).store.get(name).get(doc_id)
    if doc is None:
        raise NotFound(f"document {doc_id!r} not found in collection {name!r}")
    return {"id": doc.id, "text": doc.text, "metadata": doc.metadata}


@router.delete("/collections/{name}/documents/{doc_id}", status_code=204,
               dependencies=[Depends(require_admin)])
def delete_document(name: str, doc_id: str, request: Request):
    if not _state(request).store.get(name).delete([doc_id]):
        raise NotFound(f"document {doc_id!r} not found in collection {name!r}")
    return Response(status_code=204)
