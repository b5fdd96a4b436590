"""A search's query and knobs, checked once where a search enters a collection.

SearchParams holds the one set of defaults (the collection, the indexes and the service all take
them from here); SparseQuery is a query made canonical once (sorted unique int32 term ids,
float32 weights, and the dense vector the exact paths score with), then handed as it is to every
segment and to the write buffer (rows.py declares what they offer).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scoring import dense_query
from .validation import as_query, check_k, check_knn_expand, check_search_params


@dataclass(frozen=True)
class SearchParams:
    """k: results wanted. query_cut: Seismic visits the lists of the query's query_cut largest
    terms. heap_factor: it skips a block whose summary bound is below heap_factor x the k-th
    best score. Defaults: chosen on SciFact's *train* queries against 100,000 SciFact passages
    (SPLADE-tiny queries, ~51 terms): query_cut 16 kept recall@10 1.000 and recall@100 0.9985
    of an exact scan at 0.57x the time of query_cut 32 (BENCHMARKS.md, "Serving engine"; the
    held-out test queries gave 1.000 / 0.9987). heap_factor below 0.8 bought no recall there.
    knn_expand: a segment whose Seismic index stores a κ-NN graph (a field built with the
    ``knn`` parameter) also scores the first knn_expand neighbours of each top hit; capped at
    the neighbours stored, so an index without a graph is searched as before. 10: chosen with
    κ = 10 on a tuning query sample of synthetic-100k (BENCHMARKS.md, "Seismic index")."""
    k: int = 10
    query_cut: int = 16
    heap_factor: float = 0.8
    knn_expand: int = 10

    def __post_init__(self):
        object.__setattr__(self, "k", check_k(self.k))
        cut, heap = check_search_params(self.query_cut, self.heap_factor)
        object.__setattr__(self, "query_cut", cut)
        object.__setattr__(self, "heap_factor", heap)
        object.__setattr__(self, "knn_expand", check_knn_expand(self.knn_expand))


DEFAULTS = SearchParams()


class SparseQuery:
    """indices: int32, sorted, unique; values: float32, finite; dense: the same query as a
    float32 [dim] vector for the exact scorers — built on first use only, since for the hashed
    BM25 field (2^18 terms) it is a megabyte per query that an index search never reads."""

    __slots__ = ("indices", "values", "dim", "_dense")

    def __init__(self, indices: np.ndarray, values: np.ndarray, dim: int):
        self.indices, self.values, self.dim, self._dense = indices, values, dim, None

    @classmethod
    def make(cls, indices, values, dim: int) -> "SparseQuery":
        qi, qv = as_query(indices, values, dim)
        return cls(qi, qv, dim)

    @property
    def dense(self) -> np.ndarray:
        if self._dense is None:
            self._dense = dense_query(self.indices, self.values, self.dim)
        return self._dense
