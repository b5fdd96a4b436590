"""Corpus statistics over a collection's live documents, for BM25 / IDF: per sparse field the
document frequency of each term, plus the live document count and their total length.

They are kept current as rows come alive (an upsert appends them to the write buffer) and die
(a delete, or a newer version of the document), rather than recomputed per query: computed
once from the segments when a collection loads, then updated by every applied operation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TermStats:
    """Corpus statistics of one sparse field over the live documents (for BM25 / IDF)."""
    n_docs: int
    total_length: int
    df: np.ndarray  # int64 [dim]: live documents with a non-zero weight for each term

    @property
    def avg_length(self) -> float:
        return self.total_length / self.n_docs if self.n_docs else 0.0


class LiveTermStats:
    """The running statistics of a collection; the collection's lock guards them."""

    def __init__(self, config, segments: list):
        """Count the live rows of the given (sealed) segments."""
        self._dims = {f: config.fields[f].dim for f in config.sparse_fields}
        self._df = {f: np.zeros(dim, np.int64) for f, dim in self._dims.items()}
        self._n_docs, self._total_length = 0, 0
        for seg in segments:
            self.add_segment(seg)

    def add_segment(self, seg) -> None:
        """The live rows of a sealed segment came alive (loading, or a bulk install)."""
        self._n_docs += int(seg.alive.sum())
        self._total_length += int(seg.lengths[seg.alive].sum())
        for f, dim in self._dims.items():
            self._df[f] += np.bincount(seg.live_terms(f), minlength=dim)

    def add(self, op) -> None:
        """The rows of an applied upsert (wal.UpsertOp) came alive."""
        self._n_docs += len(op.ids)
        self._total_length += int(op.lengths.sum())
        for f in self._dims:
            _count(self._df[f], op.vectors[f].indices, 1)

    def remove(self, container, rows: np.ndarray) -> None:
        """Rows of a container (Rows: segment or write buffer) that died."""
        self._n_docs -= len(rows)
        self._total_length -= int(container.lengths[rows].sum())
        for f in self._dims:
            _count(self._df[f], np.concatenate([container.row_terms(f, r) for r in rows]), -1)

    def of(self, field: str, terms: np.ndarray | None = None) -> TermStats:
        """A copy for one sparse field, which later writes leave alone; with `terms`, only
        their document frequencies (a BM25 query needs a handful, not the whole vocabulary)."""
        df = self._df[field]
        return TermStats(self._n_docs, self._total_length, df.copy() if terms is None else df[terms])


def _count(df: np.ndarray, terms: np.ndarray, sign: int) -> None:
    """df[t] += sign for every occurrence of t in terms. A few terms (one document) are added
    in place; a whole vocabulary's worth of counts would be a waste for them, and vice versa."""
    if len(terms) * 8 < len(df):
        np.add.at(df, terms, sign)
    else:
        df += sign * np.bincount(terms, minlength=len(df))
