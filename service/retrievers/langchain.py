"""LangChain over the REST API:

- ``LsrRetriever(collection="docs").invoke("question")`` -> Documents (with ``id`` and ``score``
  in their metadata);
- ``LsrVectorStore(collection="docs")``: a ``VectorStore`` — add texts / documents, delete (by
  ids or by a metadata filter), get by ids, similarity search with the REST filter syntax, and
  ``as_retriever()``. The server encodes texts and queries with the collection's own encoders,
  so no LangChain ``Embeddings`` is needed (``from_texts`` takes one only because LangChain's
  signature has it, and ignores it).
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from pydantic import ConfigDict, PrivateAttr

from .client import SearchClient


class LsrRetriever(BaseRetriever):
    """Documents carry the stored metadata plus ``id`` and ``score``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    collection: str
    base_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    k: int = 4
    mode: str = "hybrid"
    search_options: dict[str, Any] = {}
    http_client: Any = None  # an httpx.Client to reuse (tests pass FastAPI's TestClient)
    _client: SearchClient = PrivateAttr()

    def model_post_init(self, __context: Any) -> None:
        self._client = SearchClient(self.base_url, self.api_key, self.http_client)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun
                                ) -> list[Document]:
        hits = self._client.search(self.collection, query, self.k, self.mode, **self.search_options)
        return [Document(page_content=h["text"] or "", id=h["id"],
                         metadata={**(h["metadata"] or {}), "id": h["id"], "score": h["score"]})
                for h in hits]


def _document(d: dict) -> Document:
    return Document(page_content=d.get("text") or "", id=d["id"], metadata=d.get("metadata") or {})


class LsrVectorStore(VectorStore):
    """A collection of an lsr-search server as a LangChain vector store.

    ``mode`` (hybrid, sparse, bm25, dense) and ``search_options`` (fusion, rerank, prf, depth)
    are the defaults of every search; a search's keyword arguments override them. Filters use
    the REST syntax: ``{"topic": "energy", "year": {"gte": 2020}, "lang": {"in": ["en", "de"]}}``.
    With ``create_collection`` (the default) the first write creates a missing collection with
    ``collection_options`` (the POST /collections fields; omitted: the server's encoders).
    """

    def __init__(self, collection: str, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None,
                 *, mode: str = "hybrid", search_options: dict[str, Any] | None = None,
                 create_collection: bool = True, collection_options: dict[str, Any] | None = None,
                 batch_size: int = 256, http_client: Any = None):
        self.collection, self.mode = collection, mode
        self.search_options = dict(search_options or {})
        self.create_collection, self.collection_options = create_collection, collection_options
        self.batch_size = batch_size
        self.client = SearchClient(base_url, api_key, http_client)
        self._ensured = False

    def _ensure(self) -> None:
        if self.create_collection and not self._ensured:
            self.client.ensure_collection(self.collection, self.collection_options)
            self._ensured = True

    # ------------------------------------------------------------------ writes
    def add_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, *,
                  ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """Upsert texts (an id that exists is replaced); returns their ids (new UUIDs where none
        were given). Each batch is durable on the server when its request returns."""
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(f"metadatas: {len(metadatas)} for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"ids: {len(ids)} for {len(texts)} texts")
        ids = [i or str(uuid.uuid4()) for i in ids] if ids is not None else [str(uuid.uuid4()) for _ in texts]
        docs = [{"id": i, "text": t, "metadata": (metadatas[n] if metadatas else None) or None}
                for n, (i, t) in enumerate(zip(ids, texts))]
        if docs:
            self._ensure()
            self.client.upsert(self.collection, docs, self.batch_size)
        return ids

    def delete(self, ids: list[str] | None = None, *, filter: dict | None = None, **kwargs: Any) -> bool:
        """Delete by ids, or every document whose metadata matches `filter`; with neither,
        every document (LangChain's contract for ``ids=None``)."""
        if ids is not None and filter is not None:
            raise ValueError("give ids or filter, not both")
        if ids is not None:
            if ids:
                for i in range(0, len(ids), 10_000):
                    self.client.delete(self.collection, ids=list(ids[i:i + 10_000]))
            return True
        self.client.delete_all(self.collection, filter)
        return True

    # ------------------------------------------------------------------ reads
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return [_document(d) for d in self.client.get(self.collection, list(ids))]

    def _search(self, query: str, k: int, filter: dict | None, kwargs: dict) -> list[dict]:
        options = {**self.search_options, **kwargs}
        mode = options.pop("mode", self.mode)
        return self.client.search(self.collection, query, k, mode, filter=filter, **options)

    def similarity_search(self, query: str, k: int = 4, filter: dict | None = None,
                          **kwargs: Any) -> list[Document]:
        return [_document(h) for h in self._search(query, k, filter, kwargs)]

    def similarity_search_with_score(self, query: str, k: int = 4, filter: dict | None = None,
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        """(document, score): the fused score in hybrid mode (RRF or convex), cosine in dense
        mode, the sparse dot product in sparse and BM25 mode — higher is better."""
        return [(_document(h), h["score"]) for h in self._search(query, k, filter, kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        if self.mode == "dense":
            return lambda s: (s + 1.0) / 2.0  # cosine in [-1, 1] -> [0, 1]
        raise NotImplementedError(f"relevance scores in [0, 1] exist for mode 'dense' only; mode "
                                  f"{self.mode!r} scores are unbounded (use similarity_search_with_score)")

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings | None = None,
                   metadatas: list[dict] | None = None, *, ids: list[str] | None = None,
                   collection: str = "langchain", **kwargs: Any) -> LsrVectorStore:
        """A store over `collection` (created if missing) holding the texts. `embedding` is
        ignored: the server encodes with the collection's encoders."""
        store = cls(collection, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store
