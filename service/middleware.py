"""ASGI middleware: request body size limit (413) and Prometheus request metrics."""
from __future__ import annotations

import json
import time

from prometheus_client import CollectorRegistry, Counter, Histogram


async def read_body(receive) -> bytes:
    """The whole request body (what arrived before a disconnect, if the client left)."""
    chunks = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            break
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    return b"".join(chunks)


def replay(body: bytes, receive):
    """A receive() that gives the app ``body`` (already read) as one message, then the real one."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive_again():
        return pending.pop() if pending else await receive()
    return receive_again


async def send_body(send, status: int, headers: list, body: bytes) -> None:
    """A whole response: ``headers`` plus its content-length, then the body."""
    headers = headers + [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _send_json(status: int, body: dict):
    payload = json.dumps(body).encode()
    return lambda send: send_body(send, status, [(b"content-type", b"application/json")], payload)


class BodyLimit:
    """Reject bodies over ``max_bytes`` before the app parses them, by header or by count."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        def too_big(send):  # built only when needed: most requests are within the limit
            return _send_json(413, {"detail": f"request body exceeds {self.max_bytes} bytes"})(send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > self.max_bytes:
                        return await too_big(send)
                except ValueError:
                    return await _send_json(400, {"detail": "invalid Content-Length"})(send)
        # Chunked or lying clients: buffer up to the limit, then replay to the app.
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body = msg.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                return await too_big(send)
            chunks.append(body)
            if not msg.get("more_body"):
                break
        await self.app(scope, replay(b"".join(chunks), receive), send)


# Clients choose the method and path: only a fixed set of each may become a label value, or
# invented ones would grow /metrics (and the server's memory) without bound.
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


def _request_labels(scope) -> tuple[str, str]:
    """(method, route template) for the metrics: "other" for any other method, "unmatched" for
    a path that no route matched (raw paths would put every id and typo in a label)."""
    method = scope["method"] if scope["method"] in METHODS else "other"
    route = getattr(scope.get("route"), "path", None) or "unmatched"
    return method, route


class Metrics:
    """Counts and times requests per method, route template and status code (the app's own
    codes: bounded once method and route are)."""

    def __init__(self, app, registry: CollectorRegistry):
        self.app = app
        self.requests = Counter("lsr_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=registry)
        self.latency = Histogram("lsr_request_seconds", "request latency", ["method", "route"],
                                 registry=registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": 500}

        async def send_wrapper(msg):
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            method, route = _request_labels(scope)
            self.requests.labels(method, route, str(status["code"])).inc()
            self.latency.labels(method, route).observe(time.perf_counter() - t0)
