"""Deterministic synthetic SPLADE-like collections.

Term popularity is Zipfian over the vocabulary (a fixed random permutation spreads popular
terms over the id space), mixed with topical structure: every document and query draws most of
its terms from one to three topics (each a Zipfian distribution over its own few hundred
terms), so that the documents sharing a query's top terms are not all equally relevant and
approximate search has something to get wrong. Non-zeros per document follow a log-normal
around `doc_nnz` (SPLADE documents vary widely in length); weights are Gamma-distributed like
log(1 + ReLU) activations, topical terms weighted up.
"""
from __future__ import annotations

import numba as nb
import numpy as np
import scipy.sparse as sp


@nb.njit(cache=True, inline="always")
def _next(state):
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return state, np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@nb.njit(cache=True)
def _gamma2(state, scale):
    # Gamma(shape=2) as the sum of two exponentials
    state, u1 = _next(state)
    state, u2 = _next(state)
    return state, -scale * (np.log(1.0 - u1) + np.log(1.0 - u2))


@nb.njit(parallel=True, cache=True)
def _generate(n, seed, mean_nnz, sigma, bg_cdf, bg_terms, topic_cdf, topic_terms, n_topics,
              topical_share, boost):
    counts = np.empty(n, dtype=np.int64)
    for i in range(n):
        state = np.uint64(seed) * np.uint64(0x100000001B3) + np.uint64(i)
        state, u1 = _next(state)
        state, u2 = _next(state)
        g = np.sqrt(-2.0 * np.log(1.0 - u1)) * np.cos(2 * np.pi * u2)  # Box-Muller
        counts[i] = max(4, min(8 * mean_nnz, int(mean_nnz * np.exp(sigma * g - sigma * sigma / 2))))
    ptr = np.zeros(n + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(counts)
    terms = np.empty(ptr[-1], dtype=np.int32)
    vals = np.empty(ptr[-1], dtype=np.float32)
    tsize = topic_terms.shape[1]
    for i in nb.prange(n):
        state = np.uint64(seed) * np.uint64(0x100000001B3) + np.uint64(i) + np.uint64(1 << 40)
        state, u = _next(state)
        n_doc_topics = 1 + int(u * 3)
        topics = np.empty(n_doc_topics, dtype=np.int64)
        for j in range(n_doc_topics):
            state, u = _next(state)
            topics[j] = int(u * n_topics)
        for p in range(ptr[i], ptr[i + 1]):
            state, u = _next(state)
            if u < topical_share:
                state, u = _next(state)
                tp = topics[min(n_doc_topics - 1, int(u * n_doc_topics))]
                state, u = _next(state)
                r = np.searchsorted(topic_cdf, u)
                terms[p] = topic_terms[tp, min(r, tsize - 1)]
                state, w = _gamma2(state, 0.35)
                vals[p] = w + boost
            else:
                state, u = _next(state)
                r = np.searchsorted(bg_cdf, u)
                terms[p] = bg_terms[min(r, bg_terms.shape[0] - 1)]
                state, w = _gamma2(state, 0.3)
                vals[p] = w
    return ptr, terms, vals


def _zipf_cdf(size: int, exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, size + 1) ** exponent
    return np.cumsum(w) / w.sum()


class SyntheticSplade:
    """A generator of documents and queries sharing one vocabulary and topic model."""

    def __init__(self, dim: int = 30522, n_topics: int = 500, topic_size: int = 300, seed: int = 7):
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.bg_terms = rng.permutation(dim).astype(np.int32)
        self.bg_cdf = _zipf_cdf(dim, 1.0)
        self.topic_terms = np.stack([rng.choice(dim, size=topic_size, replace=False)
                                     for _ in range(n_topics)]).astype(np.int32)
        self.topic_cdf = _zipf_cdf(topic_size, 0.8)
        self.n_topics = n_topics
        self.seed = seed

    def _matrix(self, n, seed, mean_nnz, sigma, topical_share, boost):
        ptr, terms, vals = _generate(n, seed, mean_nnz, sigma, self.bg_cdf, self.bg_terms,
                                     self.topic_cdf, self.topic_terms, self.n_topics,
                                     topical_share, boost)
        m = sp.csr_matrix((vals, terms, ptr), shape=(n, self.dim))
        m.sum_duplicates()  # repeated draws of a term add up, like repeated tokens
        m.data = np.minimum(m.data, 4.0).astype(np.float32)
        return m

    # Repeated draws of a term merge into one non-zero, so ask for more draws than the
    # non-zeros wanted: measured, 120 non-zeros/document need 158 draws and 40/query need 46.
    def documents(self, n: int, mean_nnz: int = 120) -> sp.csr_matrix:
        return self._matrix(n, self.seed * 1000 + 1, round(mean_nnz * 1.32), 0.5, 0.6, 0.3)

    def queries(self, n: int, mean_nnz: int = 40) -> sp.csr_matrix:
        return self._matrix(n, self.seed * 1000 + 2, round(mean_nnz * 1.15), 0.3, 0.7, 0.5)
