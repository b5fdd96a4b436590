"""The in-memory write buffer: rows appended since the last flush, searched exactly.

Arrays grow by doubling and rows are only appended, so a snapshot (`view`) is a set of slices
that later appends never touch. `alive` is replaced rather than mutated when a row dies, for
the same reason: a search works on the snapshot it took, whatever writers do meanwhile.
"""
from __future__ import annotations

import copy

import numpy as np
import scipy.sparse as sp

from .filters import MetadataColumns
from .scoring import score_rows, top_k
from .token_store import GrowableTokens, TokenRows


class _Growable:
    def __init__(self, dtype, width: int | None = None):
        shape = (16,) if width is None else (16, width)
        self.arr = np.zeros(shape, dtype=dtype)
        self.n = 0

    def extend(self, values: np.ndarray) -> None:
        need = self.n + len(values)
        if need > len(self.arr):
            cap = max(need, 2 * len(self.arr))
            new = np.zeros((cap,) + self.arr.shape[1:], dtype=self.arr.dtype)
            new[: self.n] = self.arr[: self.n]
            self.arr = new
        self.arr[self.n:need] = values
        self.n = need

    def view(self) -> np.ndarray:
        return self.arr[: self.n]


class WriteBuffer:
    def __init__(self, config):
        self.config = config
        self.ids: list[str] = []
        self.texts: list = []
        self.meta: list = []
        self._seqs = _Growable(np.int64)
        self._lengths = _Growable(np.int64)
        self._alive = _Growable(np.bool_)
        self._sparse = {}
        self._dense = {}
        for name, spec in config.fields.items():
            if spec.kind == "sparse":
                ptr = _Growable(np.int64)
                ptr.extend(np.zeros(1, np.int64))
                self._sparse[name] = (ptr, _Growable(np.int32), _Growable(np.float32))
            else:
                self._dense[name] = _Growable(np.float32, spec.dim)
        self._tokens = (GrowableTokens(config.store_token_vectors, config.token_dim)
                        if config.store_token_vectors else None)
        self._columns: tuple[int, MetadataColumns] | None = None

    @property
    def n_rows(self) -> int:
        return len(self.ids)

    @property
    def n_alive(self) -> int:
        return int(self._alive.view().sum())

    def append(self, ids, seq: int, vectors: dict, texts, metadata, lengths,
               tokens: TokenRows | None = None) -> None:
        """Append canonical rows (validated by the caller); tokens: their stored token vectors
        (none given: empty ones, e.g. a WAL record written before the collection had them)."""
        n = len(ids)
        if self._tokens is not None:
            self._tokens.append(tokens if tokens is not None and tokens.dtype == self._tokens.dtype
                                else TokenRows.empty(self._tokens.dtype, self._tokens.dim, n))
        for name, (ptr, terms, vals) in self._sparse.items():
            m = vectors[name]
            ptr.extend(m.indptr[1:].astype(np.int64) + ptr.arr[ptr.n - 1])
            terms.extend(m.indices.astype(np.int32))
            vals.extend(m.data.astype(np.float32))
        for name, g in self._dense.items():
            g.extend(np.asarray(vectors[name], np.float32))
        self._seqs.extend(np.full(n, seq, np.int64))
        self._lengths.extend(np.asarray(lengths, np.int64))
        self.texts.extend(texts)
        self.meta.extend(metadata)
        # publish the ids last: readers take n_rows from len(ids)
        self._alive.extend(np.ones(n, np.bool_))
        self.ids.extend(ids)

    def kill(self, rows) -> None:
        alive = self._alive.arr.copy()
        alive[np.asarray(rows, dtype=np.int64)] = False
        self._alive.arr = alive

    # ----------------------------------------------------------- row access (same as Segment)
    @property
    def seqs(self) -> np.ndarray:
        return self._seqs.view()

    @property
    def lengths(self) -> np.ndarray:
        return self._lengths.view()

    @property
    def alive(self) -> np.ndarray:
        return self._alive.view()

    def forward(self, field: str):
        ptr, terms, vals = self._sparse[field]
        return ptr.view(), terms.view(), vals.view()

    def dense(self, field: str) -> np.ndarray:
        return self._dense[field].view()

    def row_terms(self, field: str, row: int) -> np.ndarray:
        ptr, terms, _ = self.forward(field)
        return terms[ptr[row]:ptr[row + 1]].astype(np.int64)

    def vector(self, field: str, row: int):
        if field in self._dense:
            return self._dense[field].view()[row].copy()
        ptr, terms, vals = self.forward(field)
        a, b = ptr[row], ptr[row + 1]
        return sp.csr_matrix((vals[a:b].copy(), terms[a:b].copy(), [0, b - a]),
                             shape=(1, self.config.fields[field].dim))

    def sparse_rows(self, field: str, rows: np.ndarray) -> sp.csr_matrix:
        ptr, terms, vals = self.forward(field)
        m = sp.csr_matrix((vals, terms, ptr), shape=(len(ptr) - 1, self.config.fields[field].dim))
        return m[rows]

    def token_rows(self, rows) -> TokenRows | None:
        """The rows' stored token vectors (None: the collection stores none)."""
        return None if self._tokens is None else self._tokens.view().take(rows)

    def token_slice(self, row: int):
        """One row's stored token vectors as (codes, scales) views, or None when there are none."""
        if self._tokens is None:
            return None
        t = self._tokens.view()
        a, b = int(t.ptr[row]), int(t.ptr[row + 1])
        return t.codes[a:b], t.scales[a:b]

    def token_bytes(self) -> tuple[int, int]:
        """(bytes, tokens) of the stored token vectors held in memory."""
        if self._tokens is None:
            return 0, 0
        v = self._tokens.view()
        return v.nbytes(), len(v.codes)

    def text(self, row: int):
        return self.texts[row]

    def metadata(self, row: int):
        return copy.deepcopy(self.meta[row])  # callers must not edit the stored dict

    def all_texts(self) -> list:
        return self.texts[: self.n_rows]

    def all_metadata(self) -> list:
        return self.meta[: self.n_rows]

    def metadata_columns(self) -> MetadataColumns:
        n = self.n_rows
        cached = self._columns
        if cached is None or cached[0] != n:
            cached = (n, MetadataColumns(self.meta[:n]))
            self._columns = cached
        return cached[1]

    # ----------------------------------------------------------- search (always exact)
    def search_sparse(self, field: str, query, params, allowed, n_allowed: int, exact_limit: int):
        ptr, terms, vals = self.forward(field)
        n = len(ptr) - 1 if allowed is None else len(allowed)
        rows = np.arange(n) if allowed is None else np.flatnonzero(allowed)
        rows, scores = score_rows(ptr, terms, vals, rows, query.dense)
        return top_k(rows, scores, params.k)

    def dense_scores(self, field: str, queries: np.ndarray) -> np.ndarray:
        """[n_queries, rows so far] dot products (a snapshot's rows are a prefix of these)."""
        return queries @ self._dense[field].view().T

    def dense_rescore(self, field: str, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        return self._dense[field].view()[rows] @ query
