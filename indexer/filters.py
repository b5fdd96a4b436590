"""Metadata filters: parse and validate a filter, evaluate it to a row mask over a segment.

Syntax (a JSON object; several keys are a conjunction):
    {"lang": "en"}                          equality (also {"lang": {"eq": "en"}})
    {"lang": {"in": ["en", "fr"]}}          membership
    {"year": {"gte": 2000, "lt": 2010}}     numeric range: any of gt, gte, lt, lte
Values compare by JSON type: 1 and 1.0 are equal, true is not 1, "1" is not 1. A document
without the key, or whose value is a list or object, matches no condition on that key.

Evaluation is columnar: for each filtered key a segment builds, once, an int32 code per row
(the value's index in a per-key vocabulary) and a float64 column of numeric values, so a
condition is one vectorised comparison over the segment.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InvalidInputError
_RANGE_OPS = ("gt", "gte", "lt", "lte")
_OPS = ("eq", "in") + _RANGE_OPS


def _norm(v):
    """A hashable key under which equal JSON scalars coincide; None for unfilterable values."""
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, (int, float)):
        return ("n", float(v))
    if isinstance(v, str):
        return ("s", v)
    if v is None:
        return ("z", None)
    return None


def _check_scalar(key, v):
    if _norm(v) is None or (isinstance(v, float) and not math.isfinite(v)):
        raise InvalidInputError(f"filter on {key!r}: value {v!r} is not a string, number, boolean or null")


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    value: object


class Filter:
    """A validated conjunction of conditions; build with Filter.parse(dict)."""

    def __init__(self, conditions: list[Condition]):
        self.conditions = conditions

    @classmethod
    def parse(cls, spec) -> "Filter | None":
        if spec is None or isinstance(spec, Filter):
            return spec
        if not isinstance(spec, dict):
            raise InvalidInputError(f"a filter must be a JSON object, got {type(spec).__name__}")
        conds = []
        for key, cond in spec.items():
            if not isinstance(key, str) or not key:
                raise InvalidInputError(f"filter keys must be non-empty strings, got {key!r}")
            if not isinstance(cond, dict):
                _check_scalar(key, cond)
                conds.append(Condition(key, "eq", cond))
                continue
            if not cond:
                raise InvalidInputError(f"filter on {key!r} has no operator; use one of {list(_OPS)}")
            for op, v in cond.items():
                if op not in _OPS:
                    raise InvalidInputError(f"filter on {key!r}: unknown operator {op!r}; use one of {list(_OPS)}")
                if op == "eq":
                    _check_scalar(key, v)
                elif op == "in":
                    if not isinstance(v, (list, tuple)):
                        raise InvalidInputError(f"filter on {key!r}: 'in' takes a list, got {v!r}")
                    for x in v:
                        _check_scalar(key, x)
                    v = tuple(v)
                elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise InvalidInputError(f"filter on {key!r}: {op!r} takes a finite number, got {v!r}")
                conds.append(Condition(key, op, v))
        return cls(conds)

    def mask(self, columns: "MetadataColumns") -> np.ndarray:
        out = np.ones(columns.n_rows, dtype=np.bool_)
        for c in self.conditions:
            if c.op in _RANGE_OPS:
                num = columns.numeric(c.key)
                with np.errstate(invalid="ignore"):
                    m = {"gt": num > c.value, "gte": num >= c.value,
                         "lt": num < c.value, "lte": num <= c.value}[c.op]
            else:
                codes, vocab = columns.codes(c.key)
                wanted = [c.value] if c.op == "eq" else list(c.value)
                ids = [vocab[k] for k in map(_norm, wanted) if k in vocab]
                m = np.isin(codes, np.asarray(ids, dtype=np.int32)) if ids else np.zeros_like(out)
            out &= m
        return out


class MetadataColumns:
    """Per-key columns built lazily from a list of metadata dicts (one per row)."""

    def __init__(self, metadata: list):
        self._meta = metadata
        self.n_rows = len(metadata)
        self._codes: dict[str, tuple[np.ndarray, dict]] = {}
        self._numeric: dict[str, np.ndarray] = {}

    def _values(self, key):
        return [m.get(key) if isinstance(m, dict) else None for m in self._meta]

    def value(self, row: int, key: str):
        """One row's raw value of ``key`` (None when absent)."""
        m = self._meta[row]
        return m.get(key) if isinstance(m, dict) else None

    def codes(self, key: str) -> tuple[np.ndarray, dict]:
        if key not in self._codes:
            vocab: dict = {}
            codes = np.full(self.n_rows, -1, dtype=np.int32)
            for i, m in enumerate(self._meta):
                if isinstance(m, dict) and key in m:
                    k = _norm(m[key])
                    if k is not None:
                        codes[i] = vocab.setdefault(k, len(vocab))
            self._codes[key] = (codes, vocab)
        return self._codes[key]

    def numeric(self, key: str) -> np.ndarray:
        if key not in self._numeric:
            col = np.full(self.n_rows, np.nan)
            for i, v in enumerate(self._values(key)):
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    col[i] = v
            self._numeric[key] = col
        return self._numeric[key]
