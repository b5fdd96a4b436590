"""A collection: durable, searchable documents with one or more vector fields.

    <data_dir>/<name>/
      collection.json   configuration (fields, encoders, policy), checksummed
      MANIFEST.json     the committed state: segment list, tombstone file, WAL checkpoint
      segments/         sealed, immutable segments (segment.py)
      tombstones/       deleted / superseded rows of the listed segments, one dir per manifest
      wal/              write-ahead log of operations not yet sealed (wal.py)
      quarantine/       WAL bytes that recovery dropped, kept for inspection (not in snapshots)
      LOCK              held (flock) by the one process that writes the collection

Writes: an upsert or delete is checked first (write_input.py), gets the next sequence number,
is appended to the WAL and fsync'd, then applied in memory (rows appended to the write buffer,
older versions marked dead) before the call returns. Every document version carries its
sequence number, so "newest wins" is a comparison and replaying the WAL is idempotent.

Flush seals the buffer: under the lock the buffer is frozen (still searched) and the WAL
rotated; the segment is built without the lock; under the lock again rows killed meanwhile are
carried over as tombstones and a new manifest is committed (temp file, fsync, rename). Merge
works the same way on a set of segments; a flush and a merge may run at the same time (each
takes its own lock; both commit under the state lock). Only the manifest makes a segment
visible, so a crash at any point leaves the old state plus the WAL, and open() removes unlisted
directories. When to flush and merge is the MaintenancePolicy's decision, and a background
thread acts on it (maintenance.py); writes only wait for room in the buffer.

Searches take a snapshot under the lock (segment list, each `alive` mask, buffer length), then
run without it: masks and buffers are replaced or appended, never changed in place. The same
property lets a read-only follower swap in a whole new state at once (refresh()).

This module is the facade: lifecycle, the public methods, the locks and the state they guard.
The jobs it hands off live next to it: the checks of a write (write_input.py), the search over a
snapshot (searcher.py), the running term statistics (term_stats.py), snapshot / restore / crash
leftovers (snapshots.py), when to flush and merge (maintenance.py).
"""
from __future__ import annotations

import errno
import os
import shutil
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from . import crashpoints, snapshots
from .atomic import fsync_dir, read_json_checked, write_json_atomic
from .buffer import WriteBuffer
from .collection_config import CollectionConfig, check_name
from .combining import Combiner
from .datadir import acquire_collection_lock
from .errors import (ClosedError, CollectionExistsError, CollectionLockedError, CollectionNotFoundError,
                     CorruptionError, InvalidInputError, LsrError, NotFoundError, ReadOnlyError)
from .facets import FacetCounts
from .filters import Filter
from .maintenance import Maintainer, MaintenancePolicy, report_timing
from .query import DEFAULTS, SearchParams, SparseQuery
from .searcher import Hit, search_dense_batch, search_sparse
from .segment import BuildCancelled, Segment, segment_dir_name, write_segment
from .storage import IndexFormatError, load_arrays, save_arrays
from .term_stats import LiveTermStats, TermStats
from .token_store import TokenRows, check_tokens
from .validation import check_k
from .write_input import check_ids, check_upsert
from .wal import TOLERATE_TORN_TAIL, DeleteOp, UpsertOp, WalTail, WriteAheadLog, encode_op

# the errors, Hit and TermStats live elsewhere; callers import them from here too
__all__ = ["Collection", "CollectionExistsError", "CollectionLockedError", "CollectionNotFoundError",
           "Document", "Hit", "TermStats"]

FORMAT_VERSION = 1
# What _load() builds and a follower's refresh() swaps in (the locks and the dense combiner,
# which threads may be waiting on, stay).
_STATE = ("config", "_generation", "_checkpoint", "_next_seq", "_next_segment_id", "_tomb_name",
          "_segments", "_live", "_sealing", "_buffer", "_term_stats", "_tail", "_logged_seq", "_installed")
# Exceptions that reading a damaged file can raise from numpy, pyarrow, json or the OS.
_LOAD_FAILURES = (ValueError, KeyError, TypeError, IndexError, EOFError, OSError)


@dataclass
class Document:
    id: str
    text: str | None
    metadata: dict | None
    vectors: dict  # field -> 1 x dim csr_matrix (sparse) or 1-D float32 array (dense)
    seq: int


class _Loc(NamedTuple):
    container: object  # Segment or WriteBuffer
    row: int
    seq: int


class Collection:
    """Open with Collection.create(...) or Collection.open(...); close() when done."""

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, data_dir, name: str, fields: dict, *, encoders: dict | None = None,
               maintenance: bool = True, **options) -> "Collection":
        """Create an empty collection; raises CollectionExistsError if the name is taken."""
        name = check_name(name)
        config = CollectionConfig.from_dict({"fields": fields, "encoders": encoders or {}, **options})
        data_dir = Path(data_dir)
        final, tmp = _new_collection_paths(data_dir, name)
        try:
            for sub in ("segments", "tombstones", "wal"):
                (tmp / sub).mkdir(parents=True)
            write_json_atomic(tmp / "collection.json", {"format": "lsr-search-collection-config",
                                                        "format_version": FORMAT_VERSION,
                                                        "config": config.to_dict()})
            write_json_atomic(tmp / "MANIFEST.json", _manifest(0, [], None, 0, 1, 1))
            fsync_dir(tmp)
            try:
                os.rename(tmp, final)  # fails if a concurrent create won the race
                crashpoints.step("collection.create.rename")
            except OSError as exc:
                raise CollectionExistsError(f"collection {name!r} already exists") from exc
            fsync_dir(data_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls.open(data_dir, name, maintenance=maintenance)

    @classmethod
    def open(cls, data_dir, name: str, *, wal_recovery: str = TOLERATE_TORN_TAIL,
             read_only: bool = False, maintenance: bool = True) -> "Collection":
        """wal_recovery: how a damaged write-ahead log is replayed (wal.WAL_RECOVERY_MODES).
        read_only: follow a collection that another process writes (see refresh()).
        maintenance: flush and merge in a background thread (maintenance.py); without it
        upsert() flushes (and merges) inline once the buffer holds flush_docs rows."""
        name = check_name(name)
        path = Path(data_dir) / name
        if not (path / "collection.json").is_file():
            raise CollectionNotFoundError(f"no collection {name!r} in {data_dir}")
        return cls(path, wal_recovery=wal_recovery, read_only=read_only, maintenance=maintenance)

    @staticmethod
    def list(data_dir) -> list[str]:
        d = Path(data_dir)
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / "collection.json").is_file())

    @staticmethod
    def drop(data_dir, name: str) -> None:
        """Delete a collection that no Collection object has open."""
        name = check_name(name)
        path = Path(data_dir) / name
        if not (path / "collection.json").is_file():
            raise CollectionNotFoundError(f"no collection {name!r} in {data_dir}")
        lock = acquire_collection_lock(path)
        gone = Path(data_dir) / f".{name}.dropped-{uuid.uuid4().hex[:8]}"
        os.rename(path, gone)  # the name disappears atomically; the files go after
        crashpoints.step("collection.drop.rename")
        fsync_dir(Path(data_dir))
        os.close(lock)
        shutil.rmtree(gone, ignore_errors=True)
        crashpoints.step("collection.drop.remove")

    def __init__(self, path: Path, *, wal_recovery: str = TOLERATE_TORN_TAIL, read_only: bool = False,
                 maintenance: bool = True):
        self.path = Path(path)
        self.name = self.path.name
        self.read_only = read_only
        # a follower takes no lock: it never writes, and the writer must be able to run
        self._lock_fd = None if read_only else acquire_collection_lock(self.path)
        # since this object was opened: what the service exports as counters (stats())
        self._activity = {"upserted": 0, "deleted": 0, "flushes": 0, "flush_seconds": 0.0,
                          "merges": 0, "merge_seconds": 0.0}
        try:
            _as_damage(self.name, self.path, lambda: self._load(wal_recovery))
        except BaseException:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
            raise
        self._policy = MaintenancePolicy.from_config(self.config)
        self._maintainer = Maintainer(self, self._policy) if maintenance and not read_only else None
        if self._maintainer is not None:
            self._maintainer.notify()  # a replayed WAL may hold a flush's worth already

    def _load(self, wal_recovery: str, reuse: dict | None = None) -> None:
        """Read the committed state and replay the WAL on top. reuse: segments a follower has
        loaded already, by id (their files are immutable; only which rows live changes)."""
        body = read_json_checked(self.path / "collection.json", "collection configuration")
        if body.get("format_version") != FORMAT_VERSION:
            raise IndexFormatError(f"{self.path} has collection format version "
                                   f"{body.get('format_version')}, this version reads {FORMAT_VERSION}",
                                   path=self.path / "collection.json", check="format version")
        self.config = CollectionConfig.from_dict(body["config"])
        m = read_json_checked(self.path / "MANIFEST.json", "collection manifest")
        self._generation = m["generation"]
        self._checkpoint = m["checkpoint_seq"]
        self._next_seq = m["next_seq"]
        self._next_segment_id = m["next_segment_id"]
        self._tomb_name = m["tombstones"]
        self._installed = set(m.get("installed", ()))  # keys of bulk-installed batches
        # ids deleted while a bulk batch builds, with the seq they were deleted at (install_segment)
        self._installing, self._deleted_meanwhile = 0, {}
        if not self.read_only:
            self._remove_unlisted(m)
        self._lock = threading.RLock()        # guards all state below
        self._room = threading.Condition(self._lock)  # a flush took the buffer: writers may go on
        self._seal_lock = threading.RLock()   # one flush at a time
        self._merge_lock = threading.RLock()  # one merge at a time (flushes go on meanwhile)
        reuse = reuse or {}
        self._segments = [reuse[i].fresh() if i in reuse else
                          Segment(self.path / "segments" / segment_dir_name(i), self.config)
                          for i in m["segments"]]
        self._apply_tombstones()
        self._live: dict[str, _Loc] = {}
        for seg in self._segments:
            for row in np.flatnonzero(seg.alive):
                self._live_put(seg.ids[row], _Loc(seg, int(row), int(seg.seqs[row])))
        self._sealing: list[WriteBuffer] = []
        self._buffer = WriteBuffer(self.config)
        self._dense_combiner = Combiner(self._search_dense_batch)
        self._term_stats = LiveTermStats(self.config, self._segments)
        self._closed = False
        self._logged_seq = 0  # the newest WAL record applied on top of the manifest
        if self.read_only:
            self._wal = None
            self._tail = WalTail(self.path / "wal")
            self._apply_logged(self._tail.read())
            return
        self._wal = WriteAheadLog(self.path / "wal")
        # files a crash left between a commit and their removal hold only sealed records
        self._wal.remove_before(self._checkpoint + 1)
        self._apply_logged(self._wal.replay(wal_recovery))
        self._wal.open(self._next_seq)

    def _apply_logged(self, ops: list) -> bool:
        """Apply WAL operations not yet in this state (replay, or a follower's tail)."""
        applied = False
        for op in ops:
            if op.seq <= max(self._checkpoint, self._logged_seq):
                continue  # already sealed into a segment, or already applied
            self._apply(op)
            self._logged_seq = op.seq
            self._next_seq = max(self._next_seq, op.seq + 1)
            applied = True
        return applied

    def refresh(self) -> bool:
        """A follower (read_only) catches up with the writer: a new manifest (a flush or merge
        committed) is loaded whole and swapped in at once, so a search sees the old state or
        the new one, never a half-installed segment; otherwise new WAL records are applied.
        Returns whether anything changed. A writer has nothing to catch up with."""
        if not self.read_only:
            return False
        self._check_open()
        for attempt in range(3):
            m = read_json_checked(self.path / "MANIFEST.json", "collection manifest")
            if m["generation"] == self._generation:
                ops = self._tail.read()
                with self._lock:
                    return self._apply_logged(ops)
            fresh = Collection.__new__(Collection)
            fresh.path, fresh.name, fresh.read_only, fresh._lock_fd = self.path, self.name, True, None
            try:
                _as_damage(self.name, self.path,
                           lambda: fresh._load(TOLERATE_TORN_TAIL, {s.id: s for s in self._segments}))
            except CorruptionError:
                # a merge may have removed a segment between our reading of the manifest and
                # of the segment: only damage if the manifest did not move on meanwhile
                again = read_json_checked(self.path / "MANIFEST.json", "collection manifest")
                if again["generation"] == m["generation"] or attempt == 2:
                    raise
                continue
            with self._lock:
                self._check_open()
                for attr in _STATE:
                    setattr(self, attr, getattr(fresh, attr))
            return True
        return False

    def _live_put(self, doc_id: str, loc: _Loc) -> None:
        old = self._live.get(doc_id)
        if old is not None:  # a stale duplicate the tombstones missed: keep the newest
            keep, drop = (loc, old) if loc.seq > old.seq else (old, loc)
            drop.container.kill([drop.row])
            loc = keep
        self._live[doc_id] = loc

    def _remove_unlisted(self, m: dict) -> None:
        """Leftovers of an interrupted flush/merge/commit are invisible; delete them."""
        listed = {segment_dir_name(i) for i in m["segments"]}
        for p in (self.path / "segments").iterdir():
            if p.name not in listed:
                shutil.rmtree(p, ignore_errors=True)
        for p in (self.path / "tombstones").iterdir():
            if p.name != m["tombstones"]:
                shutil.rmtree(p, ignore_errors=True)
        for p in self.path.iterdir():
            if p.name.startswith(".MANIFEST.json.tmp"):
                p.unlink(missing_ok=True)

    def _apply_tombstones(self) -> None:
        if self._tomb_name is None:
            return
        tomb = self.path / "tombstones" / self._tomb_name
        arrays, _ = load_arrays(tomb, "tombstones", mmap=False)
        by_id = {s.id: s for s in self._segments}
        for sid in np.unique(arrays["segments"]):
            if int(sid) not in by_id:
                raise IndexFormatError(f"tombstones {self._tomb_name} name segment {sid}, which the "
                                       "manifest does not list", path=tomb, check="segment ids")
            rows = arrays["rows"][arrays["segments"] == sid]
            seg = by_id[int(sid)]
            if rows.size and (rows.min() < 0 or rows.max() >= seg.n_rows):
                raise IndexFormatError(f"tombstones {self._tomb_name}: row out of range for segment {sid}",
                                       path=tomb, check="row range")
            seg.kill(rows)

    def close(self) -> None:
        if self._maintainer is not None:
            self._maintainer.stop()  # after the flush or merge in progress
        with self._seal_lock, self._merge_lock, self._lock:
            if not self._closed:
                if self._wal is not None:
                    self._wal.close()
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
                self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"collection {self.name!r} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise ReadOnlyError(f"collection {self.name!r} is open read-only here; the process "
                                "that holds its write lock takes writes")

    # ------------------------------------------------------------------ writes
    def upsert(self, ids, vectors, texts=None, metadata=None, lengths=None, tokens=None) -> int:
        """Insert or replace documents; durable (WAL fsync'd) when this returns.

        vectors: {field: matrix} with one row per id: a CSR matrix for a sparse field, an
        [n, dim] array for a dense field (a bare matrix when the collection has one field).
        lengths: document lengths in tokens for BM25 statistics; default: the number of
        non-zero terms in the first sparse field. Raises ValueError on bad input, storing nothing.
        tokens: with store_token_vectors, per document its token vectors (float [n_tokens,
        token_dim], None for none), stored quantised (token_store.py).
        """
        ids, vecs, texts, metadata, lengths = check_upsert(self.config, ids, vectors, texts, metadata,
                                                           lengths)
        token_rows = check_tokens(self.config, tokens, len(ids))
        with self._lock:
            self._check_writable()
            self._wait_for_room()
            op = UpsertOp(self._next_seq, ids, vecs, texts, metadata, lengths, token_rows)
            self._wal.append(encode_op(op))  # encode_op raises ValueError before anything is written
            self._next_seq += 1
            self._apply(op)
            self._activity["upserted"] += len(ids)
            flush = self._policy.flush_due(self._buffer.n_rows)
        if flush and self._maintainer is not None:
            self._maintainer.notify()
        elif flush:
            self.flush()
        return len(ids)

    def update_metadata(self, updates: dict, merge: bool = True) -> int:
        """Change documents' metadata without re-encoding them: ``{id: metadata}``. With
        ``merge`` the update is a JSON merge patch (RFC 7386) of the stored metadata: its keys
        replace or add keys, a null removes one; without, it replaces the metadata. The text,
        vectors and length stay as stored; the new versions go through the WAL like upserts.
        Raises NotFoundError naming ids that do not exist, changing nothing."""
        if not isinstance(updates, dict):
            raise InvalidInputError("updates must be a dict {id: metadata}")
        ids = check_ids(list(updates), allow_empty=False)
        for i in ids:
            if not isinstance(updates[i], dict):
                raise InvalidInputError(f"metadata of {i!r} must be a dict, got {type(updates[i]).__name__}")
        with self._lock:  # read and rewrite at one version: no write slips in between
            self._check_writable()
            missing = [i for i in ids if i not in self._live]
            if missing:
                raise NotFoundError(f"no document {missing[0]!r} in collection {self.name!r}"
                                    + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
            locs = [self._live[i] for i in ids]
            vectors = {}
            for f, spec in self.config.fields.items():
                rows = [loc.container.vector(f, loc.row) for loc in locs]
                vectors[f] = sp.vstack(rows, format="csr") if spec.kind == "sparse" else np.stack(rows)
            texts = [loc.container.text(loc.row) for loc in locs]
            lengths = np.array([loc.container.lengths[loc.row] for loc in locs], dtype=np.int64)
            tokens = None
            if self.config.store_token_vectors:  # carried as stored, never re-quantised
                tokens = TokenRows.concat([loc.container.token_rows([loc.row]) for loc in locs],
                                          self.config.store_token_vectors, self.config.token_dim)
            metadata = []
            for i, loc in zip(ids, locs):
                if not merge:
                    metadata.append(updates[i])
                    continue
                old = dict(loc.container.metadata(loc.row) or {})
                for k, v in updates[i].items():
                    if v is None:
                        old.pop(k, None)
                    else:
                        old[k] = v
                metadata.append(old)
            return self.upsert(ids, vectors, texts, metadata, lengths, tokens)

    def _wait_for_room(self) -> None:
        """Under the lock: back-pressure. Wait while the buffer is at max_buffer_docs (the
        maintainer is behind); if maintenance is failing, raise its error instead."""
        while self._maintainer is not None and self._policy.full(self._buffer.n_rows):
            if self._maintainer.failure is not None:
                raise self._maintainer.failure
            self._maintainer.notify()
            self._room.wait(0.5)
            self._check_writable()

    def delete(self, ids) -> int:
        """Delete documents by id; returns how many existed. Durable when this returns."""
        ids = check_ids([ids] if isinstance(ids, str) else ids, allow_empty=True)
        with self._lock:
            self._check_writable()
            if self._installing:  # a batch being built must not bring these back
                self._deleted_meanwhile.update(dict.fromkeys(ids, self._next_seq))
            present = [i for i in ids if i in self._live]
            if not present:
                return 0
            op = DeleteOp(self._next_seq, present)
            self._wal.append(encode_op(op))
            self._next_seq += 1
            self._apply(op)
            self._activity["deleted"] += len(present)
        return len(present)

    def delete_where(self, filter) -> int:
        """Delete every live document whose metadata matches a filter (filters.py syntax);
        returns how many. One WAL record, under the lock: no write can slip in between."""
        flt = Filter.parse(filter)
        if flt is None or not flt.conditions:
            raise InvalidInputError("filter: give at least one condition (to delete everything, "
                                    "drop the collection)")
        with self._lock:
            return self.delete(self.ids(flt))

    def install_segment(self, key: str, ids, vectors, texts=None, metadata=None, lengths=None,
                        tokens=None) -> bool:
        """Bulk load one batch: build a sealed segment from these documents and make it visible
        in one manifest commit, with no WAL record per document. Arguments as for upsert().

        ``key`` names the batch (e.g. source file + batch number): a batch whose key is
        installed already is skipped and False returned, so a bulk job rerun after a crash
        adds nothing twice. The batch counts as one upsert made when this call starts: it
        replaces older versions of its ids, and writes made while it builds (upserts and
        deletes of the same ids) are newer and win. A crash before the commit leaves nothing
        (the unlisted directory is removed on open); after it, the batch is installed."""
        if not isinstance(key, str) or not key or len(key) > 1024:
            raise InvalidInputError("key must be a non-empty string of at most 1024 characters")
        ids, vecs, texts, metadata, lengths = check_upsert(self.config, ids, vectors, texts, metadata,
                                                           lengths)
        token_rows = check_tokens(self.config, tokens, len(ids))
        with self._lock:
            self._check_writable()
            if key in self._installed:
                return False
            seq, seg_id = self._next_seq, self._next_segment_id
            self._next_seq += 1
            self._next_segment_id += 1
            self._installing += 1
        try:
            path = write_segment(self.path / "segments", seg_id, self.config, ids,
                                 np.full(len(ids), seq, np.int64), vecs,
                                 texts if texts is not None else [None] * len(ids),
                                 metadata if metadata is not None else [None] * len(ids), lengths,
                                 tokens=token_rows)
            crashpoints.step("install.segment_written")
            seg = Segment(path, self.config)
            with self._lock:
                self._check_writable()
                if key in self._installed:  # the same batch, installed by a concurrent call
                    shutil.rmtree(path, ignore_errors=True)
                    return False
                kills = defaultdict(list)
                alive = np.ones(seg.n_rows, dtype=np.bool_)
                for j, doc_id in enumerate(ids):
                    old = self._live.get(doc_id)
                    if (old is not None and old.seq > seq) or self._deleted_meanwhile.get(doc_id, -1) > seq:
                        alive[j] = False  # written or deleted since this batch started
                        continue
                    if old is not None:
                        kills[old.container].append(old.row)
                    self._live[doc_id] = _Loc(seg, j, seq)
                seg.alive = alive
                self._kill(kills)
                self._term_stats.add_segment(seg)
                self._segments.append(seg)
                self._installed.add(key)
                self._commit()
                self._activity["upserted"] += int(alive.sum())
        finally:
            with self._lock:
                self._installing -= 1
                if not self._installing:
                    self._deleted_meanwhile.clear()
        if self._maintainer is not None:
            self._maintainer.notify()  # many small batches: merge when due
        return True

    def installed(self) -> set[str]:
        """The keys of the bulk batches installed (install_segment)."""
        with self._lock:
            return set(self._installed)

    def _apply(self, op) -> None:
        """Apply a logged operation to the in-memory state (also used by WAL replay)."""
        kills = defaultdict(list)
        if isinstance(op, DeleteOp):
            for doc_id in op.ids:
                old = self._live.get(doc_id)
                if old is not None and old.seq < op.seq:
                    kills[old.container].append(old.row)
                    del self._live[doc_id]
            self._kill(kills)
            return
        buf = self._buffer
        start = buf.n_rows
        stale = []  # replayed records older than a bulk-installed version (install_segment)
        for i, doc_id in enumerate(op.ids):
            old = self._live.get(doc_id)
            if old is not None and old.seq > op.seq:
                stale.append(start + i)
                continue
            if old is not None:
                kills[old.container].append(old.row)
            self._live[doc_id] = _Loc(buf, start + i, op.seq)
        texts = op.texts if op.texts is not None else [None] * len(op.ids)
        meta = op.metadata if op.metadata is not None else [None] * len(op.ids)
        self._kill(kills)
        buf.append(op.ids, op.seq, op.vectors, texts, meta, op.lengths, op.tokens)
        self._term_stats.add(op)
        if stale:
            self._kill({buf: stale})

    def _kill(self, kills: dict) -> None:
        for container, rows in kills.items():
            rows = np.asarray(rows, dtype=np.int64)
            container.kill(rows)
            self._term_stats.remove(container, rows)

    def _field(self, field, kind: str) -> str:
        names = [n for n, s in self.config.fields.items() if s.kind == kind]
        if field is None:
            if not names:
                raise InvalidInputError(f"this collection has no {kind} field")
            return names[0]
        if field not in names:
            raise InvalidInputError(f"no {kind} field {field!r}; {kind} fields: {names}")
        return field

    # ------------------------------------------------------------------ reads
    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, doc_id) -> bool:
        return doc_id in self._live

    def get(self, doc_id: str) -> Document | None:
        """The current version of a document, or None if there is none."""
        with self._lock:
            loc = self._live.get(doc_id)
        if loc is None:
            return None
        c, r = loc.container, loc.row
        return Document(doc_id, c.text(r), c.metadata(r),
                        {f: c.vector(f, r) for f in self.config.fields}, loc.seq)

    def token_vectors(self, ids: list[str]) -> TokenRows | None:
        """Stored token vectors of these documents for MaxSim reranking, in their stored form
        (token_store.TokenRows: one stacked block, ``rows.doc(i)`` dequantises the i-th);
        an id that is not live, or stored none, has an empty slice. None when the collection
        stores no token vectors."""
        dtype, dim = self.config.store_token_vectors, self.config.token_dim
        if not dtype:
            return None
        with self._lock:
            locs = [self._live.get(d) for d in ids]
        got = [None if loc is None else loc.container.token_slice(loc.row) for loc in locs]
        found = [g for g in got if g is not None and len(g[0])]
        ptr = np.zeros(len(ids) + 1, np.int64)
        np.cumsum([0 if g is None else len(g[0]) for g in got], out=ptr[1:])
        if not found:
            return TokenRows.empty(dtype, dim, len(ids))
        return TokenRows(dtype, ptr, np.concatenate([c for c, _ in found]),
                         np.concatenate([s for _, s in found]))

    def ids(self, filter=None) -> list[str]:
        """The live ids; with a filter (filters.py syntax or a parsed Filter), those whose
        metadata matches, read from one consistent snapshot."""
        flt = filter if isinstance(filter, Filter) or filter is None else Filter.parse(filter)
        if flt is None:
            with self._lock:
                return list(self._live)
        out: list[str] = []
        for c, alive in self._snapshot():
            rows = np.flatnonzero(alive & flt.mask(c.metadata_columns())[: len(alive)])
            ids = c.ids
            out += [ids[r] for r in rows]
        return out

    def facet_counts(self, key: str, filter=None, ids=None) -> dict:
        """Value counts of a metadata key (facets.py): over the live documents that match the
        filter, or over the given ids (those live; the filter then also applies). JSON-able:
        {"values": [[value, count], ...], "missing": n, "documents": n}; shards add up."""
        flt = filter if isinstance(filter, Filter) or filter is None else Filter.parse(filter)
        out = FacetCounts()
        if ids is not None:
            by_container: dict[int, tuple] = {}
            with self._lock:
                self._check_open()
                for d in ids:
                    loc = self._live.get(d)
                    if loc is not None:
                        by_container.setdefault(id(loc.container), (loc.container, []))[1].append(loc.row)
            for c, rows in by_container.values():
                rows = np.asarray(rows, dtype=np.int64)
                if flt is not None:
                    rows = rows[flt.mask(c.metadata_columns())[rows]]
                out.count(c.metadata_columns(), rows, key)
            return out.as_dict()
        for c, alive in self._snapshot():
            mask = alive if flt is None else alive & flt.mask(c.metadata_columns())[: len(alive)]
            out.count(c.metadata_columns(), np.flatnonzero(mask), key)
        return out.as_dict()

    def _snapshot(self) -> list:
        with self._lock:
            self._check_open()
            return ([(s, s.alive) for s in self._segments] + [(b, b.alive) for b in self._sealing]
                    + [(self._buffer, self._buffer.alive)])

    def search(self, q_indices, q_values, k: int = DEFAULTS.k, *, field: str | None = None,
               filter=None, query_cut: int | None = None, heap_factor: float | None = None,
               knn_expand: int = DEFAULTS.knn_expand) -> list[Hit]:
        """Top-k documents by dot product with a sparse query, newest versions only, best first.

        Segments use their index (approximate for Seismic; query_cut, heap_factor and, for a
        field built with a κ-NN graph, knn_expand as there; query_cut / heap_factor None: the
        field's search defaults, FieldSpec.search_defaults), the write buffer is scored
        exactly. With a filter, k hits come back whenever k matching documents share a term
        with the query (see Segment.search_sparse for the strategy).
        The query and the parameters are checked here, once, for every segment."""
        field = self._field(field, "sparse")
        cut, hf = self.config.fields[field].search_defaults()
        params = SearchParams(k, cut if query_cut is None else query_cut,
                              hf if heap_factor is None else heap_factor, knn_expand)
        query = SparseQuery.make(q_indices, q_values, self.config.fields[field].dim)
        flt = Filter.parse(filter)
        return search_sparse(self._snapshot(), field, query, params, flt, self.config.filter_exact_docs)

    def search_dense(self, vector, k: int = 10, *, field: str | None = None, filter=None) -> list[Hit]:
        """Exact top-k by dot product with a dense query vector."""
        field = self._field(field, "dense")
        dim = self.config.fields[field].dim
        k = check_k(k)
        q = np.asarray(vector, dtype=np.float32)
        if q.shape != (dim,) or not np.all(np.isfinite(q)):
            raise InvalidInputError(f"dense query must be {dim} finite numbers, got shape {q.shape}")
        flt = Filter.parse(filter)
        # concurrent dense searches share one scan of the vectors (see combining.py)
        return self._dense_combiner.submit((field, q, k, flt))

    def _search_dense_batch(self, requests: list) -> list[list[Hit]]:
        """What the dense combiner runs: a batch of dense searches over one snapshot."""
        return search_dense_batch(self._snapshot(), requests)

    def term_stats(self, field: str | None = None, terms=None) -> TermStats:
        """Document frequencies of a sparse field (of the given term ids only, if any), live
        document count and total length."""
        field = self._field(field, "sparse")
        with self._lock:
            return self._term_stats.of(field, None if terms is None else np.asarray(terms, np.int64))

    def stats(self) -> dict:
        with self._lock:
            segs = [(s.id, s.n_rows, int(s.alive.sum())) for s in self._segments]
            buffered = sum(b.n_alive for b in self._sealing) + self._buffer.n_alive
            wal_bytes = self._wal.nbytes if self._wal is not None else _disk_bytes(self.path / "wal")
            out = {"name": self.name, "documents": len(self._live), "segments": len(segs),
                   "segment_documents": [a for _, _, a in segs],
                   "tombstones": sum(n - a for _, n, a in segs),
                   "buffer_documents": buffered, "wal_bytes": wal_bytes,
                   "generation": self._generation, "encoders": dict(self.config.encoders),
                   "fields": {n: s.kind for n, s in self.config.fields.items()},
                   "activity": dict(self._activity)}
            if self.config.store_token_vectors:
                parts = [s.token_bytes() + (s.n_rows,) for s in self._segments]
                parts += [b.token_bytes() + (b.n_rows,) for b in self._sealing + [self._buffer]]
                nbytes, tokens, rows = (sum(p[i] for p in parts) for i in range(3))
                out["token_vectors"] = {
                    "dtype": self.config.store_token_vectors, "dim": self.config.token_dim,
                    "tokens": tokens, "bytes": nbytes, "bytes_per_document": nbytes / rows if rows else 0.0,
                    "bytes_per_token": nbytes / tokens if tokens else 0.0,
                    "tokens_per_document": tokens / rows if rows else 0.0}
        out["bytes"] = _disk_bytes(self.path)
        return out

    # ------------------------------------------------------------------ flush / merge
    def flush(self) -> int | None:
        """Seal the write buffer into a segment; returns its id (None if there was nothing)."""
        with self._seal_lock:
            with self._lock:
                self._check_writable()
                buf = self._buffer
                if buf.n_rows:
                    buf.checkpoint = self._next_seq - 1
                    self._wal.rotate(self._next_seq)
                    self._buffer = WriteBuffer(self.config)
                    self._sealing.append(buf)
                    self._room.notify_all()
                pending = list(self._sealing)
            seg_id = None
            for buf in pending:  # normally one; more only after an earlier flush failed
                seg_id = self._seal(buf)
        if self._maintainer is not None:
            self._maintainer.notify()  # it merges when due
        elif self._policy.merge_due(self.live_per_segment()):
            self.merge()
        return seg_id

    def wait_for_maintenance(self, timeout: float = 600.0) -> None:
        """Block until no flush or merge is due or running (a no-op without a maintainer)."""
        if self._maintainer is not None:
            self._maintainer.wait_idle(timeout)

    # what the maintainer looks at
    def buffered_rows(self) -> int:
        return self._buffer.n_rows

    def sealing_pending(self) -> bool:
        return bool(self._sealing)

    def live_per_segment(self) -> list[int]:
        with self._lock:
            return [int(np.count_nonzero(s.alive)) for s in self._segments]

    def _seal(self, buf: WriteBuffer) -> int | None:
        t0 = time.perf_counter()
        with self._lock:
            rows = np.flatnonzero(buf.alive)
            seg_id = self._next_segment_id if rows.size else None
            if rows.size:
                self._next_segment_id += 1
        seg = None
        if rows.size:
            vectors = {f: (buf.sparse_rows(f, rows) if s.kind == "sparse" else buf.dense(f)[rows])
                       for f, s in self.config.fields.items()}
            all_texts, all_meta = buf.all_texts(), buf.all_metadata()
            path = write_segment(self.path / "segments", seg_id, self.config,
                                 [buf.ids[r] for r in rows], buf.seqs[rows], vectors,
                                 [all_texts[r] for r in rows], [all_meta[r] for r in rows],
                                 buf.lengths[rows], tokens=buf.token_rows(rows))
            seg = Segment(path, self.config)
        with self._lock:
            if seg is not None:
                self._adopt(seg, [(buf, rows)])
                self._segments.append(seg)
            self._sealing.remove(buf)
            self._checkpoint = buf.checkpoint
            self._commit()
            self._wal.remove_before(self._checkpoint + 1)
            self._activity["flushes"] += 1
            self._activity["flush_seconds"] += time.perf_counter() - t0
        report_timing("flush", self, time.perf_counter() - t0)
        return seg_id

    def _adopt(self, seg: Segment, sources: list) -> None:
        """Under the lock: point live ids at the new segment; rows that died meanwhile stay dead."""
        alive = np.concatenate([c.alive[rows] for c, rows in sources])
        seg.alive = alive
        j = 0
        for c, rows in sources:
            for r in rows:
                if alive[j]:
                    self._live[seg.ids[j]] = _Loc(seg, j, int(seg.seqs[j]))
                j += 1

    def merge(self, force: bool = False, cancelled=None) -> int:
        """Rewrite small segments (and those with many deleted rows) into one, dropping dead
        rows; force=True rewrites all segments into one. Returns how many were rewritten.
        ``cancelled()``: asked between the new segment's fields; True abandons the merge (0
        rewritten, nothing changed) — how close() stops a long merge of the maintainer."""
        cfg = self.config
        t0 = time.perf_counter()
        with self._merge_lock:
            with self._lock:
                self._check_writable()
                cands = self._policy.merge_candidates(self._segments, force)
                if not cands:
                    return 0
                sources = [(s, np.flatnonzero(s.alive)) for s in cands]
                total = sum(len(r) for _, r in sources)
                seg_id = self._next_segment_id if total else None
                if total:
                    self._next_segment_id += 1
            seg = None
            if total:
                try:
                    seg = Segment(self._write_merged(seg_id, sources, cancelled), cfg)
                except BuildCancelled:
                    return 0
            with self._lock:
                if seg is not None:
                    self._adopt(seg, sources)
                pos = self._segments.index(cands[0])
                kept = [s for s in self._segments if s not in cands]
                self._segments = kept[:pos] + ([seg] if seg is not None else []) + kept[pos:]
                self._commit()
                self._activity["merges"] += 1
                self._activity["merge_seconds"] += time.perf_counter() - t0
            report_timing("merge", self, time.perf_counter() - t0)
            for s in cands:  # searches still holding them keep their open mmaps
                shutil.rmtree(s.path, ignore_errors=True)
                crashpoints.step("merge.remove_segment")
            return len(cands)

    def _write_merged(self, seg_id: int, sources: list, cancelled=None):
        ids, seqs, texts, meta, lengths = [], [], [], [], []
        vectors = {}
        for f, spec in self.config.fields.items():
            parts = [(c.sparse_rows(f, r) if spec.kind == "sparse" else np.asarray(c.dense(f))[r])
                     for c, r in sources]
            vectors[f] = sp.vstack(parts, format="csr") if spec.kind == "sparse" else np.concatenate(parts)
        for c, rows in sources:
            all_texts, all_meta = c.all_texts(), c.all_metadata()
            ids += [c.ids[r] for r in rows]
            seqs.append(c.seqs[rows])
            texts += [all_texts[r] for r in rows]
            meta += [all_meta[r] for r in rows]
            lengths.append(c.lengths[rows])
        tokens = None
        if self.config.store_token_vectors:  # the codes as stored: a merge never re-quantises
            tokens = TokenRows.concat([c.token_rows(rows) for c, rows in sources],
                                      self.config.store_token_vectors, self.config.token_dim)
        return write_segment(self.path / "segments", seg_id, self.config, ids, np.concatenate(seqs),
                             vectors, texts, meta, np.concatenate(lengths), cancelled, tokens)

    def _commit(self) -> None:
        """Under the lock: write tombstones and the manifest for the current segment list."""
        self._generation += 1
        segs, rows = [], []
        for s in self._segments:
            dead = np.flatnonzero(~s.alive)
            segs.append(np.full(dead.size, s.id, np.int64))
            rows.append(dead.astype(np.int64))
        old_tomb = self._tomb_name
        self._tomb_name = None
        if segs and sum(len(r) for r in rows):
            self._tomb_name = f"tomb-{self._generation:08d}"
            save_arrays(self.path / "tombstones" / self._tomb_name, "tombstones",
                        {"segments": np.concatenate(segs), "rows": np.concatenate(rows)}, {})
        write_json_atomic(self.path / "MANIFEST.json", _manifest(
            self._generation, [s.id for s in self._segments], self._tomb_name, self._checkpoint,
            self._next_seq, self._next_segment_id, self._installed))
        if old_tomb is not None and old_tomb != self._tomb_name:
            shutil.rmtree(self.path / "tombstones" / old_tomb, ignore_errors=True)
            crashpoints.step("commit.remove_tombstones")

    # ------------------------------------------------------------------ snapshot / restore
    def snapshot(self, dest_dir, *, hard_links: bool = True) -> None:
        """Write a consistent copy of the collection to a new directory dest_dir; writes and
        searches go on meanwhile (snapshots.snapshot)."""
        snapshots.snapshot(self, dest_dir, hard_links=hard_links)

    @classmethod
    def restore(cls, src_dir, data_dir, name: str, *, replace: bool = False,
                wal_recovery: str = TOLERATE_TORN_TAIL, maintenance: bool = True) -> "Collection":
        """Create collection `name` in data_dir from a snapshot directory and open it;
        replace=True swaps out an existing one that nobody has open (snapshots.restore)."""
        return snapshots.restore(cls.open, src_dir, data_dir, name, replace=replace,
                                 wal_recovery=wal_recovery, maintenance=maintenance)

    @staticmethod
    def recover_interrupted(data_dir) -> list[str]:
        """Finish what a crash interrupted in data_dir (snapshots.recover_interrupted). Only
        the process that writes to data_dir may call this. Returns what it did."""
        return snapshots.recover_interrupted(data_dir)


# ---------------------------------------------------------------------- helpers
def _manifest(generation, segments, tombstones, checkpoint, next_seq, next_segment_id,
              installed=()) -> dict:
    return {"format": "lsr-search-collection", "format_version": FORMAT_VERSION,
            "generation": generation, "segments": segments, "tombstones": tombstones,
            "checkpoint_seq": checkpoint, "next_seq": next_seq, "next_segment_id": next_segment_id,
            "installed": sorted(installed)}


def _disk_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except FileNotFoundError:
                pass  # removed by a concurrent merge
    return total


def _as_damage(name: str, path: Path, load):
    """Run a load; whatever fails in reading files back is damage, not bad input."""
    try:
        return load()
    except BaseException as exc:
        if isinstance(exc, LsrError) or not isinstance(exc, _LOAD_FAILURES) or _disk_full(exc):
            raise
        raise CorruptionError(f"collection {name!r} cannot be loaded: {type(exc).__name__}: {exc}",
                              path=path, check="load") from exc


def _disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _new_collection_paths(data_dir: Path, name: str) -> tuple[Path, Path]:
    """(final, temporary) directories for a new collection; the collection is built in the
    temporary one and renamed into place. CollectionExistsError if the name is taken."""
    data_dir.mkdir(parents=True, exist_ok=True)
    final = data_dir / name
    if final.exists():
        raise CollectionExistsError(f"collection {name!r} already exists")
    return final, data_dir / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
