"""κ-NN graph of a Seismic index (Bruch, Nardini, Rulli, Venturini, CIKM 2024).

Each document stores the ids of κ approximate nearest neighbours by inner product, found by
searching the index itself with the document as the query. A search may then score, exactly
from the forward index, the stored neighbours of its top hits after the inverted-index phase:
documents near a true top hit that the visited blocks missed are recovered, so a small
query_cut reaches a given recall (search_numba.expand / seismic.hpp expand).

Layout: `knn_neighbors`, u32 [n_docs * κ], document d's neighbours at [d * κ, (d + 1) * κ),
best first. A document with fewer than κ neighbours found is padded with its own id: a top hit
is visited already, so its own id is skipped by the expansion without a sentinel test.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..storage import IndexFormatError

ARRAY = "knn_neighbors"


def build_graph(index, k: int, query_cut: int, heap_factor: float,
                n_threads: int | None = None, batch: int = 8192) -> np.ndarray:
    """Every document's k approximate nearest neighbours (itself excluded), u32 [n_docs * k]."""
    a = index.arrays
    n = index.n_docs
    out = np.empty((n, k), dtype=np.uint32)
    ptr = np.asarray(a["fwd_ptr"])
    terms = np.asarray(a["fwd_terms"])
    vals = np.asarray(a["fwd_vals"])
    for lo in range(0, n, batch):  # batches bound the f32 copies of the query rows
        hi = min(n, lo + batch)
        p0, p1 = int(ptr[lo]), int(ptr[hi])
        rows = sp.csr_matrix((vals[p0:p1].astype(np.float32), terms[p0:p1].astype(np.int32),
                              ptr[lo:hi + 1] - p0), shape=(hi - lo, index.dim))
        docs = np.arange(lo, hi)
        out[lo:hi] = docs[:, None]
        live = np.flatnonzero(np.diff(rows.indptr) > 0)  # an empty document has no neighbours
        if live.size == 0:
            continue
        ids, _ = index.search_batch(rows[live], k=k + 1, query_cut=query_cut, heap_factor=heap_factor,
                                    n_threads=n_threads)
        d = docs[live][:, None]
        keep = (ids >= 0) & (ids != d)
        first = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept hits first, in rank order
        nb = np.take_along_axis(ids, first, axis=1)
        out[lo + live] = np.where(np.take_along_axis(keep, first, axis=1), nb, d)
    return out.reshape(-1)


def stored_k(arrays: dict, n_docs: int) -> int:
    """Neighbours stored per document (0 without a graph)."""
    g = arrays.get(ARRAY)
    return 0 if g is None or n_docs == 0 else int(g.shape[0] // n_docs)


def check_graph(path, arrays: dict, n_docs: int) -> None:
    """A loaded graph must be n_docs rows of ids below n_docs: the kernels index with them."""
    g = arrays.get(ARRAY)
    if g is None:
        return
    if g.dtype != np.uint32 or g.ndim != 1 or (n_docs and g.shape[0] % n_docs) or \
            (g.shape[0] and int(g.max()) >= n_docs):
        raise IndexFormatError(f"{path} is damaged: its κ-NN graph does not match its {n_docs} documents",
                               path=path, check="consistency")
