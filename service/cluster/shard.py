"""One shard: a Store over the shard's data directory, as its writer or as a read-only follower,
behind methods whose arguments and results are plain data (they cross process boundaries).

A reader catches up with the writer on a timer, and also before any read that carries a write
token it has not seen for that collection: the router hands out a new token after each write it
sends to the shard, so a client that wrote through the router reads its own writes, whichever
replica answers.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from indexer.datadir import acquire_writer
from indexer.errors import ConflictError, LockedError, NotFoundError

from .. import lexical
from ..encoder_cache import ENCODERS
from ..settings import Settings
from ..store import Store

log = logging.getLogger("lsr.cluster")


class ShardService:
    def __init__(self, data_dir, writer: bool, settings: Settings | None = None,
                 lock_wait_s: float = 60.0, refresh_ms: int | None = None):
        settings = settings or Settings()
        settings.apply()  # models dir, torch threads, ONNX: this process's, as in `lsr serve`
        self.data_dir = Path(data_dir)
        self.writer = writer
        self._lock = None
        if writer:
            # a restarted writer waits for its predecessor's lock: the dead process's flock goes
            # with it, but a replacement may start while the old one is still exiting
            deadline = time.monotonic() + lock_wait_s
            while (lock := acquire_writer(self.data_dir)) is None:
                if time.monotonic() > deadline:
                    raise LockedError(f"shard {self.data_dir.name}: another process holds its writer lock")
                time.sleep(0.2)
            self._lock = lock
        self.store = Store(self.data_dir, ENCODERS, settings.encode_batch_size, settings.wal_recovery,
                           read_only=not writer)
        self.store.open_all()
        self._seen: dict[str, object] = {}  # reader: per collection, the last write token caught up to
        self._stop = threading.Event()
        if not writer:
            interval = (refresh_ms if refresh_ms is not None else settings.refresh_ms) / 1000
            threading.Thread(target=self._refresh_loop, args=(interval,), daemon=True,
                             name="lsr-shard-refresh").start()

    # ---------------------------------------------------------------- reader: catching up
    def _refresh_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.store.refresh_all()
            except Exception:  # logged; the next round tries again
                log.exception("shard %s: refreshing failed", self.data_dir.name)

    def _catch_up(self, name: str, token) -> None:
        if not self.writer and token is not None and self._seen.get(name) != token:
            self.store.refresh(name)
            self._seen[name] = token

    def _coll(self, name: str, token=None):
        self._catch_up(name, token)
        return self.store.get(name)

    # ---------------------------------------------------------------- collections
    def create(self, name: str, sparse, dense, multivector, bm25: bool, index: dict | None,
               exist_ok: bool = False) -> None:
        try:
            self.store.create(name, sparse, dense, multivector, bm25, index)
        except ConflictError:
            # a retried create (the writer restarted after doing it): the router checked first
            if not (exist_ok and name in self.store.names()):
                raise

    def drop(self, name: str, missing_ok: bool = False) -> None:
        try:
            self.store.drop(name)
        except NotFoundError:
            if not missing_ok:
                raise

    def names(self, token=None) -> list[str]:
        if not self.writer and token is not None:
            self.store.refresh_all()
        return self.store.names()

    def damaged(self) -> dict[str, dict]:
        return {n: d.public() for n, d in self.store.damaged().items()}

    def describe(self, name: str, token=None) -> dict:
        self._catch_up(name, token)
        return self.store.describe(name)

    def config(self, name: str, token=None) -> dict:
        return self._coll(name, token).config.to_dict()

    def wait(self, name: str) -> None:
        """Seal the write buffer and wait for maintenance (tests, the end of a bulk load)."""
        coll = self.store.get(name)
        coll.flush()
        coll.wait_for_maintenance()

    # ---------------------------------------------------------------- writes
    def upsert(self, name: str, ids, texts, metadata, vectors, bm25_avgdl) -> int:
        return self.store.upsert(name, ids, texts, metadata, vectors, bm25_avgdl=bm25_avgdl)

    def install(self, name: str, key: str, ids: list[str], texts, metadata, vectors: dict,
                bm25_rows, lengths, bm25_avgdl: float | None, tokens=None) -> bool:
        """Bulk load one batch encoded elsewhere (cluster/bulk.py): ``vectors`` holds the
        neural fields, ``bm25_rows`` the term counts, saturated here with the collection-wide
        average length the bulk job measured; ``tokens`` the documents' token vectors in stored
        form (TokenRows) for a collection that stores them."""
        coll = self.store.get(name)
        vectors = dict(vectors)
        lengths = np.asarray(lengths, dtype=np.int64)
        if "bm25" in coll.config.fields:
            vectors["bm25"] = lexical.saturate(bm25_rows, lengths, bm25_avgdl or 1.0)
        return coll.install_segment(key, ids, vectors, texts=texts, metadata=metadata, lengths=lengths,
                                    tokens=tokens)

    def installed(self, name: str) -> list[str]:
        return sorted(self.store.get(name).installed())

    def delete(self, name: str, ids: list[str]) -> int:
        return self.store.get(name).delete(ids)

    def delete_where(self, name: str, flt) -> int:
        return self.store.get(name).delete_where(flt)

    def update_metadata(self, name: str, updates: dict, merge: bool) -> int:
        return self.store.get(name).update_metadata(updates, merge=merge)

    # ---------------------------------------------------------------- reads
    def get(self, name: str, ids: list[str], token=None) -> list:
        coll = self._coll(name, token)
        return [coll.get(d) for d in ids]

    def fetch(self, name: str, ids: list[str], token=None) -> list:
        """(text, metadata) per id (None where it is gone): a page's documents, no vectors."""
        coll = self._coll(name, token)
        out = []
        for d in ids:
            doc = coll.get(d)
            out.append(None if doc is None else (doc.text, doc.metadata))
        return out

    def ids(self, name: str, flt, token=None) -> list[str]:
        return self._coll(name, token).ids(flt)

    def search(self, name: str, field: str, q_ids, q_vals, k: int, flt, query_cut: int,
               heap_factor: float, with_docs: int = 0, token=None) -> list[tuple]:
        hits = self._coll(name, token).search(q_ids, q_vals, k=k, field=field, filter=flt,
                                              query_cut=query_cut, heap_factor=heap_factor)
        return _hits(hits, with_docs)

    def search_dense(self, name: str, field: str, vector, k: int, flt, with_docs: int = 0,
                     token=None) -> list[tuple]:
        hits = self._coll(name, token).search_dense(vector, k=k, field=field, filter=flt)
        return _hits(hits, with_docs)

    def facet_counts(self, name: str, key: str, flt, ids, token=None) -> dict:
        return self._coll(name, token).facet_counts(key, filter=flt, ids=ids)

    def token_vectors(self, name: str, ids: list[str], token=None):
        return self._coll(name, token).token_vectors(ids)

    def term_stats(self, name: str, field: str, terms, token=None) -> tuple[int, int, np.ndarray]:
        s = self._coll(name, token).term_stats(field, terms)
        return s.n_docs, s.total_length, s.df

    # ---------------------------------------------------------------- snapshots
    def snapshot(self, name: str, snap_id: str) -> dict:
        return self.store.snapshot(name, snap_id)

    def snapshots(self, name: str) -> list[dict]:
        return self.store.snapshots(name)

    def delete_snapshot(self, name: str, snap_id: str) -> None:
        self.store.delete_snapshot(name, snap_id)

    def restore(self, name: str, snap_id: str, target: str | None) -> None:
        self.store.restore(name, snap_id, target)

    def ping(self) -> str:
        return self.data_dir.name

    def layout(self) -> dict:
        """The cluster's layout, recorded beside the shard directories (ray_app.deploy)."""
        import json
        return json.loads((self.data_dir.parent / "cluster.json").read_text())

    def close(self) -> None:
        self._stop.set()
        self.store.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _hits(hits: list, with_docs: int) -> list[tuple]:
    """(id, score, (text, metadata) or None): the best ``with_docs`` carry their document, so a
    page usually needs no second call to the shard (backend.PREFETCH)."""
    return [(h.id, h.score, (h.text, h.metadata) if i < with_docs else None) for i, h in enumerate(hits)]
