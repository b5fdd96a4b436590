"""API-key auth: admin keys may read and write, read keys may only read.

A key comes in ``X-API-Key`` or ``Authorization: Bearer <key>``. With no keys configured the
service is open, but only to clients on the loopback interface.
"""
from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, Security
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPBearer

# Declared so that the OpenAPI document has securitySchemes and /docs an Authorize button;
# auto_error=False: the check below decides, with its own messages.
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey",
                              description="an admin or read-only key (LSR_API_KEYS / LSR_READ_KEYS)")
BEARER = HTTPBearer(auto_error=False, scheme_name="Bearer", description="the same key as a bearer token")
_CHECKED = "lsr.auth_checked"  # scope key: the route class already checked this request

LOOPBACK = {"127.0.0.1", "::1", "localhost", "testclient"}


def _presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _member(key: str, keys: frozenset[str]) -> bool:
    return any(hmac.compare_digest(key.encode(), k.encode()) for k in keys)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _check(request: Request, write: bool) -> None:
    settings = request.app.state.settings
    if not settings.auth_enabled:
        host = request.client.host if request.client else ""
        if host not in LOOPBACK:
            raise HTTPException(403, "no API keys are configured, so only localhost may connect; "
                                     "set LSR_API_KEYS / LSR_READ_KEYS to serve other hosts")
        return
    key = _presented_key(request)
    if key is None:
        raise _unauthorized("missing API key: send X-API-Key or Authorization: Bearer")
    if _member(key, settings.admin_key_set):
        return
    if _member(key, settings.read_key_set):
        if write:
            raise HTTPException(403, "this API key is read-only; this route needs an admin key")
        return
    raise _unauthorized("unknown API key")


async def require_read(request: Request, _key=Security(API_KEY_HEADER), _bearer=Security(BEARER)) -> None:
    if not request.scope.get(_CHECKED):
        _check(request, write=False)


async def require_admin(request: Request, _key=Security(API_KEY_HEADER), _bearer=Security(BEARER)) -> None:
    if not request.scope.get(_CHECKED):
        _check(request, write=True)


class AuthFirstRoute(APIRoute):
    """Checks the key before FastAPI reads and validates the body, so an unauthenticated
    client learns nothing from validation errors (malformed JSON without a key is a 401, not
    a 400). The level comes from the route's require_read / require_admin dependency."""

    def get_route_handler(self):
        handler = super().get_route_handler()
        calls = {d.call for d in self.dependant.dependencies}
        write = require_admin in calls
        if not write and require_read not in calls:
            return handler

        async def checked(request: Request):
            _check(request, write=write)
            request.scope[_CHECKED] = True
            return await handler(request)
        return checked


async def require_metrics(request: Request, _key=Security(API_KEY_HEADER),
                    _bearer=Security(BEARER)) -> None:
    """/metrics: exactly LSR_METRICS_KEY when it is set (a scraper then holds no API key),
    else the rule of a read route."""
    metrics_key = request.app.state.settings.metrics_key
    if not metrics_key:
        _check(request, write=False)
        return
    key = _presented_key(request)
    if key is None or not hmac.compare_digest(key.encode(), metrics_key.encode()):
        raise _unauthorized("/metrics needs the metrics key (LSR_METRICS_KEY) in X-API-Key or "
                            "Authorization: Bearer")
