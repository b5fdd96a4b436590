"""A minimal HTTP client for the REST API, shared by the framework retrievers and vector stores."""
from __future__ import annotations

import json
from typing import Any

import httpx

from ..remote import scroll_documents


class LsrApiError(RuntimeError):
    """lsr-search answered an error; `status` is the HTTP status, the message its detail."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class SearchClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None,
                 client: httpx.Client | None = None, timeout: float = 30.0):
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = client if client is not None else httpx.Client(base_url=base_url, timeout=timeout)
        self.headers = headers

    def _call(self, method: str, path: str, **kw) -> dict:
        r = self.http.request(method, path, headers=self.headers, **kw)
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail")
            except ValueError:
                detail = r.text
            raise LsrApiError(f"lsr-search answered {r.status_code}: {detail}", r.status_code)
        return r.json() if r.content else {}

    def search(self, collection: str, query: str, k: int, mode: str, **options: Any) -> list[dict]:
        body = {"query": query, "k": k, "mode": mode, **{o: v for o, v in options.items() if v is not None}}
        return self._call("POST", f"/collections/{collection}/search", json=body)["results"]

    def ensure_collection(self, collection: str, options: dict | None = None) -> bool:
        """Create the collection unless it exists; True if it was created."""
        try:
            self._call("GET", f"/collections/{collection}")
            return False
        except LsrApiError as exc:
            if exc.status != 404:
                raise
        try:
            self._call("POST", "/collections", json={"name": collection, **(options or {})})
        except LsrApiError as exc:
            if exc.status != 409:  # created meanwhile by someone else
                raise
            return False
        return True

    def upsert(self, collection: str, documents: list[dict], batch_size: int = 256) -> int:
        """PUT documents in batches (each durable when its request returns)."""
        n = 0
        for i in range(0, len(documents), batch_size):
            n += self._call("PUT", f"/collections/{collection}/documents",
                            json={"documents": documents[i:i + batch_size]})["upserted"]
        return n

    def delete(self, collection: str, ids: list[str] | None = None, filter: dict | None = None) -> int:
        body = {"ids": ids} if ids is not None else {"filter": filter}
        return self._call("POST", f"/collections/{collection}/documents/delete", json=body)["deleted"]

    def get(self, collection: str, ids: list[str]) -> list[dict]:
        """The documents found, in the order asked (missing ids are left out)."""
        if not ids:
            return []
        return self._call("POST", f"/collections/{collection}/documents/get", json={"ids": ids})["documents"]

    def scroll(self, collection: str, filter: dict | None = None, limit: int = 1000):
        """Every document (whose metadata matches `filter`), in id order, a page at a time."""
        return scroll_documents(self._call, collection, json.dumps(filter) if filter else None, limit)

    def delete_all(self, collection: str, filter: dict | None = None, batch: int = 10_000) -> int:
        """Delete every document (matching `filter`; with none: all of them)."""
        if filter:
            return self.delete(collection, filter=filter)
        ids = [d["id"] for d in self.scroll(collection)]
        return sum(self.delete(collection, ids=ids[i:i + batch]) for i in range(0, len(ids), batch))
