"""Sealed segments: immutable directories of indexes, dense vectors and a document store.

    seg-000007/
      segment.json     row count, per-field index kind, checksums of the other files
      docs.arrow       ids, versions (seq), text, metadata, lengths (docstore.py)
      <field>/         one index directory per sparse field (Seismic, or Exact when small),
                       or a "dense" array directory per dense field (storage.py format)
      tokens/          stored token vectors for reranking, if the collection keeps them
                       (token_store.py: ptr, codes, scales; storage.py format, memory-mapped)

A segment is written in a hidden temporary directory and renamed into place only when every
file is fsync'd; the collection manifest then lists it. A directory that the manifest does
not list is the leftover of an interrupted flush or merge and is removed on open.
Deleted and superseded rows are not removed from a segment: the collection keeps an `alive`
mask per segment (replaced, never mutated in place, so a search holding the old mask reads a
consistent state) and persists it as tombstones.
"""
from __future__ import annotations

import copy
import math
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from . import crashpoints
from .atomic import crc32_file, fsync_dir, read_json_checked, write_json_atomic
from .dense_index import DenseVectors, quantize
from .docstore import DocTable, write_docs
from .exact import ExactIndex
from .filters import MetadataColumns
from .query import SearchParams, SparseQuery
from .scoring import score_rows, top_k
from .seismic.index import SeismicIndex
from .storage import IndexFormatError, load_arrays, save_arrays
from .token_store import TokenRows

SEGMENT_FORMAT_VERSION = 1


def segment_dir_name(seg_id: int) -> str:
    return f"seg-{seg_id:06d}"


class BuildCancelled(Exception):
    """write_segment stopped because its ``cancelled()`` said so; nothing was left behind."""


def write_segment(parent: Path, seg_id: int, config, ids: list[str], seqs: np.ndarray,
                  vectors: dict, texts: list, metadata: list, lengths: np.ndarray,
                  cancelled=None, tokens: TokenRows | None = None) -> Path:
    """Build indexes for the rows and write the segment directory atomically; returns its path.
    ``tokens``: the rows' stored token vectors (collections with store_token_vectors; none
    given: every row gets an empty slice).
    ``cancelled()``, if given, is asked before each field's index and before the document store
    (an index build itself runs to its end): True raises BuildCancelled."""
    def check() -> None:
        if cancelled is not None and cancelled():
            raise BuildCancelled(f"building segment {seg_id} was cancelled")
    n = len(ids)
    final = parent / segment_dir_name(seg_id)
    tmp = parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        field_info = {}
        for name, spec in config.fields.items():
            check()
            m = vectors[name]
            if spec.kind == "dense":
                m = np.ascontiguousarray(m, np.float32)
                codes, scales = quantize(m)
                save_arrays(tmp / name, "dense", {"vectors": m, "codes": codes, "scales": scales},
                            {"n_docs": n, "dim": spec.dim})
                field_info[name] = "dense"
                continue
            m = sp.csr_matrix(m, shape=(n, spec.dim))
            if spec.index == "exact" or n < config.exact_segment_docs or m.nnz == 0:
                idx, kind = _exact_with_shape(m), "exact"
            else:
                idx, kind = SeismicIndex.build(m, **spec.params), "seismic"
            idx.save(tmp / name)
            field_info[name] = kind
        token_kind = None
        if config.store_token_vectors:
            check()
            t = tokens if tokens is not None else TokenRows.empty(config.store_token_vectors,
                                                                   config.token_dim, n)
            if t.n_docs != n:
                raise ValueError(f"token vectors of {t.n_docs} rows for a segment of {n}")
            save_arrays(tmp / "tokens", "tokens", {"ptr": t.ptr, "codes": t.codes, "scales": t.scales},
                        {"dtype": t.dtype, "dim": int(t.dim), "n_docs": n})
            token_kind = t.dtype
        check()
        write_docs(tmp / "docs.arrow", ids, seqs, texts, metadata, lengths)
        with open(tmp / "docs.arrow", "rb+") as f:
            os.fsync(f.fileno())
        crashpoints.step("segment.docs.fsync")
        files = {"docs.arrow": {"bytes": (tmp / "docs.arrow").stat().st_size,
                                "crc32": crc32_file(tmp / "docs.arrow")}}
        write_json_atomic(tmp / "segment.json", {
            "format": "lsr-search-segment", "format_version": SEGMENT_FORMAT_VERSION,
            "id": seg_id, "n_rows": n, "fields": field_info, "files": files, "tokens": token_kind})
        fsync_dir(tmp)
        os.rename(tmp, final)
        crashpoints.step("segment.rename")
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _exact_with_shape(m: sp.csr_matrix) -> ExactIndex:
    if m.nnz:
        return ExactIndex.build(m)
    # ExactIndex.build refuses an all-empty matrix; an empty inverted index is still valid
    arrays = {"col_ptr": np.zeros(m.shape[1] + 1, np.int64), "col_docs": np.zeros(0, np.int32),
              "col_vals": np.zeros(0, np.float32)}
    return ExactIndex(arrays, m.shape[0], m.shape[1])


class Segment:
    """A loaded sealed segment; `alive` is set by the collection."""

    def __init__(self, path: Path, config):
        self.path = Path(path)
        meta = read_json_checked(self.path / "segment.json", "segment manifest")
        if meta.get("format") != "lsr-search-segment" or meta.get("format_version") != SEGMENT_FORMAT_VERSION:
            raise IndexFormatError(f"{self.path} is not a segment of format version {SEGMENT_FORMAT_VERSION}",
                                   path=self.path / "segment.json", check="format version")
        for fname, info in meta["files"].items():
            fp = self.path / fname
            if not fp.is_file() or fp.stat().st_size != info["bytes"]:
                raise IndexFormatError(f"segment file {fp} is missing or truncated", path=fp, check="size")
            if crc32_file(fp) != info["crc32"]:
                raise IndexFormatError(f"segment file {fp} is corrupted (checksum mismatch)", path=fp,
                                       check="checksum")
        self.id = int(meta["id"])
        self.n_rows = int(meta["n_rows"])
        if set(meta["fields"]) != set(config.fields):
            raise IndexFormatError(f"segment {self.path} has fields {sorted(meta['fields'])}, the "
                                   f"collection {sorted(config.fields)}", path=self.path, check="fields")
        self.docs = DocTable(self.path / "docs.arrow")
        if len(self.docs) != self.n_rows:
            raise IndexFormatError(f"segment {self.path}: {len(self.docs)} documents, manifest says {self.n_rows}",
                                   path=self.path / "docs.arrow", check="row count")
        self.ids, self.seqs, self.lengths = self.docs.ids, self.docs.seqs, self.docs.lengths
        self.kinds = dict(meta["fields"])
        self.indexes, self._dense, self._forward = {}, {}, {}
        for name, kind in self.kinds.items():
            if kind == "dense":
                arrays, _ = load_arrays(self.path / name, "dense", mmap=True)
                self._dense[name] = DenseVectors(arrays["vectors"], arrays.get("codes"), arrays.get("scales"))
            else:
                cls = SeismicIndex if kind == "seismic" else ExactIndex
                self.indexes[name] = cls.load(self.path / name, mmap=True)
            if self.kinds[name] != "dense" and self.indexes[name].n_docs != self.n_rows:
                raise IndexFormatError(f"segment {self.path}: index {name!r} has "
                                       f"{self.indexes[name].n_docs} rows, expected {self.n_rows}",
                                       path=self.path / name, check="row count")
        self._tokens = None
        if meta.get("tokens"):
            arrays, tmeta = load_arrays(self.path / "tokens", "tokens", mmap=True)
            # plain ndarray views of the mapped files: a slice of an np.memmap goes through the
            # subclass's Python hooks, ~4 per document read — a fifth of a reranked search's
            # token gathering; ptr (8 bytes a document) is read into memory
            self._tokens = TokenRows(tmeta["dtype"], np.array(arrays["ptr"]), np.asarray(arrays["codes"]),
                                     np.asarray(arrays["scales"]))
            if self._tokens.n_docs != self.n_rows or int(self._tokens.ptr[-1]) != len(self._tokens.codes):
                raise IndexFormatError(f"segment {self.path}: token vectors do not match its {self.n_rows} rows",
                                       path=self.path / "tokens", check="row count")
        self.alive = np.ones(self.n_rows, dtype=np.bool_)
        self._columns: MetadataColumns | None = None

    # ------------------------------------------------------------- rows
    def forward(self, field: str):
        """(ptr int64, terms, vals float32) of a sparse field, from the index's own arrays, in
        the index's numbering: row r is at `self.positions(field, r)`."""
        if field not in self._forward:
            idx = self.indexes[field]
            if isinstance(idx, SeismicIndex):
                ptr, terms, vals = idx.forward()
                fwd = (ptr, terms, np.asarray(vals, dtype=np.float32))
            else:
                csr = idx.to_csr()
                fwd = (csr.indptr.astype(np.int64), csr.indices, csr.data)
            self._forward[field] = fwd
        return self._forward[field]

    def positions(self, field: str, rows):
        """Rows -> where the field's index holds them (a Seismic index may reorder documents)."""
        idx = self.indexes[field]
        return idx.positions(rows) if isinstance(idx, SeismicIndex) else rows

    def _rows(self, field: str, positions):
        idx = self.indexes[field]
        return idx.input_rows(positions) if isinstance(idx, SeismicIndex) else positions

    def terms(self, field: str):
        """(ptr, terms) of a sparse field without touching its values (index numbering)."""
        idx = self.indexes[field]
        if isinstance(idx, SeismicIndex):
            return idx.forward()[:2]
        ptr, terms, _ = self.forward(field)
        return ptr, terms

    def live_terms(self, field: str) -> np.ndarray:
        """Every term occurrence of the field in the live rows."""
        ptr, terms = self.terms(field)
        alive = self.alive[self._rows(field, np.arange(self.n_rows))]  # in the index's numbering
        return np.asarray(terms)[np.repeat(alive, np.diff(ptr))]

    def dense(self, field: str) -> np.ndarray:
        return self._dense[field].vectors

    def fresh(self) -> "Segment":
        """The same segment with every row alive: the files are immutable, which rows live is
        the collection's state (a follower's refresh() re-applies it)."""
        seg = copy.copy(self)
        seg.alive = np.ones(self.n_rows, dtype=bool)
        return seg

    def kill(self, rows) -> None:
        alive = self.alive.copy()
        alive[np.asarray(rows, dtype=np.int64)] = False
        self.alive = alive

    def row_terms(self, field: str, row: int) -> np.ndarray:
        ptr, terms = self.terms(field)
        p = self.positions(field, row)
        return np.asarray(terms[ptr[p]:ptr[p + 1]], dtype=np.int64)

    def vector(self, field: str, row: int):
        if self.kinds[field] == "dense":
            return np.array(self._dense[field].vectors[row])
        ptr, terms, vals = self.forward(field)
        p = self.positions(field, row)
        a, b = ptr[p], ptr[p + 1]
        return sp.csr_matrix((np.array(vals[a:b], np.float32), np.array(terms[a:b], np.int32),
                              [0, b - a]), shape=(1, self.indexes[field].dim))

    def sparse_rows(self, field: str, rows: np.ndarray) -> sp.csr_matrix:
        ptr, terms, vals = self.forward(field)
        m = sp.csr_matrix((vals, np.asarray(terms, dtype=np.int32), ptr),
                          shape=(self.n_rows, self.indexes[field].dim))
        return m[self.positions(field, np.asarray(rows, dtype=np.int64))]

    def token_rows(self, rows) -> TokenRows | None:
        """The rows' stored token vectors (None: this segment has none)."""
        return None if self._tokens is None else self._tokens.take(rows)

    def token_slice(self, row: int):
        """One row's stored token vectors as (codes, scales) views, or None when there are none."""
        if self._tokens is None:
            return None
        t = self._tokens
        a, b = int(t.ptr[row]), int(t.ptr[row + 1])
        return t.codes[a:b], t.scales[a:b]

    def token_bytes(self) -> tuple[int, int]:
        """(bytes, tokens) of the stored token vectors on disk (memory-mapped)."""
        t = self._tokens
        return (0, 0) if t is None else (t.nbytes(), len(t.codes))

    def text(self, row: int):
        return self.docs.text(row)

    def metadata(self, row: int):
        return self.docs.metadata(row)

    def all_texts(self) -> list:
        return self.docs.texts()

    def all_metadata(self) -> list:
        return self.docs.all_metadata()

    def metadata_columns(self) -> MetadataColumns:
        if self._columns is None:
            self._columns = MetadataColumns(self.docs.all_metadata())
        return self._columns

    # ------------------------------------------------------------- search
    def search_sparse(self, field: str, query: SparseQuery, params: SearchParams, allowed,
                      n_allowed: int, exact_limit: int):
        """Top-k rows among `allowed` (None = every row) sharing a term with the query.

        Few allowed rows: score exactly those. Otherwise ask the index for k' results, with k'
        scaled by the inverse share of allowed rows, and grow k' fourfold until k allowed rows
        come back or the index returns fewer than asked (it has nothing more to offer)."""
        k = params.k
        if allowed is not None and n_allowed <= exact_limit:
            ptr, terms, vals = self.forward(field)
            pos, scores = score_rows(ptr, terms, vals, self.positions(field, np.flatnonzero(allowed)),
                                     query.dense)
            return top_k(self._rows(field, pos), scores, k)
        idx = self.indexes[field]
        want = k if allowed is None else min(self.n_rows, math.ceil(k * self.n_rows / max(n_allowed, 1) * 1.5) + 8)
        while True:
            rows, scores = idx.search(query.indices, query.values, k=max(1, want), query_cut=params.query_cut,
                                      heap_factor=params.heap_factor, **_graph_args(idx, params))
            if allowed is None:
                return rows, scores
            keep = allowed[rows]
            if keep.sum() >= k or len(rows) < want or want >= self.n_rows:
                return rows[keep][:k], scores[keep][:k]
            want = min(self.n_rows, want * 4)

    def dense_scores(self, field: str, queries: np.ndarray) -> np.ndarray:
        """[n_queries, n_rows] first-pass scores of every row (dense_index.py: approximate)."""
        return self._dense[field].first_pass(queries)

    def dense_rescore(self, field: str, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        return self._dense[field].rescore(rows, query)


def _graph_args(idx, params) -> dict:
    """knn_expand for an index that has a κ-NN graph (a Seismic index of a field built with
    ``knn``); ExactIndex takes no such argument."""
    return {"knn_expand": params.knn_expand} if getattr(idx, "knn", 0) else {}
