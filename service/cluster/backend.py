"""The router's side of a sharded collection: ``ClusterStore`` and ``ShardedCollection`` are the
Store and Collection that the routes, the job manager and the search pipeline already use
(service/store.py, indexer/collection.py), over S shards. One route layer, two backends.

- Placement: a document lives on shard ``shard_of(id)``; writes go to its writer, grouped per
  shard and sent side by side. A write batch is checked whole before any shard gets its part
  (ids, raw vectors, duplicates), so bad input stores nothing anywhere.
- Search: every list scatters to one reader replica per shard, each returns its own top k, and
  the router merges (score, then id: the single node's tie order). The pipeline above fuses,
  reranks and pages exactly as on one node; a page's texts are fetched from their shards in one
  call per shard (``fetch_page``).
- BM25 with global statistics: query IDF uses document frequencies, document count and total
  length summed over the shards (cached per collection, dropped when this router writes and
  after STATS_TTL_S for writes from elsewhere); document weights are saturated with the
  collection-wide average length, computed here for each upsert batch. So a sharded collection
  scores exactly as a single node holding the same documents.
- Read-your-writes: every write to a shard gives it a new token; reads carry it, and a replica
  that has not seen it catches up first (shard.py).
"""
from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import numpy as np

from indexer.collection import Document, Hit, TermStats
from indexer.collection_config import CollectionConfig, check_document_id
from indexer.errors import NotFoundError
from indexer.facets import FacetCounts
from indexer.filters import Filter
from indexer.query import DEFAULTS
from indexer.token_store import TokenRows

from .. import lexical, raw_vectors
from ..aliases import Aliases
from ..errors import BadRequest, Conflict, Damaged, NotFound, NotSupported
from ..store import Damage, EncoderSet, Store, new_snapshot_id
from .placement import group_by_shard
from .transport import Shards

STATS_TTL_S = 1.0  # how stale global BM25 statistics may be after writes from elsewhere
# each shard returns the text and metadata of its best hits with them: a page (k's default, 10)
# then costs one round trip per shard instead of two (fetch_page gets whatever else is shown)
PREFETCH = 10


_SUMMED = ("documents", "segments", "tombstones", "buffer_documents", "wal_bytes", "bytes", "generation")


def merge_stats(parts: list[dict]) -> dict:
    """One collection's stats over its shards: counts summed, per-segment lists joined."""
    out = dict(parts[0])
    for key in _SUMMED:
        if key in out:
            out[key] = sum(p.get(key, 0) for p in parts)
    if "segment_documents" in out:
        out["segment_documents"] = [n for p in parts for n in p.get("segment_documents", [])]
    if isinstance(out.get("activity"), dict):
        out["activity"] = {k: sum(p["activity"].get(k, 0) for p in parts) for k in out["activity"]}
    if isinstance(out.get("token_vectors"), dict):
        tv = [p["token_vectors"] for p in parts]
        rows = sum(round(t["bytes"] / t["bytes_per_document"]) for t in tv if t["bytes_per_document"])
        nbytes, tokens = sum(t["bytes"] for t in tv), sum(t["tokens"] for t in tv)
        out["token_vectors"] = {**tv[0], "tokens": tokens, "bytes": nbytes,
                                "bytes_per_document": nbytes / rows if rows else 0.0,
                                "bytes_per_token": nbytes / tokens if tokens else 0.0,
                                "tokens_per_document": tokens / rows if rows else 0.0}
    out["shards"] = len(parts)
    return out


class ClusterHit(Hit):
    """A hit from a shard: its text and metadata come from that shard when first asked for
    (the pipeline asks for a whole page at once: ClusterStore.fetch_page)."""

    __slots__ = ("shard", "_coll")

    def __init__(self, doc_id: str, score: float, shard: int, coll: "ShardedCollection"):
        self.id, self.score, self.shard, self._coll, self._doc = doc_id, score, shard, coll, None
        self._rows, self._row = None, -1

    def _fetch(self) -> tuple:
        if self._doc is None:
            self._coll.store.fetch_page(self._coll, [self])
        return self._doc


class ShardedCollection:
    """A collection spread over the shards, with the Collection methods the service uses."""

    def __init__(self, store: "ClusterStore", name: str, config: CollectionConfig):
        self.store, self.name, self.config = store, name, config

    @property
    def shards(self) -> Shards:
        return self.store.shards

    def _read_all(self, method: str, *args) -> list:
        st = self.store
        return self.shards.read_many([(s, method, (self.name, *args, st.token(s)))
                                      for s in range(self.shards.count)])

    # ---------------------------------------------------------------- search
    def _gather(self, parts: list[list[tuple]], k: int) -> list[ClusterHit]:
        merged = [(-score, doc_id, s, doc) for s, part in enumerate(parts) for doc_id, score, doc in part]
        merged.sort(key=lambda m: (m[0], m[1]))
        out = []
        for neg, doc_id, s, doc in merged[:k]:
            hit = ClusterHit(doc_id, -neg, s, self)
            hit._doc = doc
            out.append(hit)
        return out

    def search(self, q_indices, q_values, k: int = DEFAULTS.k, *, field: str | None = None, filter=None,
               query_cut: int | None = None, heap_factor: float | None = None) -> list[Hit]:
        field = field or self.config.sparse_fields[0]
        q_ids = np.asarray(q_indices, dtype=np.int32)
        q_vals = np.asarray(q_values, dtype=np.float32)
        return self._gather(self._read_all("search", field, q_ids, q_vals, k, filter, query_cut,
                                           heap_factor, min(k, PREFETCH)), k)

    def search_dense(self, vector, k: int = 10, *, field: str | None = None, filter=None) -> list[Hit]:
        field = field or next(n for n, s in self.config.fields.items() if s.kind == "dense")
        return self._gather(self._read_all("search_dense", field, np.asarray(vector, np.float32), k, filter,
                                           min(k, PREFETCH)), k)

    def term_stats(self, field: str | None = None, terms=None) -> TermStats:
        return self.store.global_stats(self, field or self.config.sparse_fields[0], terms)

    def facet_counts(self, key: str, filter=None, ids=None) -> dict:
        """Value counts of a metadata key (indexer/facets.py) summed over the shards: over the
        filtered collection, or over the given ids (each asked of its own shard)."""
        st = self.store
        if ids is None:
            parts = self._read_all("facet_counts", key, filter, None)
        else:
            groups = group_by_shard(list(ids), self.shards.count)
            parts = self.shards.read_many([(s, "facet_counts", (self.name, key, filter, [ids[i] for i in pos],
                                                                st.token(s))) for s, pos in groups.items()])
        total = FacetCounts()
        for part in parts:
            total.add(part)
        return total.as_dict()

    def token_vectors(self, ids: list[str]):
        """Stored token vectors for reranking (indexer/token_store.py), from each id's shard, in
        the order asked; None when the collection stores none."""
        if not self.config.store_token_vectors:
            return None
        groups = group_by_shard(list(ids), self.shards.count)
        st = self.store
        parts = self.shards.read_many([(s, "token_vectors", (self.name, [ids[i] for i in pos], st.token(s)))
                                       for s, pos in groups.items()])
        stacked = TokenRows.concat(parts, self.config.store_token_vectors, self.config.token_dim)
        order = [i for pos in groups.values() for i in pos]  # stacked row j holds ids[order[j]]
        where = np.empty(len(ids), dtype=np.int64)
        where[order] = np.arange(len(order))
        return stacked.take(where)

    # ---------------------------------------------------------------- documents
    def get(self, doc_id: str) -> Document | None:
        return self.get_many([doc_id])[0]

    def get_many(self, ids: list[str]) -> list[Document | None]:
        groups = group_by_shard(ids, self.shards.count)
        st = self.store
        parts = self.shards.read_many([(s, "get", (self.name, [ids[i] for i in pos], st.token(s)))
                                       for s, pos in groups.items()])
        out: list = [None] * len(ids)
        for (s, pos), docs in zip(groups.items(), parts):
            for i, doc in zip(pos, docs):
                out[i] = doc
        return out

    def ids(self, filter=None) -> list[str]:
        flt = filter if isinstance(filter, Filter) or filter is None else Filter.parse(filter)
        return [d for part in self._read_all("ids", flt) for d in part]

    def __len__(self) -> int:
        return self.stats()["documents"]

    def stats(self) -> dict:
        return self.store.stats(self.name)

    def delete(self, ids) -> int:
        ids = [ids] if isinstance(ids, str) else list(ids)
        groups = group_by_shard(ids, self.shards.count)
        done = self.store.write_many([(s, "delete", (self.name, [ids[i] for i in pos]))
                                      for s, pos in groups.items()])
        return sum(done)

    def delete_where(self, filter) -> int:
        flt = Filter.parse(filter)  # 400 here, before any shard deletes anything
        if flt is None or not flt.conditions:
            raise BadRequest("filter: give at least one condition (to delete everything, drop the collection)")
        return sum(self.store.write_many([(s, "delete_where", (self.name, flt))
                                          for s in range(self.shards.count)]))

    def update_metadata(self, updates: dict, merge: bool = True) -> int:
        ids = list(updates)
        for doc_id, doc in zip(ids, self.get_many(ids)):  # all or nothing: check every id first
            if doc is None:
                raise NotFound(f"document {doc_id!r} not found in collection {self.name!r}")
        groups = group_by_shard(ids, self.shards.count)
        return sum(self.store.write_many([(s, "update_metadata", (self.name, {ids[i]: updates[ids[i]] for i in pos},
                                                                  merge)) for s, pos in groups.items()]))


class ClusterStore:
    """The collections of a cluster, as service/store.py's Store presents one data directory."""

    read_only = False
    remote = True  # every read waits on shard processes: never on the event loop

    def __init__(self, root, shards: Shards, encoders, batch_size: int = 32):
        self.data_dir = Path(root)  # the router's own state: aliases, job records
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.shards = shards
        self.encoders = encoders
        self.batch_size = batch_size
        self.aliases = Aliases(self.data_dir)
        self._id = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._writes = [0] * shards.count
        self._configs: dict[str, CollectionConfig] = {}
        self._stats: dict[tuple[str, str], dict] = {}

    # ---------------------------------------------------------------- tokens and writes
    def token(self, shard: int) -> tuple[str, int]:
        return self._id, self._writes[shard]

    def write_many(self, calls: list) -> list:
        """Writes to shard writers, side by side; afterwards their readers must catch up."""
        try:
            return self.shards.write_many(calls)
        finally:
            with self._lock:
                for s in {c[0] for c in calls}:
                    self._writes[s] += 1
                self._stats.clear()

    def _forget(self, name: str) -> None:
        with self._lock:
            self._configs.pop(name, None)
            self._stats.clear()

    # ---------------------------------------------------------------- collections
    def names(self) -> list[str]:
        parts = self.shards.read_many([(s, "names", (self.token(s),)) for s in range(self.shards.count)])
        return sorted(set().union(*parts))

    def damaged(self) -> dict[str, Damage]:
        out: dict[str, Damage] = {}
        parts = self.shards.read_many([(s, "damaged", ()) for s in range(self.shards.count)])
        for s, part in enumerate(parts):
            for name, d in part.items():
                out.setdefault(name, Damage(d["file"], d["check"], f"shard {s}: {d['message']}"))
        return out

    def create(self, name: str, sparse, dense, multivector, bm25: bool = True, index: dict | None = None):
        self.aliases.check_new_collection(name)
        if name in self.names():
            raise Conflict(f"collection {name!r} already exists")
        self._forget(name)
        args = (name, sparse, dense, multivector, bm25, index)
        self.write_many([(0, "create", args)])  # bad input is refused here, before other shards
        rest = [(s, "create", (*args, True)) for s in range(1, self.shards.count)]
        try:
            self.write_many(rest)
        except BaseException:
            self.write_many([(s, "drop", (name, True)) for s in range(self.shards.count)])
            raise
        return self.get(name)

    def get(self, name: str) -> ShardedCollection:
        name = self.aliases.resolve(name)
        with self._lock:
            config = self._configs.get(name)
        if config is None:
            try:
                d = self.shards.read_many([(0, "config", (name, self.token(0)))])[0]
            except NotFoundError:
                raise NotFound(f"collection {name!r} not found") from None
            config = CollectionConfig.from_dict(d)
            with self._lock:
                self._configs[name] = config
        return ShardedCollection(self, name, config)

    def drop(self, name: str) -> None:
        self.aliases.check_droppable(name)
        if name not in self.names():
            raise NotFound(f"collection {name!r} not found")
        self._forget(name)
        self.write_many([(s, "drop", (name, True)) for s in range(self.shards.count)])

    def stats(self, name: str) -> dict:
        name = self.aliases.resolve(name)
        parts = self.shards.read_many([(s, "describe", (name, self.token(s))) for s in range(self.shards.count)])
        for s, p in enumerate(parts):
            if p.get("state") == "damaged":
                raise Damaged(name, f"shard {s}: {p['damage']['message']}")
        return merge_stats(parts)

    def describe(self, name: str) -> dict:
        parts = self.shards.read_many([(s, "describe", (name, self.token(s))) for s in range(self.shards.count)])
        for s, p in enumerate(parts):
            if p.get("state") == "damaged":
                return {**p, "damage": {**p["damage"], "message": f"shard {s}: {p['damage']['message']}"}}
        return merge_stats(parts)

    def encoder_set(self, coll) -> EncoderSet:
        return EncoderSet(self.encoders, coll.config.encoders, "bm25" in coll.config.fields)

    def close(self) -> None:
        self.shards.close()

    def refresh_all(self) -> None:  # the shards' readers catch up by themselves
        return None


    # ---------------------------------------------------------------- documents
    def upsert(self, name: str, ids: list[str], texts: list, metadata: list, vectors: list | None = None) -> int:
        coll = self.get(name)
        seen = set()
        for doc_id in ids:
            check_document_id(doc_id)
            if doc_id in seen:  # within a shard the collection refuses it; across shards, here
                raise BadRequest(f"document id {doc_id!r} appears twice in one call")
            seen.add(doc_id)
        enc = self.encoder_set(coll)
        given = raw_vectors.document_inputs(coll, enc, texts, vectors)  # 400s before any shard writes
        avgdl = None
        if "bm25" in given:
            _, lengths = lexical.fill_counts(given["bm25"], texts)
            stats = self.global_stats(coll, "bm25", (), fresh=True)
            avgdl = Store.bm25_avgdl(None, lengths, (stats.n_docs, stats.total_length))
        groups = group_by_shard(ids, self.shards.count)
        pick = lambda xs, pos: None if xs is None else [xs[i] for i in pos]  # noqa: E731
        calls = [(s, "upsert", (coll.name, pick(ids, pos), pick(texts, pos), pick(metadata, pos),
                                pick(vectors, pos), avgdl)) for s, pos in groups.items()]
        return sum(self.write_many(calls))

    def fetch_page(self, coll, hits: list) -> None:
        """The text and metadata of these hits, one call per shard."""
        todo = [h for h in hits if isinstance(h, ClusterHit) and h._doc is None]
        if not todo:
            return
        by_shard: dict[int, list] = {}
        for h in todo:
            by_shard.setdefault(h.shard, []).append(h)
        parts = self.shards.read_many([(s, "fetch", (coll.name, [h.id for h in hs], self.token(s)))
                                       for s, hs in by_shard.items()])
        for hs, docs in zip(by_shard.values(), parts):
            for h, doc in zip(hs, docs):
                h._doc = doc if doc is not None else (None, None)  # deleted since the search

    def global_stats(self, coll, field: str, terms=None, fresh: bool = False) -> TermStats:
        """Term statistics summed over the shards (module docstring: BM25 with global statistics)."""
        key = (coll.name, field)
        now = time.monotonic()
        with self._lock:
            entry = self._stats.get(key)
            if entry is None or fresh or now - entry["at"] > STATS_TTL_S:
                entry = self._stats[key] = {"at": now, "n": None, "total": None, "df": {}}
        if terms is None:  # the whole vocabulary: not cached
            parts = coll._read_all("term_stats", field, None)
            return TermStats(sum(p[0] for p in parts), sum(p[1] for p in parts), sum(p[2] for p in parts))
        terms = np.asarray(terms, dtype=np.int64)
        df = entry["df"]
        missing = np.array([t for t in terms.tolist() if t not in df], dtype=np.int64)
        if entry["n"] is None or missing.size:
            parts = coll._read_all("term_stats", field, missing)
            with self._lock:
                entry["n"] = sum(p[0] for p in parts)
                entry["total"] = sum(p[1] for p in parts)
                counts = sum(np.asarray(p[2], np.int64) for p in parts)
                for t, c in zip(missing.tolist(), np.atleast_1d(counts).tolist() if missing.size else []):
                    df[t] = int(c)
        return TermStats(entry["n"], entry["total"], np.array([df[t] for t in terms.tolist()], dtype=np.int64))

    # ---------------------------------------------------------------- snapshots
    def snapshot(self, name: str) -> dict:
        name = self.aliases.resolve(name)
        self.get(name)
        snap_id = new_snapshot_id()
        parts = self.write_many([(s, "snapshot", (name, snap_id)) for s in range(self.shards.count)])
        return {**parts[0], "bytes": sum(p["bytes"] for p in parts)}

    def snapshots(self, name: str) -> list[dict]:
        """The snapshots every shard has (a snapshot is complete only then)."""
        parts = self.shards.write_many([(s, "snapshots", (name,)) for s in range(self.shards.count)])
        by_id: dict[str, list[dict]] = {}
        for part in parts:
            for info in part:
                by_id.setdefault(info["id"], []).append(info)
        return [{**infos[0], "bytes": sum(i["bytes"] for i in infos)}
                for snap_id, infos in sorted(by_id.items()) if len(infos) == self.shards.count]

    def delete_snapshot(self, name: str, snap_id: str) -> None:
        if snap_id not in {s["id"] for s in self.snapshots(name)}:
            raise NotFound(f"snapshot {snap_id!r} of collection {name!r} not found")
        self.write_many([(s, "delete_snapshot", (name, snap_id)) for s in range(self.shards.count)])

    def restore(self, name: str, snap_id: str, target: str | None = None):
        if snap_id not in {s["id"] for s in self.snapshots(name)}:
            raise NotFound(f"snapshot {snap_id!r} of collection {name!r} not found")
        target = target or name
        if target != name and target in self.names():
            raise Conflict(f"target: collection {target!r} exists; restore into a new name, "
                           f"or delete {target!r} first")
        self._forget(target)
        self.write_many([(s, "restore", (name, snap_id, target)) for s in range(self.shards.count)])
        return self.get(target)

    def snapshot_archive(self, name: str, snap_id: str):
        raise NotSupported("snapshot archives are per shard on a cluster: copy "
                           f"<shard dir>/.snapshots/{name}/{snap_id} of every shard instead")

    def import_snapshot(self, name: str, fileobj) -> dict:
        raise NotSupported("uploading a snapshot archive is not available on a cluster: place each "
                           "shard's snapshot under <shard dir>/.snapshots/<name>/ and restore it by id")


class RouterRole:
    """What a cluster router runs besides the app: the job manager (jobs upsert through the
    ClusterStore, so they are sharded like any write); no writer lock of its own."""
    name = "router"
    forwarder = None

    def __init__(self, settings, store: ClusterStore):
        from ..jobs import JobManager
        self.store = store
        self.jobs = JobManager(store, store.data_dir / ".jobs", settings.job_chunk_docs, settings.import_dir)

    def start(self) -> None:
        self.jobs.start()

    async def stop(self) -> None:
        self.jobs.stop()
        self.store.close()

    def public(self) -> dict:
        return {"role": self.name, "shards": self.store.shards.count}


def local_backend(root, shards: int):
    """A sharded cluster in this process (no Ray): a writer and a reader ShardService per shard
    under ``root``. For development and the tests of the sharding logic; ray_app.py deploys
    the same pieces as Ray actors and Serve replicas."""
    from ..encoder_cache import ENCODERS
    from .placement import shard_dir
    from .shard import ShardService
    from .transport import LocalShards

    def backend(settings):
        writers = [ShardService(shard_dir(root, s), writer=True, settings=settings) for s in range(shards)]
        readers = [ShardService(shard_dir(root, s), writer=False, settings=settings) for s in range(shards)]
        store = ClusterStore(root, LocalShards(writers, readers), ENCODERS, settings.encode_batch_size)
        return store, RouterRole(settings, store)
    return backend
