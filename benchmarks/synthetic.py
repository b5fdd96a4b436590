"""Deterministic synthetic SPLADE-like collections.

Term popularity is Zipfian over the vocabulary (a fixed random permutation spreads popular
terms over the id space), mixed with topical structure: every document and query draws most of
its terms from one to three topics (each a Zipfian distribution over its own few hundred
terms), so that the documents sharing a query's top terms are not all equally relevant and
approximate search has something to get wrong. Non-zeros per document follow a log-normal
around `doc_nnz` (SPLADE documents vary widely in length); weights are Gamma-distributed like
log(1 + ReLU) activations, topical terms weighted up.

The distribution is adjustable, so that a speed-up measured on one collection can be checked
on others: the Zipf exponents of the background and of the topics, the number and size of
topics, the share of topical terms and the documents' length (mean and spread). VARIANTS
names the collections the benchmarks use (`synthetic-100k`, `synthetic-100k-flat`, ...).
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
    """A generator of documents and queries sharing one vocabulary and topic model.

    zipf:           exponent of the background term popularity (1.0: SPLADE-like; lower is
                    flatter, so posting lists are more even and summaries less selective).
    topic_zipf:     exponent of term popularity inside a topic.
    topical_share:  fraction of a document's draws from its topics (queries draw a bit more).
    doc_sigma:      log-normal spread of document lengths.
    """

    def __init__(self, dim: int = 30522, n_topics: int = 500, topic_size: int = 300, seed: int = 7,
                 zipf: float = 1.0, topic_zipf: float = 0.8, topical_share: float = 0.6,
                 doc_sigma: float = 0.5):
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.bg_terms = rng.permutation(dim).astype(np.int32)
        self.bg_cdf = _zipf_cdf(dim, zipf)
        self.topic_terms = np.stack([rng.choice(dim, size=topic_size, replace=False)
                                     for _ in range(n_topics)]).astype(np.int32)
        self.topic_cdf = _zipf_cdf(topic_size, topic_zipf)
        self.n_topics = n_topics
        self.seed = seed
        self.topical_share = topical_share
        self.doc_sigma = doc_sigma

    def _matrix(self, n, seed, mean_nnz, sigma, topical_share, boost):
        ptr, terms, vals = _generate(n, seed, mean_nnz, sigma, self.bg_cdf, self.bg_terms,
                                     self.topic_cdf, self.topic_terms, self.n_topics,
                                     topical_share, boost)
        m = sp.csr_matrix((vals, terms, ptr), shape=(n, self.dim))
        m.sum_duplicates()  # repeated draws of a term add up, like repeated tokens
        m.data = np.minimum(m.data, 4.0).astype(np.float32)
        return m

    # Repeated draws of a term merge into one non-zero, so ask for more draws than the
    # non-zeros wanted: measured with the defaults, 120 non-zeros/document need 158 draws and
    # 40/query need 46 (other settings land near, not on, mean_nnz).
    def documents(self, n: int, mean_nnz: int = 120) -> sp.csr_matrix:
        return self._matrix(n, self.seed * 1000 + 1, round(mean_nnz * 1.32), self.doc_sigma,
                            self.topical_share, 0.3)

    def queries(self, n: int, mean_nnz: int = 40, sample: int = 0) -> sp.csr_matrix:
        """sample > 0 draws another set of queries from the same distribution: parameters are
        chosen on one sample and reported on sample 0, never tuned on the queries reported."""
        return self._matrix(n, self.seed * 1000 + 2 + 10 * sample, round(mean_nnz * 1.15), 0.3,
                            min(1.0, self.topical_share + 0.1), 0.5)


# name -> (generator settings, mean non-zeros per document); the size is the name's suffix
VARIANTS = {
    "": ({}, 120),                                        # SPLADE-like default
    "flat": ({"zipf": 0.8, "topic_zipf": 0.5, "topical_share": 0.4}, 120),  # flatter terms, weaker topics
    "long": ({"doc_sigma": 0.7}, 300),                    # long, more varied documents (~250 nnz)
    "topical": ({"n_topics": 2000, "topic_size": 150, "topical_share": 0.8}, 120),  # many narrow topics
}
SIZES = {"20k": 20_000, "100k": 100_000, "1m": 1_000_000}


def dataset(name: str, n_queries: int, query_sample: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(documents, queries) of a name such as synthetic-100k or synthetic-100k-flat; queries of
    another query_sample for tuning (SyntheticSplade.queries)."""
    parts = name.split("-")
    if parts[0] != "synthetic" or len(parts) not in (2, 3) or parts[1] not in SIZES \
            or (parts[2] if len(parts) == 3 else "") not in VARIANTS or parts[2:] == [""]:
        raise ValueError(f"unknown synthetic dataset {name!r}: synthetic-<{'|'.join(SIZES)}>"
                         f"[-<{'|'.join(v for v in VARIANTS if v)}>]")
    settings, nnz = VARIANTS[parts[2] if len(parts) == 3 else ""]
    gen = SyntheticSplade(**settings)
    return gen.documents(SIZES[parts[1]], mean_nnz=nnz), gen.queries(n_queries, sample=query_sample)
