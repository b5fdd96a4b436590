"""The search route's fast lane: the one hot request, answered without FastAPI's machinery.

A search that succeeds spends as long in FastAPI's layers (exception middleware, exit stack,
matching every route's pattern, dependency solving, request and response objects) as a BM25
search spends in the index. This ASGI middleware answers ``POST /collections/{name}/search``
itself when everything goes right: the same key check (auth._check), the same body parsing
(json.loads, then SearchRequest in Python mode, as FastAPI validates), the same answer
(routes.search.answer: pipeline, serialisation, Server-Timing, metrics). When anything does not
go right — a missing key, a body that does not validate, an unknown collection, a bug — it
hands the untouched request to the app, whose route gives the one canonical answer (401, 422,
404, 500 ...), so errors are decided in one place and the lane cannot drift from the contract.
The OpenAPI document describes the route, which stays the reference; the lane only makes its
successful requests cheaper. ``app.state.fast_search = False`` turns it off (tests compare).
"""
from __future__ import annotations

import json
import re

from fastapi import HTTPException
from pydantic import ValidationError
from starlette.requests import Request

from .auth import _check
from .middleware import read_body, replay, send_body
from .routes.search import answer
from .schemas import SearchRequest

# Starlette's {name} convertor: one path segment
_PATH = re.compile(r"^/collections/([^/]+)/search$")


class FastSearch:
    def __init__(self, app, route):
        """``route``: the API route of the search (its template labels the metrics)."""
        self.app, self.route = app, route

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        match = _PATH.match(scope["path"])
        if match is None or not getattr(scope["app"].state, "fast_search", True):
            return await self.app(scope, receive, send)
        body = await read_body(receive)  # bounded already by BodyLimit, outside this middleware
        if not await self._answer(scope, match.group(1), body, send):
            await self.app(scope, replay(body, receive), send)

    async def _answer(self, scope, name: str, body: bytes, send) -> bool:
        """True once the search is answered; False: the app must answer this request."""
        try:
            _check(Request(scope), write=False)
            req = SearchRequest.model_validate(json.loads(body))
            content, timing = await answer(scope["app"].state, name, req)
        except (HTTPException, ValidationError, ValueError, TypeError):
            return False  # not a valid search: the route's answer is the canonical one
        except Exception:
            return False  # an error the app maps (404, 503, ...) or logs (500), once
        scope["route"] = self.route  # the metrics' label, as for the route
        await send_body(send, 200, [(b"content-type", b"application/json"),
                                    (b"server-timing", timing.encode())], content)
        return True
