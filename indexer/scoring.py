"""Exact scoring of chosen rows of a forward index (CSR), and top-k selection.

Used for the write buffer (which is small and changes with every write, so it has no index),
for filtered searches whose matching rows are few, and for dense fields.
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(nogil=True, cache=True)
def _score_rows(ptr, terms, vals, rows, q_dense):
    # a row "matches" when it shares at least one term with the query, like the indexes
    scores = np.zeros(rows.shape[0], dtype=np.float32)
    hit = np.zeros(rows.shape[0], dtype=np.bool_)
    for j in range(rows.shape[0]):
        r = rows[j]
        s = np.float32(0.0)
        h = False
        for p in range(ptr[r], ptr[r + 1]):
            qv = q_dense[terms[p]]
            if qv != 0:
                s += qv * vals[p]
                h = True
        scores[j] = s
        hit[j] = h
    return scores, hit


def score_rows(ptr, terms, vals, rows: np.ndarray, q_dense: np.ndarray):
    """Dot products of rows `rows` with the dense query; (rows that share a term, their scores)."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if rows.size == 0:
        return rows, np.empty(0, np.float32)
    scores, hit = _score_rows(ptr, terms, vals, rows, q_dense)
    return rows[hit], scores[hit]


def top_k(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (rows, scores), best first; equal scores ordered by row for determinism."""
    if rows.size > k:
        part = np.argpartition(-scores, k - 1)[:k]
        rows, scores = rows[part], scores[part]
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]


def dense_query(q_indices: np.ndarray, q_values: np.ndarray, dim: int) -> np.ndarray:
    q = np.zeros(dim, np.float32)
    q[q_indices] = q_values
    return q
