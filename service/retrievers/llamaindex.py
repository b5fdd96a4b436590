"""LlamaIndex over the REST API:

- ``LsrLlamaRetriever("docs").retrieve("question")`` -> NodeWithScore list;
- ``LsrLlamaVectorStore(collection="docs")``: a vector store — add nodes, delete by
  ref_doc_id, delete / get nodes by ids or metadata filters, query with ``MetadataFilters``.
  The server encodes text with the collection's encoders (``is_embedding_query = False``:
  queries go as text), and stores the text (``stores_text = True``: no docstore needed).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import (BaseNode, MetadataMode, NodeRelationship, NodeWithScore, QueryBundle,
                                     RelatedNodeInfo, TextNode)
from llama_index.core.vector_stores.types import (BasePydanticVectorStore, FilterCondition, FilterOperator,
                                                  MetadataFilters, VectorStoreQuery, VectorStoreQueryMode,
                                                  VectorStoreQueryResult)
from pydantic import PrivateAttr

from .client import SearchClient

REF_DOC_KEY = "ref_doc_id"  # metadata key holding a node's source document id
_RANGE = {FilterOperator.GT: "gt", FilterOperator.GTE: "gte", FilterOperator.LT: "lt",
          FilterOperator.LTE: "lte"}
_MODES = {VectorStoreQueryMode.SPARSE: "sparse", VectorStoreQueryMode.HYBRID: "hybrid",
          VectorStoreQueryMode.TEXT_SEARCH: "bm25"}


class LsrLlamaRetriever(BaseRetriever):
    def __init__(self, collection: str, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None,
                 k: int = 4, mode: str = "hybrid", http_client: Any = None, **search_options: Any):
        super().__init__()
        self.collection, self.k, self.mode = collection, k, mode
        self.search_options = search_options
        self._client = SearchClient(base_url, api_key, http_client)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self._client.search(self.collection, query_bundle.query_str, self.k, self.mode,
                                   **self.search_options)
        return [NodeWithScore(node=TextNode(id_=h["id"], text=h["text"] or "", metadata=h["metadata"] or {}),
                              score=h["score"]) for h in hits]


def to_rest_filter(filters: MetadataFilters | None) -> dict | None:
    """LlamaIndex MetadataFilters as the REST filter (a conjunction): ==, >, >=, <, <=, in;
    nested AND groups are flattened. OR / NOT and other operators: ValueError naming them."""
    if filters is None:
        return None
    out: dict[str, dict] = {}

    def add(group: MetadataFilters) -> None:
        if group.condition not in (None, FilterCondition.AND):
            raise ValueError(f"filters: condition {group.condition.value!r} is not supported; "
                             "lsr-search filters are conjunctions (and)")
        for f in group.filters:
            if isinstance(f, MetadataFilters):
                add(f)
                continue
            op = FilterOperator(getattr(f, "operator", FilterOperator.EQ))
            if op == FilterOperator.EQ:
                name, value = "eq", f.value
            elif op == FilterOperator.IN:
                name, value = "in", list(f.value)
            elif op in _RANGE:
                name, value = _RANGE[op], f.value
            else:
                raise ValueError(f"filters: operator {op.value!r} (on {f.key!r}) is not supported; "
                                 "use ==, >, >=, <, <= or in")
            ops = out.setdefault(f.key, {})
            if name in ops and ops[name] != value:
                raise ValueError(f"filters: two different {op.value!r} conditions on {f.key!r}")
            ops[name] = value
    add(filters)
    return {k: ops["eq"] if list(ops) == ["eq"] else ops for k, ops in out.items()} or None


class LsrLlamaVectorStore(BasePydanticVectorStore):
    """A collection of an lsr-search server as a LlamaIndex vector store. Nodes keep their id,
    text and metadata; the source document's id is stored in the metadata as ``ref_doc_id``
    (what ``delete(ref_doc_id)`` and ``VectorStoreQuery.doc_ids`` filter on)."""

    stores_text: bool = True
    is_embedding_query: bool = False
    collection: str
    base_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    mode: str = "hybrid"
    search_options: dict[str, Any] = {}
    create_collection: bool = True
    collection_options: dict[str, Any] | None = None
    batch_size: int = 256
    http_client: Any = None
    _client: SearchClient = PrivateAttr()
    _ensured: bool = PrivateAttr(default=False)

    def model_post_init(self, __context: Any) -> None:
        self._client = SearchClient(self.base_url, self.api_key, self.http_client)

    @classmethod
    def class_name(cls) -> str:
        return "LsrLlamaVectorStore"

    @property
    def client(self) -> SearchClient:
        return self._client

    # ------------------------------------------------------------------ writes
    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        docs = []
        for node in nodes:
            meta = dict(node.metadata or {})
            if node.ref_doc_id is not None:
                meta[REF_DOC_KEY] = node.ref_doc_id
            docs.append({"id": node.node_id, "text": node.get_content(metadata_mode=MetadataMode.NONE),
                         "metadata": meta or None})
        if docs:
            if self.create_collection and not self._ensured:
                self._client.ensure_collection(self.collection, self.collection_options)
                self._ensured = True
            self._client.upsert(self.collection, docs, self.batch_size)
        return [d["id"] for d in docs]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of a source document."""
        self._client.delete(self.collection, filter={REF_DOC_KEY: ref_doc_id})

    def delete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                     **delete_kwargs: Any) -> None:
        """Delete nodes by id, by metadata filter, or both (the nodes matching both)."""
        flt = to_rest_filter(filters)
        if node_ids is not None and flt is not None:
            node_ids = [n.node_id for n in self.get_nodes(node_ids, filters)]
        if node_ids is not None:
            for i in range(0, len(node_ids), 10_000):
                if node_ids[i:i + 10_000]:
                    self._client.delete(self.collection, ids=list(node_ids[i:i + 10_000]))
        elif flt is not None:
            self._client.delete(self.collection, filter=flt)
        else:
            raise ValueError("give node_ids or filters (clear() deletes every node)")

    def clear(self) -> None:
        self._client.delete_all(self.collection)

    # ------------------------------------------------------------------ reads
    @staticmethod
    def _node(d: dict) -> TextNode:
        meta = dict(d.get("metadata") or {})
        ref = meta.pop(REF_DOC_KEY, None)
        rel = {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=str(ref))} if ref is not None else {}
        return TextNode(id_=d["id"], text=d.get("text") or "", metadata=meta, relationships=rel)

    def get_nodes(self, node_ids: list[str] | None = None,
                  filters: MetadataFilters | None = None) -> list[BaseNode]:
        flt = to_rest_filter(filters)
        if node_ids is None:
            return [self._node(d) for d in self._client.scroll(self.collection, flt)]
        docs = self._client.get(self.collection, list(node_ids))
        if flt is not None:  # the ids that also match: the filter's own evaluation, on the server
            wanted = set(node_ids)
            matching = {d["id"] for d in self._client.scroll(self.collection, flt)} & wanted
            docs = [d for d in docs if d["id"] in matching]
        return [self._node(d) for d in docs]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        if not query.query_str:
            raise ValueError("query_str: lsr-search encodes queries itself; give the query text "
                             "(an embedding alone cannot be searched)")
        if query.node_ids:
            raise ValueError("node_ids: not supported in a query (filter on metadata instead)")
        if query.mode == VectorStoreQueryMode.DEFAULT:
            mode = self.mode
        elif query.mode in _MODES:
            mode = _MODES[query.mode]
        else:
            raise ValueError(f"mode: {query.mode.value!r} is not supported; use default, sparse, "
                             "hybrid or text_search")
        flt = to_rest_filter(query.filters) or {}
        if query.doc_ids:
            if REF_DOC_KEY in flt:
                raise ValueError("doc_ids: the filters name ref_doc_id already")
            flt[REF_DOC_KEY] = {"in": list(query.doc_ids)}
        options = {**self.search_options, **kwargs}
        if mode == "hybrid" and query.alpha is not None:  # LlamaIndex: 0 = lexical, 1 = vector
            options["fusion"] = {**options.get("fusion", {}), "method": "convex", "alpha": query.alpha}
        hits = self._client.search(self.collection, query.query_str, query.similarity_top_k, mode,
                                   filter=flt or None, **options)
        return VectorStoreQueryResult(nodes=[self._node(h) for h in hits],
                                      similarities=[h["score"] for h in hits], ids=[h["id"] for h in hits])
