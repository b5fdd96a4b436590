"""Static pruning of posting lists (Seismic §4.1): keep each term's largest postings."""
from __future__ import annotations

import numba as nb
import numpy as np

from .config import SeismicParams


@nb.njit(nogil=True, parallel=True, cache=True)
def _cap_lists(indptr, docs, vals, cap):
    """Keep the `cap` largest postings of every list; surviving postings stay in doc-id order."""
    n_lists = indptr.shape[0] - 1
    counts = np.empty(n_lists, dtype=np.int64)
    for t in range(n_lists):
        counts[t] = min(indptr[t + 1] - indptr[t], cap)
    out_ptr = np.zeros(n_lists + 1, dtype=np.int64)
    out_ptr[1:] = np.cumsum(counts)
    out_docs = np.empty(out_ptr[-1], dtype=np.int32)
    for t in nb.prange(n_lists):
        a, b, o = indptr[t], indptr[t + 1], out_ptr[t]
        if b - a <= cap:
            out_docs[o:o + b - a] = docs[a:b]
        else:
            # stable sort by value descending; ties keep the smaller doc id
            order = np.argsort(-vals[a:b], kind="mergesort")[:cap]
            out_docs[o:o + cap] = np.sort(docs[a:b][order])
    return out_ptr, out_docs


@nb.njit(nogil=True, cache=True)
def _count_kept(indptr, keep):
    """Surviving postings per list: no [nnz] int64 array of list ids (8 bytes a posting)."""
    n_lists = indptr.shape[0] - 1
    counts = np.zeros(n_lists, dtype=np.int64)
    for t in range(n_lists):
        c = 0
        for i in range(indptr[t], indptr[t + 1]):
            c += keep[i]
        counts[t] = c
    return counts


def prune_postings(indptr: np.ndarray, docs: np.ndarray, vals: np.ndarray,
                   params: SeismicParams) -> tuple[np.ndarray, np.ndarray]:
    """Return (list_ptr, list_docs): the surviving postings of every term, doc ids ascending,
    from every term's postings (int64 indptr, int32 docs ascending, float32 vals; read only).

    Global variant: the threshold is the value of the (n_postings * dim)-th largest posting of
    the collection; every posting >= threshold survives (ties may exceed the budget by the
    number of tied values), then each list is capped at max_fraction * n_postings.
    """
    # Peak memory of a build is here: only the surviving postings are copied.
    if params.pruning == "none":
        return indptr, docs
    if params.pruning == "fixed":
        return _cap_lists(indptr, docs, vals, params.n_postings)
    budget = params.n_postings * (indptr.shape[0] - 1)
    if budget < vals.shape[0]:
        threshold = np.partition(vals, vals.shape[0] - budget)[vals.shape[0] - budget]
        keep = vals >= threshold
        counts = _count_kept(indptr, keep)
        indptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        docs, vals = docs[keep], vals[keep]
    cap = max(1, int(params.n_postings * params.max_fraction))
    return _cap_lists(indptr, docs, vals, cap)
