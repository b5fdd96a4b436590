"""A minimal HTTP client for the search route, shared by the framework retrievers."""
from __future__ import annotations

from typing import Any

import httpx


class SearchClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None,
                 client: httpx.Client | None = None, timeout: float = 30.0):
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = client if client is not None else httpx.Client(base_url=base_url, timeout=timeout)
        self.headers = headers

    def search(self, collection: str, query: str, k: int, mode: str, **options: Any) -> list[dict]:
        r = self.http.post(f"/collections/{collection}/search", headers=self.headers,
                           json={"query": query, "k": k, "mode": mode, **options})
        if r.status_code != 200:
            try:
                detail = r.json().get("detail")
            except ValueError:
                detail = r.text
            raise RuntimeError(f"lsr-search answered {r.status_code}: {detail}")
        return r.json()["results"]
