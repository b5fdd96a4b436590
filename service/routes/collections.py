from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, File, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse

from .. import scroll
from ..auth import AuthFirstRoute, require_admin, require_read
from ..errors import BadRequest, NotFound, TooLarge
from ..schemas import (CollectionCreate, CollectionList, CollectionStats, DeleteRequest, DeleteResponse,
                       DocumentOut, DocumentPage, DocumentsOut, IdsRequest, MetadataUpdateRequest,
                       MetadataUpdateResponse, RestoreRequest, SnapshotList,
                       SnapshotOut, UpsertRequest, UpsertResponse)

router = APIRouter(tags=["collections"], route_class=AuthFirstRoute)


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
    """Every collection, damaged ones included (with `"state": "damaged"` and the reason)."""
    store = _state(request).store
    return {"collections": [store.describe(n) for n in store.names()]}


@router.get("/collections/{name}", response_model=CollectionStats, dependencies=[Depends(require_read)])
def get_collection(name: str, request: Request):
    return _state(request).store.stats(name)


@router.delete("/collections/{name}", status_code=204, dependencies=[Depends(require_admin)])
def delete_collection(name: str, request: Request):
    """Delete a collection and its files (a damaged one too). Its snapshots are kept."""
    st = _state(request)
    st.jobs.cancel_collection(name)
    st.store.drop(name)
    return Response(status_code=204)


@router.put("/collections/{name}/documents", response_model=UpsertResponse,
            dependencies=[Depends(require_admin)])
def upsert_documents(name: str, body: UpsertRequest, request: Request):
    """Insert or replace documents (bulk). Answers once they are durable (write-ahead log).
    A document may carry precomputed `vectors` for some or all fields; the others are encoded
    from its text. Every document is checked before anything is encoded or stored."""
    st = _state(request)
    limit = st.settings.max_batch_docs
    if len(body.documents) > limit:
        raise TooLarge(f"documents: {len(body.documents)} in one request; the limit is {limit} "
                       "(split the batch or use a job)")
    docs = body.documents
    vectors = [d.vectors.given() if d.vectors is not None else None for d in docs]
    n = st.store.upsert(name, [d.id for d in docs], [d.text for d in docs], [d.metadata for d in docs],
                        vectors if any(v for v in vectors) else None)
    return {"upserted": n}


def _document(doc) -> dict:
    return {"id": doc.id, "text": doc.text, "metadata": doc.metadata}


@router.get("/collections/{name}/documents", response_model=DocumentPage,
            dependencies=[Depends(require_read)])
def list_documents(name: str, request: Request,
                   cursor: Annotated[str | None, Query(max_length=8192, description=
                       "next_cursor of the previous page; omitted: the first page")] = None,
                   limit: Annotated[int, Query(ge=1, le=scroll.MAX_LIMIT, description=
                       "documents per page")] = 100,
                   filter: Annotated[str | None, Query(max_length=65536, description=
                       "a JSON object in the search filter syntax, e.g. {\"topic\": \"energy\"}",
                       examples=['{"topic": "energy"}'])] = None):
    """Scroll through every document (or those whose metadata matches `filter`) in id order,
    `limit` at a time. Correct while the collection changes: no document comes twice, and every
    document that exists for the whole scroll comes once. `lsr export` writes them as JSONL."""
    flt = scroll.parse_filter(filter)
    coll = _state(request).store.get(name)
    return scroll.page(coll, cursor, limit, flt)


@router.post("/collections/{name}/documents/get", response_model=DocumentsOut,
             dependencies=[Depends(require_read)])
def get_documents(name: str, body: IdsRequest, request: Request):
    """Fetch documents by id in the body: works for every id, whatever characters it holds."""
    coll = _state(request).store.get(name)
    found, missing = [], []
    for doc_id in body.ids:
        doc = coll.get(doc_id)
        if doc is None:
            missing.append(doc_id)
        else:
            found.append(_document(doc))
    return {"documents": found, "missing": missing}


@router.post("/collections/{name}/documents/delete", response_model=DeleteResponse,
             dependencies=[Depends(require_admin)])
def delete_documents(name: str, body: DeleteRequest, request: Request):
    """Delete documents by id, or every document whose metadata matches a filter."""
    if (body.ids is None) == (body.filter is None):
        raise BadRequest("give exactly one of ids and filter")
    coll = _state(request).store.get(name)
    if body.ids is not None:
        return {"deleted": coll.delete(list(dict.fromkeys(body.ids)))}
    return {"deleted": coll.delete_where(body.filter)}


@router.patch("/collections/{name}/documents", response_model=MetadataUpdateResponse,
              dependencies=[Depends(require_admin)])
def update_metadata(name: str, body: MetadataUpdateRequest, request: Request):
    """Change documents' metadata without re-encoding them (text and vectors stay as stored):
    a JSON merge patch by default. 404 naming an unknown id, and then nothing changes; an id
    given twice is a 400."""
    coll = _state(request).store.get(name)
    updates = {}
    for d in body.documents:
        if d.id in updates:
            raise BadRequest(f"documents: id {d.id!r} appears twice")
        updates[d.id] = d.metadata
    return {"updated": coll.update_metadata(updates, merge=body.merge)}


# {doc_id:path}: ids may contain '/' (a/b/c is addressed as .../documents/a/b/c)
@router.get("/collections/{name}/documents/{doc_id:path}", response_model=DocumentOut,
            dependencies=[Depends(require_read)])
def get_document(name: str, doc_id: str, request: Request):
    doc = _state(request).store.get(name).get(doc_id)
    if doc is None:
        raise NotFound(f"document {doc_id!r} not found in collection {name!r}")
    return _document(doc)


@router.delete("/collections/{name}/documents/{doc_id:path}", status_code=204,
               dependencies=[Depends(require_admin)])
def delete_document(name: str, doc_id: str, request: Request):
    if not _state(request).store.get(name).delete([doc_id]):
        raise NotFound(f"document {doc_id!r} not found in collection {name!r}")
    return Response(status_code=204)


@router.post("/collections/{name}/snapshots", status_code=201, response_model=SnapshotOut,
             dependencies=[Depends(require_admin)])
def create_snapshot(name: str, request: Request):
    """A consistent copy of the collection (the write buffer is flushed first), kept under the
    data directory's .snapshots/ until deleted; segment files are hard-linked."""
    return _state(request).store.snapshot(name)


@router.get("/collections/{name}/snapshots", response_model=SnapshotList,
            dependencies=[Depends(require_read)])
def list_snapshots(name: str, request: Request):
    return {"snapshots": _state(request).store.snapshots(name)}


@router.delete("/collections/{name}/snapshots/{snapshot}", status_code=204,
               dependencies=[Depends(require_admin)])
def delete_snapshot(name: str, snapshot: str, request: Request):
    _state(request).store.delete_snapshot(name, snapshot)
    return Response(status_code=204)


@router.get("/collections/{name}/snapshots/{snapshot}/download",
            dependencies=[Depends(require_read)],
            responses={200: {"content": {"application/x-tar": {"schema": {"type": "string",
                                                                         "format": "binary"}}},
                             "description": "the snapshot as an uncompressed tar archive, streamed"}})
def download_snapshot(name: str, snapshot: str, request: Request):
    """The snapshot as a tar archive, streamed (POST it to .../snapshots/upload of this or
    another server to restore it there). Read keys may download: they can read every
    document anyway; every worker serves it (the snapshots are in the shared data directory)."""
    stream = _state(request).store.snapshot_archive(name, snapshot)
    return StreamingResponse(stream, media_type="application/x-tar", headers={
        "Content-Disposition": f'attachment; filename="{name}-{snapshot}.tar"'})


@router.post("/collections/{name}/snapshots/upload", status_code=201, response_model=SnapshotOut,
             dependencies=[Depends(require_admin)])
def upload_snapshot(name: str, request: Request,
                    file: UploadFile = File(..., description="a tar archive from .../download"),
                    restore: Annotated[bool, Query(description="also replace (or create) collection "
                                                   "`name` with it at once")] = False):
    """Upload a downloaded snapshot archive (multipart field `file`): it becomes a snapshot of
    collection `name` (which need not exist), to restore with .../snapshots/{id}/restore — or at
    once with `?restore=true`. Archives with absolute paths, `..`, links or other non-snapshot
    members are refused (400) and nothing is kept. The body is bounded by LSR_MAX_BODY_BYTES."""
    st = _state(request)
    info = st.store.import_snapshot(name, file.file)
    if restore:
        st.jobs.cancel_collection(name)
        st.store.restore(name, info["id"])
    return info


@router.post("/collections/{name}/snapshots/{snapshot}/restore", response_model=CollectionStats,
             dependencies=[Depends(require_admin)])
def restore_snapshot(name: str, snapshot: str, request: Request,
                     body: Annotated[RestoreRequest | None, Body()] = None):
    """Replace the collection — damaged, healthy or deleted — with one of its snapshots.
    Documents written after the snapshot are gone afterwards; jobs on it are cancelled.
    With `{"target": "other"}` the snapshot becomes a new collection `other` instead (409 if
    it exists) and `name` is left as it is."""
    st = _state(request)
    target = body.target if body is not None and body.target is not None else name
    if target == name:
        st.jobs.cancel_collection(name)
    st.store.restore(name, snapshot, target)
    return st.store.stats(target)
