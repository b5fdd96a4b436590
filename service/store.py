"""The collections of one data directory, opened once, with the encoders that fill them.

A collection has up to three vector fields, each filled by one encoder named at creation:
``sparse`` (SPLADE), ``bm25`` (hashed BM25, service/lexical.py) and ``dense`` (MiniLM); a
``multivector`` encoder, if named, reranks at query time (token vectors are computed from the
stored text on demand and cached, so indexing stays as cheap as without it).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from indexer import Collection
from indexer.collection import CollectionExistsError, CollectionLockedError, CollectionNotFoundError
from indexer.collection_config import CollectionConfig
from indexer.seismic.config import SeismicParams

from . import lexical
from .encoder_cache import ENCODERS, EncoderCache, EncoderLoadError
from .errors import BadRequest, Conflict, NotFound

BM25_ENCODER = "bm25-hashed"
_OPTION_NAMES = {"flush_docs", "exact_segment_docs", "max_segments", "merge_small_docs",
                 "merge_deleted_fraction", "filter_exact_docs"}


@dataclass
class EncoderSet:
    """The loaded encoders of one collection (None where the collection has no such field)."""
    sparse: object | None
    dense: object | None
    multivector: object | None
    bm25: bool

    @property
    def fields(self) -> list[str]:
        return [f for f, on in (("sparse", self.sparse), ("bm25", self.bm25), ("dense", self.dense)) if on]


class Store:
    def __init__(self, data_dir: Path, encoders: EncoderCache = ENCODERS, batch_size: int = 32):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.encoders = encoders
        self.batch_size = batch_size
        self._lock = threading.RLock()
        self._open: dict[str, Collection] = {}

    # ---------------------------------------------------------------- collections
    def create(self, name: str, sparse: str | None, dense: str | None, multivector: str | None,
               bm25: bool = True, index: dict | None = None) -> Collection:
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
        try:
            if sparse:
                fields["sparse"] = {"kind": "sparse", "dim": self.encoders.sparse(sparse).dim, "params": seismic}
                names["sparse"] = sparse
            if bm25:
                fields["bm25"] = {"kind": "sparse", "dim": lexical.DIM, "params": seismic}
                names["bm25"] = BM25_ENCODER
            if dense:
                fields["dense"] = {"kind": "dense", "dim": self.encoders.dense(dense).dim}
                names["dense"] = dense
            if multivector:
                self.encoders.multivector(multivector)
                names["multivector"] = multivector
        except EncoderLoadError as exc:
            raise BadRequest(str(exc)) from None
        with self._lock:
            try:
                CollectionConfig.from_dict({"fields": fields, "encoders": names, **index})
                coll = Collection.create(self.data_dir, name, fields, encoders=names, **index)
            except CollectionExistsError as exc:
                raise Conflict(str(exc)) from None
            except (TypeError, ValueError) as exc:
                raise BadRequest(str(exc)) from None
            self._open[name] = coll
            return coll

    def names(self) -> list[str]:
        return Collection.list(self.data_dir)

    def get(self, name: str) -> Collection:
        with self._lock:
            coll = self._open.get(name)
            if coll is not None:
                return coll
            try:
                coll = Collection.open(self.data_dir, name)
            except (CollectionNotFoundError, ValueError):
                raise NotFound(f"collection {name!r} not found") from None
            except CollectionLockedError as exc:
                raise Conflict(str(exc)) from None
            self._open[name] = coll
            return coll

    def drop(self, name: str) -> None:
        with self._lock:
            self.get(name)  # 404 if unknown
            self._open.pop(name).close()
            Collection.drop(self.data_dir, name)

    def close(self) -> None:
        with self._lock:
            for coll in self._open.values():
                coll.close()
            self._open.clear()

    def encoder_set(self, coll: Collection) -> EncoderSet:
        names = coll.config.encoders
        try:
            return EncoderSet(
                sparse=self.encoders.sparse(names["sparse"]) if names.get("sparse") else None,
                dense=self.encoders.dense(names["dense"]) if names.get("dense") else None,
                multivector=self.encoders.multivector(names["multivector"]) if names.get("multivector") else None,
                bm25="bm25" in coll.config.fields)
        except EncoderLoadError as exc:
            raise BadRequest(str(exc)) from None

    # ---------------------------------------------------------------- documents
    def upsert(self, name: str, ids: list[str], texts: list[str], metadata: list[dict | None]) -> int:
        """Encode with every field's encoder and upsert; durable when this returns."""
        coll = self.get(name)
        enc = self.encoder_set(coll)
        vectors, lengths = {}, None
        if enc.sparse is not None:
            vectors["sparse"] = enc.sparse.encode_documents(texts, batch_size=self.batch_size)
        if enc.bm25:
            stats = coll.term_stats("bm25")
            _, batch_lengths = lexical.encode_documents(texts, 1.0)
            n = stats.n_docs + len(texts)
            avgdl = (stats.total_length + int(batch_lengths.sum())) / n if n else 1.0
            vectors["bm25"], lengths = lexical.encode_documents(texts, avgdl)
        if enc.dense is not None:
            vectors["dense"] = enc.dense.encode_documents(texts, batch_size=self.batch_size)
        try:
            return coll.upsert(ids, vectors, texts=texts, metadata=metadata, lengths=lengths)
        except (TypeError, ValueError) as exc:
            raise BadRequest(str(exc)) from None

    def stats(self, name: str) -> dict:
        coll = self.get(name)
        out = coll.stats()
        out["bm25"] = "bm25" in coll.config.fields
        return out
