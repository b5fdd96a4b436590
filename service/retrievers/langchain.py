"""LangChain retriever: ``LsrRetriever(collection="docs").invoke("question")`` -> Documents."""
from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
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
