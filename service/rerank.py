"""Multivector MaxSim reranking of first-stage candidates, with the two optimisations of
"Multivector Reranking in the Era of Strong First-Stage Retrievers":

- candidate pruning: a candidate whose first-stage score is below ``alpha`` x the best
  first-stage score is not reranked (a strong first stage rarely promotes such documents);
- early exit: candidates are scored in first-stage order and scoring stops after ``beta``
  consecutive candidates that do not enter the current MaxSim top-k.

With alpha=0 and beta=None every candidate is scored (exhaustive reranking). Document token
vectors come from a callable, so the work saved is encoding as well as scoring.
"""
from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from encoders.multivector import maxsim


@dataclass
class RerankStats:
    candidates: int
    pruned: int   # dropped by the score-ratio test
    scored: int   # MaxSim computations (and document encodings) done


def maxsim_rerank(candidates: Sequence[tuple[str, float]], q_tokens: np.ndarray,
                  doc_tokens: Callable[[list[str]], list[np.ndarray]], k: int,
                  alpha: float = 0.0, beta: int | None = None, chunk: int = 4
                  ) -> tuple[list[tuple[str, float]], RerankStats]:
    """Rerank ``candidates`` ((id, first-stage score), best first) by MaxSim.

    Returns the scored candidates by MaxSim descending (ties keep first-stage order); callers
    append the unscored rest in first-stage order.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if beta is not None and beta < 1:
        raise ValueError(f"beta must be >= 1, got {beta}")
    cands = list(candidates)
    if not cands:
        return [], RerankStats(0, 0, 0)
    top = cands[0][1]
    # The ratio test only makes sense for positive scores (cosine may be negative).
    kept = [c for c in cands if top <= 0 or c[1] >= alpha * top]
    heap: list[float] = []
    scored: list[tuple[float, int, str]] = []
    misses, i = 0, 0
    while i < len(kept):
        n = chunk
        if beta is not None and len(heap) >= k:
            n = min(chunk, beta - misses)  # encode no more than the early exit can still need
        group = kept[i:i + n]
        i += len(group)
        for (doc, _), toks in zip(group, doc_tokens([d for d, _ in group])):
            s = maxsim(q_tokens, toks)
            scored.append((s, len(scored), doc))
            if len(heap) < k:
                heapq.heappush(heap, s)
                misses = 0
            elif s > heap[0]:
                heapq.heapreplace(heap, s)
                misses = 0
            else:
                misses += 1
        if beta is not None and misses >= beta:
            break
    scored.sort(key=lambda x: (-x[0], x[1]))
    return [(d, float(s)) for s, _, d in scored], RerankStats(len(cands), len(cands) - len(kept), len(scored))
