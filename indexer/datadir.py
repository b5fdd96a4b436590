"""The data directory's one writer, and each collection's.

Many processes may read a data directory (collections opened ``read_only``, see
``Collection.refresh``), but exactly one writes to it: creates, drops, upserts, flushes,
merges, snapshots and restores, and ``Collection.recover_interrupted`` after a crash. That
process holds an flock on ``<data_dir>/.writer.lock``; the others are followers.

flock belongs to the open file, not the process: two opens in one process exclude each other
too (two apps in one test process get one writer), and the kernel releases the lock when the
holder exits, however it exits — a crashed writer leaves no stale lock behind.

Each collection has a lock of its own, ``<data_dir>/<name>/LOCK``, held by the one Collection
object that writes it (acquire_collection_lock); drop and restore take it to make sure nobody
has the collection open.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Self

from .errors import CollectionLockedError

LOCK_NAME = ".writer.lock"


class WriterLock:
    """Held writer role of one data directory; ``close()`` (or leaving ``with``) releases it."""

    def __init__(self, data_dir: Path, fd: int):
        self.data_dir = data_dir
        self._fd: int | None = fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the flock
            self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def acquire_writer(data_dir) -> WriterLock | None:
    """Become the data directory's writer, or None at once if another holder has that role."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return WriterLock(data_dir, fd)


def acquire_collection_lock(path: Path) -> int:
    """Lock the collection directory `path` (the fd holds the flock); CollectionLockedError at
    once if another Collection object, in this or another process, has it open."""
    fd = os.open(path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CollectionLockedError(f"collection {path.name!r} is open elsewhere") from None
    return fd
