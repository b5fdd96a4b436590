"""A search over one snapshot of a collection: ask every container, merge their results.

A snapshot is what Collection._snapshot() takes under the lock: [(container, alive)] for each
sealed segment, each write buffer being sealed and the current write buffer (all Rows). The
search runs without the lock: masks and buffers are replaced or appended, never changed in
place, so the snapshot stays consistent. Each container returns its own top k among its live
rows that pass the filter; the merge keeps the newest version of each document and the k best.
Results are Hits, which read a document's text and metadata only when asked for.
"""
from __future__ import annotations

from itertools import repeat
from operator import itemgetter

import numpy as np

from .dense_index import candidates
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
    """Exact dense searches [(field, q, k, filter)] over one snapshot: one first pass per field
    and container for all of them, then each request's candidates re-scored exactly
    (dense_index.py)."""
    results: list = [None] * len(requests)
    by_field: dict[str, list[int]] = {}
    for i, (field, _, _, _) in enumerate(requests):
        by_field.setdefault(field, []).append(i)
    for field, idx in by_field.items():
        queries = np.stack([requests[i][1] for i in idx])
        scores = {id(c): c.dense_scores(field, queries) for c, _ in snapshot}  # [batch, rows]
        for col, i in enumerate(idx):
            _, q, k, flt = requests[i]

            def run(c, allowed, _n, col=col, q=q, k=k, field=field):
                s = scores[id(c)][col]
                rows = np.arange(c.n_rows) if allowed is None else np.flatnonzero(allowed)
                rows, _ = top_k(rows, s[rows], candidates(k))
                return top_k(rows, c.dense_rescore(field, rows, q), k)
            results[i] = _fan_out(snapshot, run, flt, k)
    return results


def _fan_out(snapshot: list, run, flt: Filter | None, k: int) -> list[Hit]:
    """run(container, allowed rows (None: all), how many) -> (rows, scores) in each container;
    the k best hits over all of them, ties by id."""
    found: list = []  # (-score, id, container, row): a plain tuple sort is the fastest ranking
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
        rows = np.asarray(rows).tolist()
        ids = c.ids
        found += zip((-np.asarray(scores, dtype=np.float64)).tolist(), [ids[r] for r in rows],
                     repeat(c), rows)
    found.sort(key=_RANK)
    if len({f[1] for f in found}) < len(found):
        found = _newest_only(found)
    return [Hit(doc_id, -neg, c, r) for neg, doc_id, c, r in found[:k]]


_RANK = itemgetter(0, 1)


def _newest_only(found: list) -> list:
    """A consistent snapshot holds one version per id; should two containers both hold one,
    the newest (highest sequence number) is the document: a safety net."""
    newest: dict = {}
    for _, doc_id, c, r in found:
        newest[doc_id] = max(int(c.seqs[r]), newest.get(doc_id, -1))
    seen: set = set()
    out = []
    for f in found:
        _, doc_id, c, r = f
        if doc_id not in seen and int(c.seqs[r]) == newest[doc_id]:
            seen.add(doc_id)
            out.append(f)
    return out
