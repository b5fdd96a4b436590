"""Facets: how many documents carry each value of a metadata key.

Counted from the same per-key columns as filters (filters.MetadataColumns: an int32 code per
row into a per-key vocabulary), so a count over a segment is one ``bincount`` over the rows
asked for; no text is read. Values compare as filters compare them (1 and 1.0 are one value,
true is not 1). A list value counts each of its scalar elements (a "tags" key); a row without
the key, or with an object value, is ``missing``.

``FacetCounts`` adds up over segments (and over shards: ``add`` another one's ``as_dict()``).
"""
from __future__ import annotations

import numpy as np

from .filters import MetadataColumns, _norm


def _value(key):
    """The JSON value of a filters._norm key."""
    kind, v = key
    if kind == "n":
        return int(v) if float(v).is_integer() and abs(v) < 2**53 else v
    return v


class FacetCounts:
    def __init__(self):
        self.counts: dict[tuple, int] = {}
        self.missing = 0
        self.documents = 0

    def count(self, columns: MetadataColumns, rows: np.ndarray, key: str) -> None:
        """Add the rows' values of ``key``."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return
        self.documents += len(rows)
        codes, vocab = columns.codes(key)
        sub = codes[rows]
        found = np.bincount(sub[sub >= 0], minlength=len(vocab))
        for norm, code in vocab.items():
            if found[code]:
                self.counts[norm] = self.counts.get(norm, 0) + int(found[code])
        for r in rows[sub < 0]:
            v = columns.value(int(r), key)
            elems = [_norm(x) for x in v] if isinstance(v, list) else []
            elems = [e for e in dict.fromkeys(elems) if e is not None]
            if not elems:
                self.missing += 1
            for e in elems:
                self.counts[e] = self.counts.get(e, 0) + 1

    def as_dict(self) -> dict:
        """JSON-able: {"values": [[value, count], ...], "missing": n, "documents": n}."""
        return {"values": [[_value(k), c] for k, c in self.counts.items()], "missing": self.missing,
                "documents": self.documents}

    def add(self, other: dict) -> None:
        for v, c in other["values"]:
            k = _norm(v)
            self.counts[k] = self.counts.get(k, 0) + int(c)
        self.missing += int(other["missing"])
        self.documents += int(other["documents"])

    def top(self, size: int) -> tuple[list[tuple], int]:
        """The ``size`` most frequent values (ties: by type, then value) and the rest's total."""
        order = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0][0], _sortable(kv[0][1])))
        head = [(_value(k), c) for k, c in order[:size]]
        return head, sum(c for _, c in order[size:])


def _sortable(v):
    return (0, "") if v is None else (1, v)
