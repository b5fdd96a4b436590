"""Exact top-k over sparse vectors: ground truth, and the faster choice for small segments.

Term-at-a-time accumulation over an inverted index (the documents' CSC): for each query term,
add q_t * d_t into one accumulator per document, then select the top k of the touched
documents. The C++ kernel (native/exact.hpp) and the Numba kernel below do exactly this, in the
same order, so they return identical results. Signed values are allowed.
"""
from __future__ import annotations

import os

import numba as nb
import numpy as np
import scipy.sparse as sp

from .native import native_module, resolve_backend
from .seismic.search_numba import heap_drain, heap_push
from .storage import load_arrays, save_arrays
from .validation import as_document_csr, as_query, as_query_csr, check_k, native_ready


@nb.njit(nogil=True, cache=True)
def _exact_one(q_terms, q_vals, k, col_ptr, col_docs, col_vals, acc, seen):
    touched = []
    for j in range(q_terms.shape[0]):
        t = q_terms[j]
        qv = q_vals[j]
        for i in range(col_ptr[t], col_ptr[t + 1]):
            d = col_docs[i]
            if not seen[d]:
                seen[d] = True
                touched.append(d)
            acc[d] += qv * col_vals[i]
    hs = np.empty(k, dtype=np.float32)
    hd = np.empty(k, dtype=np.int32)
    size = 0
    for d in touched:
        size = heap_push(hs, hd, size, k, acc[d], d)
        acc[d] = 0.0
        seen[d] = False
    return heap_drain(hs, hd, size)


@nb.njit(nogil=True, parallel=True)  # not cached: Numba cannot cache this parallel function
def _exact_batch(q_ptr, q_terms, q_vals, k, col_ptr, col_docs, col_vals, n_docs):
    nq = q_ptr.shape[0] - 1
    out_ids = np.full((nq, k), -1, dtype=np.int32)
    out_scores = np.full((nq, k), -np.inf, dtype=np.float32)
    n_workers = min(nq, nb.get_num_threads())
    for w in nb.prange(n_workers):
        acc = np.zeros(n_docs, dtype=np.float32)
        seen = np.zeros(n_docs, dtype=np.bool_)
        for i in range(w, nq, n_workers):
            a, b = q_ptr[i], q_ptr[i + 1]
            ids, sc = _exact_one(q_terms[a:b], q_vals[a:b], k, col_ptr, col_docs, col_vals, acc, seen)
            out_ids[i, : ids.shape[0]] = ids
            out_scores[i, : sc.shape[0]] = sc
    return out_ids, out_scores


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class ExactIndex:
    """Brute-force top-k by dot product; same API as SeismicIndex (search parameters that only
    make sense for approximate search are accepted and ignored)."""

    KIND = "exact"

    def __init__(self, arrays: dict[str, np.ndarray], n_docs: int, dim: int):
        self.arrays = arrays
        self.n_docs = int(n_docs)
        self.dim = int(dim)
        self._kernel = None

    @classmethod
    def build(cls, csr, **_ignored) -> "ExactIndex":
        docs = as_document_csr(csr, allow_negative=True)
        csc = docs.tocsc()
        csc.sort_indices()
        arrays = {"col_ptr": csc.indptr.astype(np.int64), "col_docs": csc.indices.astype(np.int32),
                  "col_vals": csc.data.astype(np.float32)}
        return cls(arrays, docs.shape[0], docs.shape[1])

    def __len__(self) -> int:
        return self.n_docs

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays.values()))

    def _native(self):
        if self._kernel is None:
            a = self.arrays
            self._kernel = native_module().ExactKernel(a["col_ptr"], a["col_docs"], a["col_vals"],
                                                       self.n_docs)
        return self._kernel

    def search(self, q_indices, q_values, k: int = 10, query_cut=None, heap_factor=None,
               backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ids int64, scores float32), best first; fewer than k if fewer docs match."""
        k = check_k(k)
        if resolve_backend(backend) == "native":
            kernel = self._native()
            if native_ready(q_indices, q_values):  # hot path: validated in C++
                out = kernel.search(q_indices, q_values, k)
                if out is not None:
                    return out
            qi, qv = as_query(q_indices, q_values, self.dim)
            return kernel.search(qi, qv, k)
        qi, qv = as_query(q_indices, q_values, self.dim)
        a = self.arrays
        # fresh accumulators per call keep concurrent callers independent
        acc, seen = np.zeros(self.n_docs, np.float32), np.zeros(self.n_docs, np.bool_)
        ids, scores = _exact_one(qi, qv, k, a["col_ptr"], a["col_docs"], a["col_vals"], acc, seen)
        return ids.astype(np.int64), scores

    def search_batch(self, queries, k: int = 10, query_cut=None, heap_factor=None,
                     n_threads: int | None = None, backend: str = "auto"):
        """Queries as a CSR (one row per query) -> ids [nq, k] (-1 padded), scores (-inf padded)."""
        k = check_k(k)
        q = as_query_csr(queries, self.dim)
        ptr, terms, vals = q.indptr.astype(np.int64), q.indices.astype(np.int32), q.data
        a = self.arrays
        if resolve_backend(backend) == "native":
            ids, scores = self._native().search_batch(ptr, terms, vals, k, n_threads or default_threads())
        else:
            ids, scores = _exact_batch(ptr, terms, vals, k, a["col_ptr"], a["col_docs"], a["col_vals"],
                                       self.n_docs)
        return ids.astype(np.int64), scores

    def save(self, path) -> None:
        save_arrays(path, self.KIND, self.arrays, {"n_docs": self.n_docs, "dim": self.dim})

    @classmethod
    def load(cls, path, mmap: bool = True) -> "ExactIndex":
        arrays, manifest = load_arrays(path, cls.KIND, mmap=mmap)
        return cls(arrays, manifest["n_docs"], manifest["dim"])

    def to_csr(self) -> sp.csr_matrix:
        a = self.arrays
        return sp.csc_matrix((a["col_vals"], a["col_docs"], a["col_ptr"]),
                             shape=(self.n_docs, self.dim)).tocsr()
