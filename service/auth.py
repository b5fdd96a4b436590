"""API-key auth: admin keys may read and write, read keys may only read.

A key comes in ``X-API-Key`` or ``Authorization: Bearer <key>``. With no keys configured the
service is open, but only to clients on the loopback interface.
"""
from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

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
        raise HTTPException(401, "missing API key: send X-API-Key or Authorization: Bearer",
                            headers={"WWW-Authenticate": "Bearer"})
    if _member(key, settings.admin_key_set):
        return
    if _member(key, settings.read_key_set):
        if write:
            raise HTTPException(403, "this API key is read-only; this route needs an admin key")
        return
    raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})


def require_read(request: Request) -> None:
    _check(request, write=False)


def require_admin(request: Request) -> None:
    _check(request, write=True)
