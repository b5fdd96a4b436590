"""Writes go to the writer: a follower forwards them over the writer's Unix socket.

One process per data directory writes (indexer/datadir.py); with ``lsr serve --workers N`` the
others are followers, serving reads from read-only collections. The kernel hands each
connection to whichever worker accepts it, so a client cannot pick the writer. We forward
rather than answer 503: a 503 would fail about (N-1)/N of all writes at random, while
forwarding costs one local hop and keeps the whole API on every worker.

Which requests are writes is decided in one place, ``is_write``: the routes that need an admin
key (the auth levels of auth.py), and every /jobs route — a job's progress lives in the writer's
memory. The decision is made by ``ForwardWrites``, an ASGI middleware: it sees the matched route
before FastAPI reads the body, so it can pass the raw request through untouched (method, path,
query, headers — keys included — and body) and return the writer's status, headers and body.
The writer then authenticates, validates and answers exactly as if it had been called directly.
One thing the writer cannot see over a Unix socket is the client's address, which the open
(no keys) mode needs: the follower sends it in ``X-Lsr-Client``, and the writer believes that
header on its Unix socket only (mode 0600: processes of the server's own user).

After a forwarded write succeeds the follower refreshes that collection before answering, so a
client reads its own write on the same worker. If the writer cannot be reached (it stopped, or
is restarting) the answer is 503 with Retry-After.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from .auth import require_admin
from .middleware import read_body, send_body
from .store import Store

log = logging.getLogger("lsr.service")
SOCKET_NAME = ".writer.sock"
CLIENT_HEADER = b"x-lsr-client"
# Hop-by-hop and framing headers: each leg has its own (httpx and uvicorn set them).
_REQUEST_DROP = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive",
                           b"te", b"upgrade", b"expect", CLIENT_HEADER})
_RESPONSE_DROP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive",
                            "content-encoding", "date", "server"})
_SUN_PATH_MAX = 100  # sockaddr_un holds 108 bytes; keep a margin


def is_write(route) -> bool:
    """The one rule: does this route run on the writer?"""
    if not isinstance(route, APIRoute):
        return False
    return (require_admin in {d.call for d in route.dependant.dependencies}
            or route.path == "/jobs" or route.path.startswith("/jobs/"))


class SocketAddress:
    """``<data_dir>/.writer.sock`` as a path the kernel accepts: a longer one than sockaddr_un
    holds is reached through a descriptor of the directory (``/proc/self/fd/N/...``)."""

    def __init__(self, data_dir: Path):
        self.file = Path(os.path.abspath(data_dir)) / SOCKET_NAME
        self._dir_fd: int | None = None
        self.path = str(self.file)
        if len(os.fsencode(self.path)) > _SUN_PATH_MAX:
            self._dir_fd = os.open(self.file.parent, os.O_RDONLY | os.O_DIRECTORY)
            self.path = f"/proc/self/fd/{self._dir_fd}/{SOCKET_NAME}"

    def close(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None


# ------------------------------------------------------------------------- follower side
class Forwarder:
    """A follower's way to the writer, and its catch-up after a forwarded write."""

    def __init__(self, data_dir: Path, store: Store):
        self.store = store
        self.address = SocketAddress(data_dir)
        # no read timeout: a large upsert takes as long as encoding takes; the client's own
        # timeout governs. Connecting is local: a few seconds mean the writer is gone.
        self.client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=self.address.path),
                                        base_url="http://lsr-writer", timeout=httpx.Timeout(None, connect=5.0))

    async def aclose(self) -> None:
        await self.client.aclose()
        self.address.close()

    async def __call__(self, scope, receive, send, path_params: dict) -> None:
        body = await read_body(receive)
        client = scope.get("client")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _REQUEST_DROP]
        headers.append((CLIENT_HEADER, (client[0] if client else "").encode()))
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        try:
            r = await self.client.request(scope["method"], target.decode("latin-1"), headers=headers,
                                          content=body)
        except httpx.TransportError as exc:
            log.warning("forwarding %s %s to the writer failed: %s", scope["method"], scope["path"], exc)
            await send_body(send, 503, [(b"content-type", b"application/json"), (b"retry-after", b"1")],
                        json.dumps({"detail": "the writer is not available: this worker forwards writes "
                                    "to the data directory's writer process, which did not answer; "
                                    "retry shortly"}).encode())
            return
        if r.is_success and scope["method"] not in ("GET", "HEAD"):
            name = path_params.get("name")
            if name is None:  # POST /collections: the new one is among them all
                await run_in_threadpool(self.store.refresh_all)
            else:
                await run_in_threadpool(self.store.refresh, name)
        await send_body(send, r.status_code, [(k.encode("latin-1"), v.encode("latin-1"))
                                          for k, v in r.headers.multi_items() if k not in _RESPONSE_DROP],
                    r.content)


class ForwardWrites:
    """ASGI middleware: in a follower (``app.state.forwarder`` set), writes go to the writer;
    everything else, and everything in the writer, goes on to the app. ``routes``: the API's
    routes in the order they were included, so that the first full match is the route the
    router will pick (as app.py's 405 handler matches them)."""

    def __init__(self, app, routes: list):
        self.app = app
        self.routes = [(route, is_write(route)) for route in routes]

    async def __call__(self, scope, receive, send):
        forwarder = scope["app"].state.forwarder if scope["type"] == "http" else None
        if forwarder is not None:
            for route, write in self.routes:
                match, child = route.matches(scope)
                if match == Match.FULL:
                    if write:
                        scope.update(child)  # the route template for the metrics, the path params
                        return await forwarder(scope, receive, send, child.get("path_params", {}))
                    break
        await self.app(scope, receive, send)


# ------------------------------------------------------------------------- writer side
class _ClientFromHeader:
    """The writer socket's view of a forwarded request: the client is the follower's client."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(CLIENT_HEADER, b"").decode("latin-1")
            scope = {**scope, "client": (host, 0) if host else None,
                     "headers": [(k, v) for k, v in scope["headers"] if k != CLIENT_HEADER]}
        await self.app(scope, receive, send)


class WriterSocket:
    """The writer's second listener: the same app on ``<data_dir>/.writer.sock`` (its own
    uvicorn server and event loop in a thread; no lifespan — the app's is already running)."""

    def __init__(self, app, data_dir: Path):
        self.address = SocketAddress(data_dir)
        self._server = uvicorn.Server(uvicorn.Config(_ClientFromHeader(app), lifespan="off",
                                                     log_level="warning"))
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> None:
        # we hold the writer lock, so a socket file left here is a dead writer's
        self.address.file.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.address.path)
        os.chmod(self.address.path, 0o600)  # before listening: only the server's user connects
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="lsr-writer-socket", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the writer socket {self.address.file} did not start")
            time.sleep(0.01)

    def stop(self, timeout: float = 30.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.address.file.unlink(missing_ok=True)
        self.address.close()
