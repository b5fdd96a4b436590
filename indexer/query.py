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
from .validation import as_query, check_k, check_search_params


@dataclass(frozen=True)
class SearchParams:
    """k: results wanted. query_cut: Seismic visits the lists of the query's query_cut largest
    terms. heap_factor: it skips a block whose summary bound is below heap_factor x the k-th
    best score. Defaults: BENCHMARKS.md ("Service pipeline on SciFact") measured them."""
    k: int = 10
    query_cut: int = 32
    heap_factor: float = 0.8

    def __post_init__(self):
        object.__setattr__(self, "k", check_k(self.k))
        cut, heap = check_search_params(self.query_cut, self.heap_factor)
        object.__setattr__(self, "query_cut", cut)
        object.__setattr__(self, "heap_factor", heap)


DEFAULTS = SearchParams()


@dataclass(frozen=True)
class SparseQuery:
    indices: np.ndarray  # int32, sorted, unique
    values: np.ndarray   # float32, finite
    dense: np.ndarray    # float32 [dim]: the same query, for exact scoring

    @classmethod
    def make(cls, indices, values, dim: int) -> "SparseQuery":
        qi, qv = as_query(indices, values, dim)
        return cls(qi, qv, dense_query(qi, qv, dim))
