"""The REST client behind `lsr ... --url`: every HTTP detail of the remote CLI in one place.

Kept light on purpose (httpx only): a remote `lsr search` has to start in a fraction of a
second, so nothing here may import the indexer, the encoders, torch or FastAPI.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import httpx

JOB_ENDED = ("done", "failed", "cancelled")


def scroll_documents(call: Callable[..., dict], collection: str, filter: str | None, limit: int):
    """GET /collections/{name}/documents page after page (``call(method, path, params=...)``),
    following next_cursor: the one cursor loop of the REST clients (this one and retrievers)."""
    params: dict = {"limit": limit}
    if filter:
        params["filter"] = filter
    while True:
        page = call("GET", f"/collections/{collection}/documents", params=params)
        yield from page["documents"]
        if page["next_cursor"] is None:
            return
        params["cursor"] = page["next_cursor"]


class RemoteError(Exception):
    """The server answered an error (its `detail` is the message), or could not be reached."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def _detail(r: httpx.Response) -> str:
    """The server's {"detail": ...}; the bare status when the body is not ours (a proxy's page)."""
    try:
        detail = r.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else f"{r.status_code} {r.reason_phrase} from {r.request.url}"


class Remote:
    """A running lsr-search server; the key (if any) goes in X-API-Key."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0):
        self.url = url.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kw) -> dict:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.ConnectError:
            raise RemoteError(f"cannot connect to {self.url} (is `lsr serve` running there?)") from None
        except httpx.TransportError as exc:  # timeout, reset, bad URL...
            raise RemoteError(f"{self.url}: {type(exc).__name__}: {exc}") from None
        if r.is_error:
            raise RemoteError(_detail(r), r.status_code)
        return r.json() if r.content else {}

    def collections(self) -> list[dict]:
        return self._call("GET", "/collections")["collections"]

    def collection(self, name: str) -> dict:
        return self._call("GET", f"/collections/{name}")

    def ensure_collection(self, name: str, options: dict) -> None:
        """Create the collection with these options (encoders left out are the server's
        defaults) unless it exists; an existing one keeps its own."""
        try:
            self.collection(name)
        except RemoteError as exc:
            if exc.status != 404:
                raise
            self._call("POST", "/collections", json={"name": name, **options})

    def documents(self, collection: str, filter: str | None = None, limit: int = 1000):
        """Every document (whose metadata matches `filter`, a JSON string), in id order, a page
        at a time (GET /collections/{name}/documents)."""
        return scroll_documents(self._call, collection, filter, limit)

    def search(self, collection: str, body: dict) -> dict:
        return self._call("POST", f"/collections/{collection}/search", json=body)

    def upload(self, collection: str, path: Path, fmt: str) -> dict:
        """Start a job indexing a local JSONL or Parquet file (streamed, not read into memory)."""
        with path.open("rb") as f:
            return self._call("POST", f"/collections/{collection}/jobs/upload", params={"format": fmt},
                              files={"file": (path.name, f, "application/octet-stream")})

    def wait(self, job_id: str, on_update: Callable[[dict], None], poll: float = 0.5) -> dict:
        """Poll the job until it ends; on_update sees every state. Returns the last one."""
        while True:
            job = self._call("GET", f"/jobs/{job_id}")
            on_update(job)
            if job["status"] in JOB_ENDED:
                return job
            time.sleep(poll)
