"""The collections of one data directory, opened once, with the encoders that fill them.

A collection has up to three vector fields, each filled by one encoder named at creation:
``sparse`` (SPLADE), ``bm25`` (hashed BM25, service/lexical.py) and ``dense`` (MiniLM); a
``multivector`` encoder, if named, reranks at query time (token vectors are computed from the
stored text on demand and cached, so indexing stays as cheap as without it).

A collection whose files fail a check on opening is *damaged*: it is listed with the reason,
every request to it answers 503 naming the file and the check, the others keep serving, and an
admin can delete it or restore it from a snapshot (``<data_dir>/.snapshots/<name>/<id>``).

A store is the data directory's writer or, with ``read_only=True``, a follower of the process
that writes it (indexer/datadir.py decides): a follower opens collections read-only, refuses
every write with ReadOnlyError, and catches up with ``refresh_all()`` — new records, new
collections, dropped and restored ones. It knows a collection by its directory's identity
(device, inode): a restore or a drop-and-create puts a new directory under the same name, which
a follower must open afresh rather than refresh (segment ids restart in the new one).
"""
from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoders.base import csr_from_rows
from encoders.multivector import fixed_projection, project_tokens
from indexer import Collection
from indexer.collection import CollectionNotFoundError
from indexer.collection_config import OPTIONS, CollectionConfig, check_document_id, check_name
from indexer.errors import CorruptionError, LockedError, ReadOnlyError
from indexer.seismic.config import SeismicParams

from . import lexical, models, raw_vectors
from .aliases import Aliases
from .encoder_cache import ENCODERS, EncoderCache
from .errors import BadRequest, Conflict, Damaged, NotFound

log = logging.getLogger("lsr.service")
BM25_ENCODER = "bm25-hashed"
SPARSE_KIND = "sparse_kind"  # the key of the sparse model's kind among a collection's encoders
_OPTION_NAMES = {opt.name for opt in OPTIONS}
SNAPSHOT_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")
READ_ONLY_MESSAGE = ("this process only reads the data directory: another process is its writer "
                     "(holds .writer.lock); send writes to that one (the REST API, or `lsr ... --url`)")


def token_dim(encoder_dim: int | None, wanted: int | None) -> int:
    """The dimension a collection stores token vectors at: the multivector encoder's, or a
    smaller one reached by the fixed projection (encoders.multivector.fixed_projection)."""
    if encoder_dim is None:
        raise BadRequest("index.store_token_vectors: needs a multivector_encoder (whose token vectors it stores)")
    if wanted is None:
        return encoder_dim
    if wanted > encoder_dim:
        raise BadRequest(f"index.token_dim: at most the multivector encoder's dimension ({encoder_dim}), "
                         f"got {wanted}")
    return wanted


@functools.lru_cache(maxsize=8)
def token_projection(encoder_dim: int, stored_dim: int):
    """The fixed projection from the encoder's token vectors to a collection's stored ones
    (None when they have the same dimension); queries go through the same one."""
    return None if stored_dim == encoder_dim else fixed_projection(encoder_dim, stored_dim)


def document_tokens(mv, token_dim: int, texts: list, batch_size: int) -> list:
    """Per text, the multivector encoder's token vectors through the fixed projection to
    ``token_dim`` (None for a document without text): what a collection that stores token
    vectors keeps, whether an upsert or a cluster bulk load encodes them."""
    out: list = [None] * len(texts)
    todo = [i for i, t in enumerate(texts) if t]
    if todo:
        weight = token_projection(mv.dim, token_dim)
        for i, t in zip(todo, mv.encode_documents([texts[i] for i in todo], batch_size=batch_size)):
            out[i] = project_tokens(t, weight)
    return out


def new_snapshot_id() -> str:
    """Sortable by time, unique by its random tail (SNAPSHOT_RE)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


class EncoderSet:
    """The encoders of one collection, each loaded when first used (None where the collection
    has no such field): a BM25 search must not wait for a neural model to load."""

    def __init__(self, cache: EncoderCache, names: dict, bm25: bool):
        self._cache, self._names, self.bm25 = cache, names, bm25

    def _get(self, kind: str):
        name = self._names.get(kind)
        if not name:
            return None
        enc = getattr(self._cache, kind)(name)
        if kind == "sparse":
            check_sparse_kind(self._cache, self._names)
        return enc

    @property
    def sparse(self):
        return self._get("sparse")

    @property
    def dense(self):
        return self._get("dense")

    @property
    def multivector(self):
        return self._get("multivector")

    @property
    def fields(self) -> list[str]:
        """The fields a search can use, in fusion order."""
        return [f for f, on in (("sparse", self._names.get("sparse")), ("bm25", self.bm25),
                                ("dense", self._names.get("dense"))) if on]


def check_sparse_kind(cache: EncoderCache, names: dict) -> None:
    """A collection's sparse vectors come from one model of one kind: if the registry now gives
    its model another kind (a replaced lsr-model.json), searches and upserts are refused rather
    than mixing vectors of two models. Collections from before kinds were recorded are SPLADE."""
    recorded = names.get(SPARSE_KIND) or "splade"
    now = cache.spec(names["sparse"]).kind
    if now != recorded:
        raise Conflict(f"the collection's sparse field was built by model {names['sparse']!r} as kind "
                       f"{recorded!r}, and that model is now of kind {now!r}: its queries and documents "
                       "would not match the stored vectors; restore the model or re-index into a new collection")


@dataclass(frozen=True)
class Damage:
    """Why a collection cannot be opened: the file (relative to the collection) and the check."""
    file: str | None
    check: str | None
    message: str

    def public(self) -> dict:
        return {"file": self.file, "check": self.check, "message": self.message}


class Store:
    remote = False  # its collections are in this process: a cheap read may run on the event loop
    def __init__(self, data_dir: Path, encoders: EncoderCache = ENCODERS, batch_size: int = 32,
                 wal_recovery: str = "tolerate_torn_tail", read_only: bool = False):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.snapshot_dir = self.data_dir / ".snapshots"
        self.encoders = encoders
        self.batch_size = batch_size
        self.wal_recovery = wal_recovery
        self.on_encode = None  # (encoder, "documents", texts, seconds) after each document batch
        self.read_only = read_only
        self._lock = threading.RLock()
        self._refreshing = threading.Lock()  # a follower's collections refresh one at a time
        self._open: dict[str, Collection] = {}
        self._damaged: dict[str, Damage] = {}
        self._identity: dict[str, tuple[int, int] | None] = {}  # of the directory opened, per name
        self.aliases = Aliases(self.data_dir)  # get() resolves them: service/aliases.py

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError(READ_ONLY_MESSAGE)

    # ---------------------------------------------------------------- collections
    def create(self, name: str, sparse: str | None, dense: str | None, multivector: str | None,
               bm25: bool = True, index: dict | None = None) -> Collection:
        self._check_writable()
        self.aliases.check_new_collection(name)
        if not (sparse or dense or bm25):
            raise BadRequest("a collection needs at least one of sparse_encoder, dense_encoder, bm25")
        index = dict(index or {})
        seismic = index.pop("seismic", {}) or {}
        unknown = sorted(set(index) - _OPTION_NAMES)
        if unknown:
            raise BadRequest(f"unknown index option(s) {unknown}; known: {sorted(_OPTION_NAMES | {'seismic'})}")
        try:
            SeismicParams.from_dict(seismic)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"index.seismic: {exc}") from None
        fields, names = {}, {}
        if sparse:
            kind = self.encoders.spec(sparse).kind
            fields["sparse"] = models.sparse_field(kind, self.encoders.sparse(sparse).dim, seismic)
            # the kind too: a model whose kind changed later cannot fill or search it (check_sparse_kind)
            names["sparse"], names[SPARSE_KIND] = sparse, kind
        if bm25:
            fields["bm25"] = {"kind": "sparse", "dim": lexical.DIM, "params": seismic}
            names["bm25"] = BM25_ENCODER
        if dense:
            fields["dense"] = {"kind": "dense", "dim": self.encoders.dense(dense).dim}
            names["dense"] = dense
        if multivector:
            mv = self.encoders.multivector(multivector)
            names["multivector"] = multivector
        if index.get("store_token_vectors") is not None:
            index["token_dim"] = token_dim(mv.dim if multivector else None, index.get("token_dim"))
        elif index.get("token_dim") is not None:
            raise BadRequest("index.token_dim: applies to stored token vectors; give store_token_vectors too")
        with self._lock:
            if name in self._damaged:
                raise Conflict(f"collection {name!r} exists (damaged): delete or restore it first")
            CollectionConfig.from_dict({"fields": fields, "encoders": names, **index})
            coll = Collection.create(self.data_dir, name, fields, encoders=names, **index)
            self._open[name] = coll
            return coll

    def names(self) -> list[str]:
        return Collection.list(self.data_dir)

    def open_all(self) -> None:
        """At the server's start: the writer finishes what a crash interrupted; then every
        collection is opened, so damage is found at once."""
        if not self.read_only:
            for action in Collection.recover_interrupted(self.data_dir):
                log.warning("data directory %s: %s", self.data_dir, action)
        for name in self.names():
            try:
                self.get(name)
            except (Damaged, Conflict, LockedError, NotFound):
                pass  # recorded (damage) or reported when used (locked, gone meanwhile)

    def damaged(self) -> dict[str, Damage]:
        with self._lock:
            return dict(self._damaged)

    def get(self, name: str) -> Collection:
        name = self.aliases.resolve(name)
        with self._lock:
            coll = self._open.get(name)
            if coll is not None:
                return coll
            if name in self._damaged:  # checked again on restart or restore (a follower: refresh)
                raise Damaged(name, self._damaged[name].message)
            identity = self._identify(name)  # before opening: a later replacement is then seen
            try:
                coll = Collection.open(self.data_dir, name, wal_recovery=self.wal_recovery,
                                       read_only=self.read_only)
            except CollectionNotFoundError:
                raise NotFound(f"collection {name!r} not found") from None
            except ValueError:  # not a valid collection name: it cannot exist
                raise NotFound(f"collection {name!r} not found") from None
            except CorruptionError as exc:
                self._identity[name] = identity
                raise self._record_damage(name, exc) from None
            self._damaged.pop(name, None)
            self._open[name] = coll
            self._identity[name] = identity
            return coll

    def _record_damage(self, name: str, exc: CorruptionError) -> Damaged:
        self._damaged[name] = damage = self._describe(name, exc)
        log.error("collection %r is damaged: %s (file %s, check %s); it answers 503 until "
                  "restored from a snapshot or deleted", name, damage.message, damage.file,
                  damage.check)
        return Damaged(name, damage.message)

    def _identify(self, name: str) -> tuple[int, int] | None:
        try:
            st = os.stat(self.data_dir / name)
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        return st.st_dev, st.st_ino

    # ---------------------------------------------------------------- follower
    def refresh_all(self) -> None:
        """A follower catches up with the writer: every collection it has open or knows as
        damaged, and every one created since."""
        with self._lock:
            known = set(self._open) | set(self._damaged)
        for name in sorted(known | set(self.names())):
            self.refresh(name)

    def refresh(self, name: str) -> None:
        """Catch up with one collection: new records or manifest; opened if it appeared (or was
        replaced: restored, or dropped and created again), forgotten if dropped. Damage found
        here is recorded as at opening; a restore (a new directory) clears it."""
        if not self.read_only:
            return
        with self._refreshing:
            with self._lock:
                coll, damaged = self._open.get(name), name in self._damaged
                now = self._identify(name)
                if (coll is not None or damaged) and (now is None or now != self._identity.get(name)):
                    self._forget(name)
                    coll = damaged = None
            if damaged:
                return
            if coll is None:
                if now is not None:
                    try:
                        self.get(name)
                    except (Damaged, NotFound):
                        pass  # recorded, or gone again meanwhile
                return
            try:
                coll.refresh()
            except CorruptionError as exc:
                with self._lock:
                    if self._identity.get(name) != self._identify(name):
                        self._forget(name)  # dropped or replaced while we read: not damage
                    elif self._open.get(name) is coll:
                        self._open.pop(name)
                        self._record_damage(name, exc)

    def _forget(self, name: str) -> None:
        """Drop a collection the writer removed or replaced. Not closed: searches running on
        it finish on the state they started with (a follower's collection holds no lock and
        no writable file; its memory goes with the last reference)."""
        self._open.pop(name, None)
        self._damaged.pop(name, None)
        self._identity.pop(name, None)

    def _describe(self, name: str, exc: CorruptionError) -> Damage:
        """The damage report, with paths relative to the collection (server paths stay private)."""
        root = str(self.data_dir.resolve() / name)
        rel = lambda p: os.path.relpath(p, root) if p and os.path.isabs(p) else p  # noqa: E731
        message = str(exc)
        for prefix in (root + os.sep, root, str(self.data_dir.resolve()), str(self.data_dir)):
            message = message.replace(prefix, "")
        return Damage(rel(exc.path), exc.check, message)

    def drop(self, name: str) -> None:
        """Delete a collection, damaged or not; not through an alias, nor while aliases point
        at it (they would break without a word)."""
        self._check_writable()
        self.aliases.check_droppable(name)
        with self._lock:
            if name not in self._damaged:
                self.get(name)  # 404 if unknown
                self._open.pop(name).close()
            Collection.drop(self.data_dir, name)
            self._damaged.pop(name, None)
            self._identity.pop(name, None)

    def close(self) -> None:
        with self._lock:
            for coll in self._open.values():
                coll.close()
            self._open.clear()
            self._identity.clear()

    # ---------------------------------------------------------------- snapshots
    def snapshot(self, name: str, snap_id: str | None = None) -> dict:
        """A consistent copy of a collection under .snapshots/<name>/<id>; returns its
        description. ``snap_id``: given by a cluster router, the same on every shard."""
        self._check_writable()
        coll = self.get(name)
        snap_id = snap_id or new_snapshot_id()
        if not SNAPSHOT_RE.fullmatch(snap_id):
            raise BadRequest(f"snapshot id {snap_id!r} is not of the form {SNAPSHOT_RE.pattern}")
        dest = self.snapshot_dir / name / snap_id
        coll.snapshot(dest, hard_links=False)  # a backup must not share inodes with live data
        return self._snapshot_info(name, dest)

    def snapshots(self, name: str) -> list[dict]:
        check_name(name)
        d = self.snapshot_dir / name
        if not d.is_dir():
            return []
        return [self._snapshot_info(name, p) for p in sorted(d.iterdir()) if SNAPSHOT_RE.fullmatch(p.name)]

    def _snapshot_path(self, name: str, snap_id: str) -> Path:
        path = self.snapshot_dir / check_name(name) / snap_id
        if not SNAPSHOT_RE.fullmatch(snap_id) or not path.is_dir():
            raise NotFound(f"snapshot {snap_id!r} of collection {name!r} not found")
        return path

    @staticmethod
    def _snapshot_info(name: str, path: Path) -> dict:
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return {"id": path.name, "collection": name, "bytes": size,
                "created": path.stat().st_mtime}

    def delete_snapshot(self, name: str, snap_id: str) -> None:
        self._check_writable()
        shutil.rmtree(self._snapshot_path(name, snap_id))

    def restore(self, name: str, snap_id: str, target: str | None = None) -> Collection:
        """Replace collection `name` (damaged, healthy or absent) with a snapshot of it; the old
        one stays in place until the restored one opens (Collection.restore). With `target`
        (another name), create that collection from the snapshot instead (409 if it exists)."""
        self._check_writable()
        src = self._snapshot_path(name, snap_id)
        if target is None or target == name:
            target, replace = name, True
        else:
            check_name(target)
            replace = False
        with self._lock:
            if not replace and (target in self._open or target in self._damaged
                                or (self.data_dir / target).exists()):
                raise Conflict(f"target: collection {target!r} exists; restore into a new name, "
                               f"or delete {target!r} first")
            coll = self._open.pop(target, None) if replace else None
            if coll is not None:
                coll.close()
            coll = Collection.restore(src, self.data_dir, target, replace=replace,
                                      wal_recovery=self.wal_recovery)
            self._damaged.pop(target, None)
            self._open[target] = coll
            self._identity[target] = self._identify(target)
            log.warning("collection %r restored from snapshot %s of %r", target, snap_id, name)
            return coll

    def snapshot_archive(self, name: str, snap_id: str):
        """A snapshot as a tar stream (an iterator of bytes; its files are open already)."""
        from .snapshot_archive import open_snapshot
        path = self._snapshot_path(name, snap_id)
        return open_snapshot(path, self._snapshot_info(name, path))

    def import_snapshot(self, name: str, fileobj) -> dict:
        """An uploaded snapshot archive becomes a new snapshot of collection `name` (which need
        not exist): unsafe or foreign archive members are refused (400), nothing is kept then."""
        from .snapshot_archive import import_archive
        self._check_writable()
        check_name(name)
        snap_id = new_snapshot_id()
        dest = self.snapshot_dir / name / snap_id
        import_archive(fileobj, dest)
        return self._snapshot_info(name, dest)

    def fetch_page(self, coll: Collection, hits: list) -> None:
        """Read the text and metadata of the hits a page shows, in one go: nothing to do here
        (each Hit reads its own from the local document store when asked); a cluster router
        (cluster/backend.py) fetches them from their shards, one call per shard."""

    def encoder_set(self, coll: Collection) -> EncoderSet:
        return EncoderSet(self.encoders, coll.config.encoders, "bm25" in coll.config.fields)

    # ---------------------------------------------------------------- documents
    def upsert(self, name: str, ids: list[str], texts: list[str | None], metadata: list[dict | None],
               vectors: list[dict | None] | None = None, bm25_avgdl: float | None = None) -> int:
        """Encode with every field's encoder and upsert; durable when this returns. ``vectors``:
        per document, precomputed vectors by field (service/raw_vectors.py) that take the place
        of encoding its text for those fields; all are checked before anything is encoded.
        ``bm25_avgdl``: the average document length to saturate BM25 weights with, instead of
        this collection's own (a cluster shard gets the whole collection's from the router)."""
        self._check_writable()
        coll = self.get(name)
        for doc_id in ids:  # before the costly encoding; the collection checks again
            check_document_id(doc_id)
        enc = self.encoder_set(coll)
        # {field: [vector or None]}; a model loads only when some text is left to encode
        given = raw_vectors.document_inputs(coll, enc, texts, vectors)
        out, lengths = {}, None
        if "sparse" in given:
            rows = given["sparse"]
            todo, m = self._encode_left(enc.sparse, rows, texts)
            if len(todo) == len(rows):
                out["sparse"] = m
            else:
                for j, i in enumerate(todo):
                    lo, hi = m.indptr[j], m.indptr[j + 1]
                    rows[i] = (m.indices[lo:hi], m.data[lo:hi])
                out["sparse"] = csr_from_rows(rows, coll.config.fields["sparse"].dim)
        if "bm25" in given:
            rows, lengths = lexical.fill_counts(given["bm25"], texts)
            avgdl = bm25_avgdl if bm25_avgdl is not None else self.bm25_avgdl(coll, lengths)
            out["bm25"] = lexical.saturate(rows, lengths, avgdl if avgdl > 0 else 1.0)
        if "dense" in given:
            rows = given["dense"]
            todo, m = self._encode_left(enc.dense, rows, texts)
            if len(todo) == len(rows):
                out["dense"] = m
            else:
                encoded = dict(zip(todo, m if todo else ()))
                out["dense"] = np.stack([r if r is not None else encoded[i] for i, r in enumerate(rows)]
                                        ).astype(np.float32, copy=False)
        tokens = self._document_tokens(coll, enc, texts)
        return coll.upsert(ids, out, texts=texts, metadata=metadata, lengths=lengths, tokens=tokens)

    def _document_tokens(self, coll: Collection, enc: EncoderSet, texts: list) -> list | None:
        """Token vectors to store for reranking (collections created with store_token_vectors):
        the multivector encoder's, through the collection's fixed projection; none for a
        document without text. None for collections that encode them per query instead."""
        if not coll.config.store_token_vectors:
            return None
        return document_tokens(enc.multivector, coll.config.token_dim, texts, self.batch_size)

    @staticmethod
    def bm25_avgdl(coll, lengths: np.ndarray, base: tuple[int, int] | None = None) -> float:
        """The average length BM25 saturates a batch with: over the live documents (``base``:
        their count and total length, default this collection's own) plus the batch."""
        if base is None:
            stats = coll.term_stats("bm25", ())  # counts only: no copy of the vocabulary
            base = (stats.n_docs, stats.total_length)
        n = base[0] + len(lengths)
        return (base[1] + int(np.sum(lengths))) / n if n else 1.0

    def _encode_left(self, encoder, rows: list, texts: list) -> tuple[list[int], object]:
        """The documents whose field has no client vector (``rows[i] is None``) and their
        encodings from the text, in one call (None when every document brought its vector)."""
        todo = [i for i, r in enumerate(rows) if r is None]
        if not todo:
            return todo, None
        t0 = time.perf_counter()
        out = encoder.encode_documents([texts[i] for i in todo], batch_size=self.batch_size)
        if self.on_encode is not None:  # the service's encoder histogram (observability.py)
            self.on_encode(encoder, "documents", len(todo), time.perf_counter() - t0)
        return todo, out

    def stats(self, name: str) -> dict:
        coll = self.get(name)
        out = coll.stats()
        out["bm25"] = "bm25" in coll.config.fields
        out["state"] = "ready"
        return out

    def describe(self, name: str) -> dict:
        """stats(), or for a damaged collection its name, state and the damage report."""
        try:
            return self.stats(name)
        except Damaged:
            return {"name": name, "state": "damaged", "damage": self._damaged[name].public()}
