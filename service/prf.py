"""Pseudo-relevance feedback with interpolation before and after the feedback step
("To Interpolate or not to Interpolate: PRF, Sparse and Dense Retrieval").

Before: the feedback query is a Rocchio mix of the original query vector and the centroid of
the top-m documents' vectors, ``w * q + (1 - w) * mean(d_1..d_m)``.
After: a document's final score mixes its score under the original query and under the
feedback query, ``w' * s_orig + (1 - w') * s_prf``; a document missing from one list takes
that list's lowest score.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


def rocchio_sparse(q_ids: np.ndarray, q_vals: np.ndarray, docs: Sequence[sp.csr_matrix], dim: int,
                   query_weight: float, max_terms: int) -> tuple[np.ndarray, np.ndarray]:
    """(term ids, weights) of the feedback query, keeping its ``max_terms`` largest terms."""
    q = np.zeros(dim, np.float64)
    q[np.asarray(q_ids, np.int64)] = q_vals
    fb = np.zeros(dim, np.float64)
    for d in docs:
        d = sp.csr_matrix(d)
        fb[d.indices] += d.data
    if docs:
        fb /= len(docs)
    mix = query_weight * q + (1.0 - query_weight) * fb
    nz = np.flatnonzero(mix > 0)
    if nz.size > max_terms:
        nz = nz[np.argsort(-mix[nz], kind="stable")[:max_terms]]
    nz.sort()
    return nz.astype(np.int32), mix[nz].astype(np.float32)


def rocchio_dense(q: np.ndarray, docs: Sequence[np.ndarray], query_weight: float) -> np.ndarray:
    """Feedback query for unit-norm dense vectors, renormalised to unit length."""
    mix = query_weight * np.asarray(q, np.float64)
    if len(docs):
        mix = mix + (1.0 - query_weight) * np.mean(np.asarray(docs, np.float64), axis=0)
    norm = np.linalg.norm(mix)
    return (mix / norm if norm > 0 else mix).astype(np.float32)


def interpolate(original: Sequence[tuple[str, float]], feedback: Sequence[tuple[str, float]],
                weight: float) -> list[tuple[str, float]]:
    """``weight * s_orig + (1 - weight) * s_prf`` over the union, best first (ties by id)."""
    a, b = dict(original), dict(feedback)
    fa = min(a.values()) if a else 0.0
    fb = min(b.values()) if b else 0.0
    out = {d: weight * a.get(d, fa) + (1.0 - weight) * b.get(d, fb) for d in a.keys() | b.keys()}
    return sorted(out.items(), key=lambda x: (-x[1], x[0]))
