"""Collection aliases: a name that points at a collection and can be switched at once.

The zero-downtime reindex: build ``docs-v2`` beside ``docs-v1`` while clients use the alias
``docs``, then ``PUT /aliases/docs {"collection": "docs-v2"}``; every request after that answer
goes to the new collection, none sees a mix. Every route that takes a collection name takes an
alias (Store.get resolves it); aliases never point at aliases.

Kept in ``<data_dir>/aliases.json``, replaced atomically (temp file, fsync, rename): a crash
leaves the old map or the new one. Every process serving the data directory reads it again
when its modification time changes (a stat per lookup), so a follower sees a switch as soon
as the writer has made it. Names follow the collection rules, and an alias may not share a
name with a collection (either way round: 409).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from indexer.atomic import read_json_checked, write_json_atomic
from indexer.collection_config import check_name

from .errors import Conflict, NotFound

FILE = "aliases.json"


class Aliases:
    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / FILE
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._map: dict[str, str] = {}

    def _current(self) -> dict[str, str]:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._map = {} if stamp is None else dict(read_json_checked(self.path, "aliases")["aliases"])
                self._stamp = stamp
            return self._map

    def resolve(self, name: str) -> str:
        """The collection an alias points at; any other name as it is."""
        return self._current().get(name, name)

    def all(self) -> dict[str, str]:
        return dict(self._current())

    def get(self, alias: str) -> str:
        target = self._current().get(alias)
        if target is None:
            raise NotFound(f"no alias {alias!r}")
        return target

    def put(self, alias: str, collection: str, collections: list[str]) -> bool:
        """Point ``alias`` at ``collection`` (one of ``collections``); True if it is new."""
        alias, collection = check_name(alias), check_name(collection)
        if alias in collections:
            raise Conflict(f"{alias!r} is a collection; an alias needs a name of its own")
        if collection not in collections:
            aliases = self._current()
            raise NotFound(f"no collection {collection!r}" + (" (it is an alias: point at the collection "
                                                             "itself)" if collection in aliases else ""))
        current = dict(self._current())
        new = alias not in current
        current[alias] = collection
        self._write(current)
        return new

    def delete(self, alias: str) -> None:
        current = dict(self._current())
        if alias not in current:
            raise NotFound(f"no alias {alias!r}")
        del current[alias]
        self._write(current)

    def pointing_at(self, collection: str) -> list[str]:
        return sorted(a for a, c in self._current().items() if c == collection)

    def _write(self, mapping: dict[str, str]) -> None:
        write_json_atomic(self.path, {"format": "lsr-search-aliases", "aliases": mapping})
        with self._lock:
            self._stamp = None  # read back (and stamped) at the next lookup

    def check_new_collection(self, name: str) -> None:
        if name in self._current():
            raise Conflict(f"{name!r} is an alias (of {self._current()[name]!r}); a collection needs a "
                           "name of its own")

    def check_droppable(self, name: str) -> None:
        """A collection is deleted by its own name, and not while aliases point at it (they would
        break without a word): 409 otherwise."""
        current = self._current()
        if name in current:
            raise Conflict(f"{name!r} is an alias (of {current[name]!r}): DELETE /aliases/{name} "
                           "removes it; the collection is deleted by its own name")
        pointing = self.pointing_at(name)
        if pointing:
            raise Conflict(f"aliases {pointing} point at collection {name!r}: switch or delete them first")
