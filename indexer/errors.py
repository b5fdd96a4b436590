"""The errors of the indexer, one class per kind of failure a caller must tell apart.

    LsrError
    ├── InvalidInputError    the caller's input is wrong; nothing was stored   (HTTP 400)
    ├── NotFoundError        no such collection / document                     (HTTP 404)
    │   └── CollectionNotFoundError
    ├── ConflictError        the name is taken                                 (HTTP 409)
    │   └── CollectionExistsError
    ├── LockedError          another process holds the collection              (HTTP 409)
    │   └── CollectionLockedError
    ├── ClosedError          the object was closed                             (HTTP 503)
    ├── ReadOnlyError        a write reached a read-only follower              (HTTP 503)
    └── CorruptionError      files on disk fail a check: the data is damaged   (HTTP 503)

The service maps these to HTTP in one table (service/errors.py). A CorruptionError is never
reported as "not found": it names the file and the check that failed, so an operator can
restore that collection from a snapshot or delete it. InvalidInputError is also a ValueError
(the Python convention for bad arguments); the other kinds deliberately are not, so that an
``except ValueError`` meant for bad input cannot swallow damage.
"""
from __future__ import annotations


class LsrError(Exception):
    """Base of every error the indexer raises on purpose."""


class InvalidInputError(LsrError, ValueError):
    """Bad arguments (shapes, types, ranges, ids); nothing was stored."""


class NotFoundError(LsrError, LookupError):
    """No collection or document of that name."""


class ConflictError(LsrError):
    """The operation conflicts with what exists (a name already taken)."""


class LockedError(LsrError):
    """Another Collection object, in this or another process, holds the write lock."""


class ClosedError(LsrError, RuntimeError):
    """The collection was closed (or is being replaced) while the call ran."""


class ReadOnlyError(LsrError):
    """A write reached a collection opened read-only (a follower of another process)."""


class CollectionNotFoundError(NotFoundError):
    """open() found no collection of that name."""


class CollectionExistsError(ConflictError):
    """create() or restore() found a collection of that name already."""


class CollectionLockedError(LockedError):
    """Another Collection object (in this or another process) has the collection open."""


class CorruptionError(LsrError):
    """Files on disk are unreadable or fail a check: the data is damaged, not missing.

    ``path`` is the file (or directory) that failed and ``check`` the check that failed
    ("checksum", "size", "format version", "json", ...), for the damaged-collection report."""

    def __init__(self, message: str, *, path=None, check: str | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.check = check
