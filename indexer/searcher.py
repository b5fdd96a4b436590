"""A search over one snapshot of a collection: ask every container, merge their results.

A snapshot is what Collection._snapshot() takes under the lock: [(container, alive)] for each
sealed segment, each write buffer being sealed and the current write buffer (all Rows). The
search runs without the lock: masks and buffers are replaced or appended, never changed in
place, so the snapshot stays consistent. Each container returns its own top k among its live
rows that pass the filter; the merge keeps the newest version of each document and the k best.
Results are Hits, which read a document's text and metadata only when asked for.
"""
from __future__ import annotations

import numpy as np

from .filters import Filter
from .query import SearchParams, SparseQuery
from .rows import Rows
from .scoring import top_k
from .segment import Segment


class Hit:
    """One search result. Its text and metadata are read from the document store only when
    asked for (and then once): a search ranks many more candidates than a page shows."""

    __slots__ = ("id", "score", "_rows", "_row", "_doc")

    def __init__(self, doc_id: str, score: float, rows, row: int):
        self.id, self.score, self._rows, self._row, self._doc = doc_id, score, rows, row, None

    def _fetch(self) -> tuple:
        if self._doc is None:
            self._doc = (self._rows.text(self._row), self._rows.metadata(self._row))
        return self._doc

    @property
    def text(self) -> str | None:
        return self._fetch()[0]

    @property
    def metadata(self) -> dict | None:
        return self._fetch()[1]

    def __repr__(self) -> str:
        return f"Hit({self.id!r}, {self.score:.6g})"


def search_sparse(snapshot: list, field: str, query: SparseQuery, params: SearchParams,
                  flt: Filter | None, exact_limit: int) -> list[Hit]:
    """Top params.k by dot product with a sparse query (checked already) over a snapshot."""
    def run(c: Rows, allowed, n_allowed):
        return c.search_sparse(field, query, params, allowed, n_allowed, exact_limit)
    return _fan_out(snapshot, run, flt, params.k)


def search_dense_batch(snapshot: list, requests: list) -> list[list[Hit]]:
    """Dense searches [(field, q, k, filter)] over one snapshot, one matrix product per
    field and segment for all of them."""
    results: list = [None] * len(requests)
    by_field: dict[str, list[int]] = {}
    for i, (field, _, _, _) in enumerate(requests):
        by_field.setdefault(field, []).append(i)
    for field, idx in by_field.items():
        queries = np.stack([requests[i][1] for i in idx])
        scores = {id(c): c.dense_scores(field, queries) for c, _ in snapshot}  # [batch, rows]
        for col, i in enumerate(idx):
            _, _, k, flt = requests[i]

            def run(c, allowed, _n, col=col, k=k):
                s = scores[id(c)][col]
                if allowed is None:
                    return top_k(np.arange(c.n_rows), s[: c.n_rows], k)
                rows = np.flatnonzero(allowed)
                return top_k(rows, s[rows], k)
            results[i] = _fan_out(snapshot, run, flt, k)
    return results


def _fan_out(snapshot: list, run, flt: Filter | None, k: int) -> list[Hit]:
    """run(container, allowed rows (None: all), how many) -> (rows, scores) in each container;
    the k best hits over all of them."""
    found = []
    for c, alive in snapshot:
        allowed = alive
        if flt is not None:
            allowed = alive & flt.mask(c.metadata_columns())[: len(alive)]
        n_allowed = int(np.count_nonzero(allowed))
        if n_allowed == 0:
            continue
        if isinstance(c, Segment) and n_allowed == c.n_rows:
            allowed = None  # nothing to exclude: plain index search
        rows, scores = run(c, allowed, n_allowed)
        found += [(float(s), c.ids[r], int(c.seqs[r]), c, int(r)) for r, s in zip(rows, scores)]
    # a consistent snapshot holds one version per id; keeping the newest is a safety net
    newest = {}
    for _, doc_id, seq, _, _ in found:
        newest[doc_id] = max(seq, newest.get(doc_id, -1))
    found.sort(key=lambda h: (-h[0], h[1]))
    hits, seen = [], set()
    for score, doc_id, seq, c, r in found:
        if seq == newest[doc_id] and doc_id not in seen:
            seen.add(doc_id)
            hits.append(Hit(doc_id, score, c, r))
            if len(hits) == k:
                break
    return hits
