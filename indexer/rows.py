"""What a collection reads rows from: its sealed segments and its write buffer offer the same
interface, so searches, merges and term statistics treat them alike."""
from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.sparse as sp

from .filters import MetadataColumns
from .query import SearchParams, SparseQuery


class Rows(Protocol):
    """Rows of documents: id, version (seq), length and a vector per field; `alive` marks the
    rows that are the current version of a live document (replaced, never changed in place)."""

    ids: list[str]
    seqs: np.ndarray
    lengths: np.ndarray
    alive: np.ndarray

    @property
    def n_rows(self) -> int: ...

    def kill(self, rows) -> None: ...

    def row_terms(self, field: str, row: int) -> np.ndarray: ...

    def vector(self, field: str, row: int): ...

    def sparse_rows(self, field: str, rows: np.ndarray) -> sp.csr_matrix: ...

    def dense(self, field: str) -> np.ndarray: ...

    def text(self, row: int) -> str | None: ...

    def metadata(self, row: int) -> dict | None: ...

    def all_texts(self) -> list: ...

    def all_metadata(self) -> list: ...

    def metadata_columns(self) -> MetadataColumns: ...

    def search_sparse(self, field: str, query: SparseQuery, params: SearchParams, allowed: np.ndarray | None,
                      n_allowed: int, exact_limit: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the top params.k rows among `allowed` (None: all) by dot product."""
        ...

    def dense_scores(self, field: str, queries: np.ndarray) -> np.ndarray:
        """[n_queries, rows] scores to choose candidates by; may be approximate."""
        ...

    def dense_rescore(self, field: str, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Exact dot products of these rows with one query."""
        ...
