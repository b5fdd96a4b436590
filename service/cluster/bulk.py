"""Bulk indexing on Ray Data: read → encode on a pool of actors → group by shard → each shard's
writer installs sealed segments (Collection.install_segment: no WAL record per document).

    read (JSONL / Parquet / BEIR; a local path or any filesystem pyarrow reads)
      → records: id, text, metadata (sources.to_record, as `lsr index` reads them)
      → map_batches(Encode): the collection's encoders on `encoder_actors` actors (num_gpus each
        when asked), documents batched by tokens inside the encoders
      → materialize; the collection-wide BM25 average length (the shards' documents + these)
      → groupby(shard, bucket).map_groups(install): one batch per group, keyed
        "<source fingerprint>:<shard>:<bucket>/<buckets>"

Rerunning after a crash: groups are a function of the source and the document ids (not of how
Ray split the files), so a rerun forms the same batches and the writers skip those already
installed; a batch installed twice would still only replace its own documents (install_segment
is an upsert), so the collection ends with exactly the source's documents either way.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray

from encoders.base import csr_from_rows
from indexer.token_store import TokenRows, code_dtype, quantize_tokens

from .. import lexical, sources
from ..settings import Settings
from ..store import document_tokens
from .placement import shard_of
from .ray_app import NAMESPACE, RayShards, writer_name

DEFAULT_BATCH_DOCS = 1024  # documents per installed segment (before merges)


def _bucket(doc_id: str, shards: int, buckets: int) -> int:
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
    return (int.from_bytes(digest, "little") // shards) % buckets


def fingerprint(source: str, n: int) -> str:
    """Names the source in batch keys: its path or URI, size and modification time where local,
    and its record count."""
    parts = [source, str(n)]
    if os.path.exists(source):
        st = os.stat(source)
        parts += [str(st.st_size), str(int(st.st_mtime))]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=6).hexdigest()


def read_records(source: str, fmt: str | None = None):
    """A Dataset of (id, text, metadata JSON) records, normalised as `lsr index` does."""
    path = Path(source)
    local = path.exists()
    if local:
        fmt = sources.detect_format(path, fmt)
        if fmt == "beir":
            source = str(path / "corpus.jsonl")
    else:
        fmt = fmt or ("parquet" if source.lower().endswith((".parquet", ".pq")) else "jsonl")
    if fmt == "parquet":
        ds = ray.data.read_parquet(source)

        def norm(batch: pa.Table) -> pa.Table:
            return _records([sources.to_record(d, f"{source} row") for d in batch.to_pylist()])
    else:
        ds = ray.data.read_text(source)

        def norm(batch: pa.Table) -> pa.Table:
            out = []
            for line in batch.column("text").to_pylist():
                if line.strip():
                    try:
                        d = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{source}: invalid JSON line ({exc.msg}): {line[:80]!r}") from None
                    out.append(sources.to_record(d, source))
            return _records(out)
    return ds.map_batches(norm, batch_format="pyarrow", batch_size=4096), source


def _records(recs: list) -> pa.Table:
    return pa.table({"id": [r[0] for r in recs], "text": [r[1] for r in recs],
                     "metadata": [None if r[2] is None else json.dumps(r[2]) for r in recs]})


class Encode:
    """An encoder actor: the collection's models, loaded once; adds the vectors to a batch."""

    def __init__(self, settings: Settings, encoders: dict, fields: dict, shards: int, buckets: int,
                 batch_size: int, tokens: tuple[str, int] | None = None):
        settings.apply()
        from ..encoder_cache import ENCODERS
        self.sparse = ENCODERS.sparse(encoders["sparse"]) if "sparse" in fields else None
        self.dense = ENCODERS.dense(encoders["dense"]) if "dense" in fields else None
        # a collection that stores token vectors (store_token_vectors): the multivector
        # encoder's, through the collection's fixed projection, as Store.upsert stores them
        self.tokens = tokens
        if tokens is not None:
            self.multivector = ENCODERS.multivector(encoders["multivector"])
        self.bm25 = "bm25" in fields
        self.shards, self.buckets, self.batch_size = shards, buckets, batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = batch.column("id").to_pylist()
        texts = batch.column("text").to_pylist()
        cols = {name: batch.column(name) for name in batch.column_names}
        cols["shard"] = pa.array([shard_of(d, self.shards) for d in ids], pa.int32())
        cols["bucket"] = pa.array([_bucket(d, self.shards, self.buckets) for d in ids], pa.int32())
        if self.sparse is not None:
            m = self.sparse.encode_documents(texts, batch_size=self.batch_size).tocsr()
            cols["sparse_ids"] = _lists(m.indices.astype(np.int32), m.indptr, pa.int32())
            cols["sparse_values"] = _lists(m.data.astype(np.float32), m.indptr, pa.float32())
        if self.dense is not None:
            v = np.asarray(self.dense.encode_documents(texts, batch_size=self.batch_size), np.float32)
            cols["dense"] = pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), v.shape[1])
        if self.bm25:
            rows, lengths = lexical.count_rows(texts)
            ptr = np.concatenate([[0], np.cumsum([len(r[0]) for r in rows])]).astype(np.int64)
            flat_ids = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int32)
            flat_tf = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0)
            cols["bm25_ids"] = _lists(flat_ids.astype(np.int32), ptr, pa.int32())
            cols["bm25_tf"] = _lists(flat_tf.astype(np.float64), ptr, pa.float64())
            cols["length"] = pa.array(lengths, pa.int64())
        if self.tokens is not None:
            dtype, dim = self.tokens
            rows = quantize_tokens(document_tokens(self.multivector, dim, texts, self.batch_size), dtype, dim)
            # quantised here (int8: a quarter of float32 through the object store), one row of
            # raw codes and one list of per-token scales per document
            cols["token_codes"] = pa.array([rows.codes[rows.ptr[i]:rows.ptr[i + 1]].tobytes()
                                            for i in range(len(texts))], pa.binary())
            cols["token_scales"] = _lists(rows.scales.astype(np.float32), rows.ptr, pa.float32())
        return pa.table(cols)


def _lists(values: np.ndarray, ptr: np.ndarray, typ) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(np.asarray(ptr, np.int32)), pa.array(values, typ))


def _flat(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(values, row pointers) of a list column."""
    arr = col.combine_chunks()
    offsets = np.asarray(arr.offsets, dtype=np.int64)
    values = np.asarray(arr.values)[offsets[0]:offsets[-1]]
    return values, offsets - offsets[0]


class Install:
    """Installs one (shard, bucket) group as a sealed segment through the shard's writer."""

    def __init__(self, root: str, collection: str, fields: dict, dims: dict, shards: int, buckets: int,
                 source_id: str, avgdl: float | None, tokens: tuple[str, int] | None = None):
        self.collection, self.fields, self.dims, self.tokens = collection, fields, dims, tokens
        self.shards, self.buckets, self.source_id, self.avgdl = shards, buckets, source_id, avgdl
        self.writers = RayShards([ray.get_actor(writer_name(root, s), namespace=NAMESPACE)
                                  for s in range(shards)], [])

    def __call__(self, group: pa.Table) -> pa.Table:
        shard, bucket = int(group.column("shard")[0].as_py()), int(group.column("bucket")[0].as_py())
        ids = group.column("id").to_pylist()
        texts = group.column("text").to_pylist()
        meta = [None if m is None else json.loads(m) for m in group.column("metadata").to_pylist()]
        vectors, bm25_rows, lengths = {}, None, None
        if "sparse" in self.fields:
            vals, ptr = _flat(group.column("sparse_values"))
            idx, _ = _flat(group.column("sparse_ids"))
            rows = [(idx[ptr[i]:ptr[i + 1]], vals[ptr[i]:ptr[i + 1]]) for i in range(len(ids))]
            vectors["sparse"] = csr_from_rows(rows, self.dims["sparse"])
        if "dense" in self.fields:
            col = group.column("dense").combine_chunks()
            vectors["dense"] = np.asarray(col.values, np.float32).reshape(len(ids), -1)
        if "bm25" in self.fields:
            tf, ptr = _flat(group.column("bm25_tf"))
            idx, _ = _flat(group.column("bm25_ids"))
            bm25_rows = [(idx[ptr[i]:ptr[i + 1]], tf[ptr[i]:ptr[i + 1]]) for i in range(len(ids))]
            lengths = np.asarray(group.column("length").to_numpy(), np.int64)
        tokens = None
        if self.tokens is not None:
            dtype, dim = self.tokens
            scales, ptr = _flat(group.column("token_scales"))
            codes = np.frombuffer(b"".join(group.column("token_codes").to_pylist()), code_dtype(dtype))
            tokens = TokenRows(dtype, ptr.astype(np.int64), codes.reshape(-1, dim).copy(),
                               np.asarray(scales, np.float32))
        key = f"bulk:{self.source_id}:{shard}:{bucket}/{self.buckets}"
        done = self.writers.write_many([(shard, "install", (self.collection, key, ids, texts, meta, vectors,
                                                            bm25_rows, lengths, self.avgdl, tokens))])[0]
        return pa.table({"shard": [shard], "documents": [len(ids)], "installed": [bool(done)]})


def bulk_index(source: str, collection: str, *, root=None, settings: Settings | None = None, fmt: str | None = None,
               encoder_actors: int = 1, encoder_cpus: float = 1.0, encoder_gpus: float = 0.0,
               batch_docs: int = DEFAULT_BATCH_DOCS, encode_batch_rows: int = 256) -> dict:
    """Index ``source`` into an existing collection of the cluster at ``root`` (default the
    settings' data directory); returns counts and timings. The cluster's writers must be
    running (`lsr cluster serve`, or ray_app.start_writers)."""
    settings = settings or Settings()
    root = str(Path(root or settings.data_dir).resolve())
    t0 = time.perf_counter()
    try:
        shard0 = ray.get_actor(writer_name(root, 0), namespace=NAMESPACE)
    except ValueError:
        raise ValueError(f"no cluster writers of {root} are running: start the cluster first "
                         "(`lsr cluster serve --root ...`)") from None
    shards = ray.get(shard0.call.remote("layout", ()))["shards"]
    writers = RayShards([ray.get_actor(writer_name(root, s), namespace=NAMESPACE) for s in range(shards)], [])
    config = ray.get(shard0.call.remote("config", (collection,)))
    fields = {f: spec["kind"] for f, spec in config["fields"].items()}
    dims = {f: spec["dim"] for f, spec in config["fields"].items()}
    tokens = (config["store_token_vectors"], config["token_dim"]) if config.get("store_token_vectors") else None
    records, source = read_records(source, fmt)
    records = records.materialize()
    n = records.count()
    if n == 0:
        return {"documents": 0, "batches": 0, "installed": 0, "skipped": 0, "seconds": 0.0}
    buckets = max(1, math.ceil(n / shards / batch_docs))
    # enough blocks for every encoder actor to have work (one file reads as one block)
    records = records.repartition(max(1, min(math.ceil(n / encode_batch_rows), 8 * encoder_actors)))
    encoded = records.map_batches(
        Encode, batch_format="pyarrow", batch_size=encode_batch_rows, concurrency=encoder_actors,
        num_cpus=encoder_cpus, num_gpus=encoder_gpus,
        fn_constructor_kwargs=dict(settings=settings, encoders=config["encoders"], fields=fields,
                                   shards=shards, buckets=buckets, batch_size=settings.encode_batch_size,
                                   tokens=tokens)
    ).materialize()
    t_encoded = time.perf_counter()
    avgdl = None
    if "bm25" in fields:  # the shards' live documents and these together, as a single node would
        parts = writers.write_many([(s, "term_stats", (collection, "bm25", ())) for s in range(shards)])
        base_n, base_total = sum(p[0] for p in parts), sum(p[1] for p in parts)
        avgdl = (base_total + int(encoded.sum("length"))) / (base_n + n)
    done = encoded.groupby(["shard", "bucket"]).map_groups(
        Install, batch_format="pyarrow", concurrency=max(1, min(shards, 4)), num_cpus=0.1,
        fn_constructor_kwargs=dict(root=root, collection=collection, fields=fields, dims=dims, shards=shards,
                                   buckets=buckets, source_id=fingerprint(source, n), avgdl=avgdl,
                                   tokens=tokens)
    ).take_all()
    writers.write_many([(s, "wait", (collection,)) for s in range(shards)])
    installed = sum(r["installed"] for r in done)
    return {"documents": n, "batches": len(done), "installed": installed, "skipped": len(done) - installed,
            "encode_seconds": round(t_encoded - t0, 3), "seconds": round(time.perf_counter() - t0, 3)}

