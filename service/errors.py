"""Errors and their HTTP answers: the one table that maps an exception to a status code.

The indexer's error kinds (indexer/errors.py) are the service's too; the service adds the
kinds only HTTP has (413, 403, 507). Routes and the store raise; the app's exception handlers
call ``http_status`` — no route catches an indexer error to translate it.
"""
from __future__ import annotations

import errno

from indexer.errors import (ClosedError, ConflictError, CorruptionError, InvalidInputError, LockedError,
                            LsrError, NotFoundError, ReadOnlyError)


class ServiceError(LsrError):
    """Base of the service's own kinds; the message is what the client reads."""


class BadRequest(ServiceError, InvalidInputError):
    pass


class NotFound(ServiceError, NotFoundError):
    pass


class Conflict(ServiceError, ConflictError):
    pass


class TooLarge(ServiceError):
    """The request is over a configured size limit."""


class Forbidden(ServiceError):
    """The caller may not do this whatever its key (e.g. a job source outside LSR_IMPORT_DIR)."""


class Damaged(ServiceError):
    """A collection's files failed a check; it answers nothing until restored or deleted."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"collection {name!r} is damaged: {reason} — restore it from a snapshot "
                         f"(POST /collections/{name}/snapshots/{{id}}/restore) or delete it")
        self.name = name


class NotSupported(ServiceError):
    """A feature this deployment does not offer (e.g. snapshot archives on a cluster); the
    message says what to do instead."""


class Unavailable(ServiceError):
    """A part the request needs is down for now (a cluster shard with no live replica)."""


# First match wins (subclasses before their bases). 503 for damage: the request was fine and
# the data exists, the server cannot serve it now — never 404.
_STATUS: tuple[tuple[type, int], ...] = (
    (TooLarge, 413),
    (Forbidden, 403),
    (InvalidInputError, 400),
    (NotFoundError, 404),
    (ConflictError, 409),
    (LockedError, 409),
    (Damaged, 503),
    (CorruptionError, 503),
    (ClosedError, 503),
    (ReadOnlyError, 503),
    (Unavailable, 503),
    (NotSupported, 501),
)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_MESSAGE = ("insufficient storage: the data directory's disk is full. Documents "
                     "acknowledged earlier are safe; this request may not have been applied — "
                     "retry it (upserts are idempotent) once space is freed")


def http_status(exc: BaseException) -> int | None:
    """The status code for an exception, or None when it is a bug (answered 500)."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return 507
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return None


def client_message(exc: BaseException, private: tuple[str, ...] = ()) -> str:
    """The message a client reads; the server's directories in it (``private``, longest
    first) are cut out, so that no key learns where the data or the models live."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return DISK_FULL_MESSAGE
    message = str(exc)
    for prefix in private:
        message = message.replace(prefix + "/", "").replace(prefix, "<server>")
    return message
