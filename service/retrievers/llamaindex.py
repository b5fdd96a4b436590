"""LlamaIndex retriever: ``LsrLlamaRetriever("docs").retrieve("question")`` -> NodeWithScore list."""
from __future__ import annotations

from typing import Any

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from .client import SearchClient


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
