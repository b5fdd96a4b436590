"""Fusion of ranked lists: reciprocal rank fusion and convex combination of normalised scores.

A ranked list is a sequence of (doc id, score) pairs, best first. Every function is pure and
returns (doc id, fused score) pairs sorted by score descending, ties by id ascending, so a
fused ranking is deterministic (which keeps pagination stable).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

Ranked = Sequence[tuple[str, float]]


def _sorted(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    return sorted(scores.items(), key=lambda x: (-x[1], x[0]))


def rrf(lists: Mapping[str, Ranked], k: float = 60.0,
        weights: Mapping[str, float] | None = None) -> list[tuple[str, float]]:
    """Reciprocal rank fusion (Cormack et al.): sum over lists of w / (k + rank), rank from 1."""
    if k < 0:
        raise ValueError(f"rrf k must be >= 0, got {k}")
    out: dict[str, float] = {}
    for name, ranked in lists.items():
        w = 1.0 if weights is None else weights.get(name, 0.0)
        for rank, (doc, _) in enumerate(ranked, 1):
            out[doc] = out.get(doc, 0.0) + w / (k + rank)
    return _sorted(out)


def minmax(scores: Sequence[float]) -> list[float]:
    """Scale to [0, 1]; a constant list maps to all ones (every document equally good)."""
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if hi - lo <= 1e-12:
        return [1.0] * len(scores)
    return [(s - lo) / (hi - lo) for s in scores]


def zscore(scores: Sequence[float]) -> list[float]:
    """Standardise to mean 0, standard deviation 1; a constant list maps to zeros."""
    if not scores:
        return []
    mean = sum(scores) / len(scores)
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    if sd <= 1e-12:
        return [0.0] * len(scores)
    return [(s - mean) / sd for s in scores]


NORMALISERS = {"minmax": minmax, "zscore": zscore}


def convex(lists: Mapping[str, Ranked], weights: Mapping[str, float],
           normalization: str = "minmax") -> list[tuple[str, float]]:
    """sum_i w_i * norm_i(score): weights must be non-negative and are rescaled to sum to 1.

    A document missing from a list gets that list's lowest normalised score (0 for min-max):
    it was not retrieved, so it is treated as no better than the worst retrieved document.
    """
    if normalization not in NORMALISERS:
        raise ValueError(f"normalization must be one of {sorted(NORMALISERS)}, got {normalization!r}")
    ws = {n: float(weights.get(n, 0.0)) for n in lists}
    if any(w < 0 for w in ws.values()):
        raise ValueError("convex weights must be non-negative")
    total = sum(ws.values())
    if total <= 0:
        raise ValueError("convex weights must not all be zero")
    norm = NORMALISERS[normalization]
    normed: dict[str, dict[str, float]] = {}
    floors: dict[str, float] = {}
    for name, ranked in lists.items():
        vals = norm([s for _, s in ranked])
        normed[name] = {d: v for (d, _), v in zip(ranked, vals)}
        floors[name] = min(vals) if vals else 0.0
    docs = {d for r in lists.values() for d, _ in r}
    out = {d: sum(ws[n] / total * normed[n].get(d, floors[n]) for n in lists) for d in docs}
    return _sorted(out)


def hybrid_weights(names: Sequence[str], alpha: float) -> dict[str, float]:
    """α for the dense list, 1 - α shared equally by the lexical (sparse, bm25) lists."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    lexical = [n for n in names if n != "dense"]
    w = {n: (1.0 - alpha) / len(lexical) for n in lexical} if lexical else {}
    if "dense" in names:
        w["dense"] = alpha if lexical else 1.0
    return w
