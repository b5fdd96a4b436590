"""Document order inside a Seismic index.

Documents are numbered by their largest term (stable: input order within a term), so that
documents that share a dominant term — the ones the blocks of that term's list group
together — sit next to each other in the forward index: a block's members then share cache
lines and pages instead of being scattered over the whole forward index. On synthetic-1m this
made queries 15-16 % faster at the same recall on an Intel Xeon (BENCHMARKS.md). The index keeps `doc_ids`
(internal number -> input row) and maps its results back, so callers never see the internal
numbering.
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(nogil=True, cache=True)
def _largest_terms(ptr, terms, vals, dim):
    """Each document's term of largest value (the first of equal ones); empty documents: dim."""
    n = ptr.shape[0] - 1
    key = np.empty(n, np.int64)
    for d in range(n):
        best, arg = np.float32(-1.0), dim
        for p in range(ptr[d], ptr[d + 1]):
            if vals[p] > best:
                best, arg = vals[p], terms[p]
        key[d] = arg
    return key


@nb.njit(nogil=True, parallel=True, cache=True)
def _gather_rows(ptr, terms, vals, order, out_ptr, out_terms, out_vals):
    for i in nb.prange(order.shape[0]):
        d = order[i]
        a, o = ptr[d], out_ptr[i]
        for j in range(ptr[d + 1] - a):
            out_terms[o + j] = terms[a + j]
            out_vals[o + j] = vals[a + j]


def top_term_order(ptr, terms, vals, dim: int) -> np.ndarray:
    """Internal number -> input row (int64), documents grouped by their largest term."""
    return np.argsort(_largest_terms(ptr, terms, vals, dim), kind="stable")


def permute_rows(ptr, terms, vals, order: np.ndarray, term_dtype) -> tuple:
    """(ptr int64, terms as term_dtype, vals float32) of the rows taken in `order`, with no
    intermediate copy of the whole matrix (peak memory of a build is its forward index)."""
    lengths = np.diff(ptr)[order]
    out_ptr = np.zeros(order.shape[0] + 1, np.int64)
    np.cumsum(lengths, out=out_ptr[1:])
    out_terms = np.empty(int(out_ptr[-1]), term_dtype)
    out_vals = np.empty(int(out_ptr[-1]), np.float32)
    _gather_rows(ptr, terms, vals, order, out_ptr, out_terms, out_vals)
    return out_ptr, out_terms, out_vals


@nb.njit(nogil=True, cache=True)
def _transpose(ptr, terms, vals, dim, col_ptr, col_rows, col_vals):
    nxt = col_ptr[:-1].copy()
    for d in range(ptr.shape[0] - 1):
        for p in range(ptr[d], ptr[d + 1]):
            t = terms[p]
            col_rows[nxt[t]] = d
            col_vals[nxt[t]] = vals[p]
            nxt[t] += 1


def transpose(ptr, terms, vals, dim: int) -> tuple:
    """Posting lists of a CSR forward index: (col_ptr int64, rows int32 ascending, vals f32)."""
    col_ptr = np.zeros(dim + 1, np.int64)
    np.cumsum(np.bincount(terms, minlength=dim), out=col_ptr[1:])
    col_rows = np.empty(int(col_ptr[-1]), np.int32)
    col_vals = np.empty(int(col_ptr[-1]), np.float32)
    _transpose(ptr, terms, vals, dim, col_ptr, col_rows, col_vals)
    return col_ptr, col_rows, col_vals


def inverse(doc_ids: np.ndarray) -> np.ndarray:
    """Input row -> internal number (int64); -1 where `doc_ids` misses a row (a damaged map)."""
    pos = np.full(doc_ids.shape[0], -1, np.int64)
    pos[doc_ids] = np.arange(doc_ids.shape[0], dtype=np.int64)
    return pos
