"""Multivector MaxSim reranking of first-stage candidates, with the two optimisations of
"Multivector Reranking in the Era of Strong First-Stage Retrievers":

- candidate pruning: a candidate whose first-stage score is below ``alpha`` x the best
  first-stage score is not reranked (a strong first stage rarely promotes such documents);
- early exit: candidates are scored in first-stage order and scoring stops after ``beta``
  consecutive candidates that do not enter the current top-k.

With alpha=0 and beta=None every candidate is scored (exhaustive reranking). Document token
vectors come from a callable, so the work saved is encoding as well as scoring.

Score. With ``first_stage_weight`` = None a candidate's score is its MaxSim. With a weight w
in [0, 1] it is the interpolation

    w x minmax(first-stage score over the candidates) + (1 - w) x MaxSim / (query tokens)

Both parts lie in a fixed range known before any candidate is scored (min-max over the
first-stage list is in [0, 1]; MaxSim of unit vectors divided by the query length is in
[-1, 1]), so each candidate's final score is computed as soon as it is scored, and the early
exit tests that final score.
"""
from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from encoders.multivector import StackedTokens, maxsim_scores


@dataclass
class RerankStats:
    candidates: int
    pruned: int   # dropped by the score-ratio test
    scored: int   # MaxSim computations (and document encodings) done


def normalized_first_stage(scores: Sequence[float]) -> np.ndarray:
    """Min-max to [0, 1] over the candidates; a constant list maps to ones."""
    s = np.asarray(scores, dtype=np.float64)
    if len(s) == 0:
        return s
    lo, hi = s.min(), s.max()
    return np.ones_like(s) if hi - lo <= 1e-12 else (s - lo) / (hi - lo)


def interpolate(first_norm: np.ndarray | float, maxsim: np.ndarray | float, n_query_tokens: int,
                weight: float) -> np.ndarray | float:
    """weight x normalised first-stage score + (1 - weight) x MaxSim / query tokens."""
    return weight * first_norm + (1.0 - weight) * maxsim / max(n_query_tokens, 1)


def maxsim_rerank(candidates: Sequence[tuple[str, float]], q_tokens: np.ndarray,
                  doc_tokens: Callable[[list[str]], list[np.ndarray] | StackedTokens], k: int,
                  alpha: float = 0.0, beta: int | None = None, chunk: int = 4,
                  first_stage_weight: float | None = None,
                  ) -> tuple[list[tuple[str, float]], RerankStats]:
    """Rerank ``candidates`` ((id, first-stage score), best first) by MaxSim, or by MaxSim
    interpolated with the first-stage score (``first_stage_weight``, see the module doc).

    Returns the scored candidates by score descending (ties keep first-stage order); callers
    append the unscored rest in first-stage order. Documents are fetched and scored in batches:
    all at once without early exit; with ``beta``, the first ``k`` (they always enter the
    top-k) and then ``chunk`` at a time, never more than the early exit can still need.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if beta is not None and beta < 1:
        raise ValueError(f"beta must be >= 1, got {beta}")
    if first_stage_weight is not None and not 0.0 <= first_stage_weight <= 1.0:
        raise ValueError(f"first_stage_weight must be in [0, 1], got {first_stage_weight}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    cands = list(candidates)
    if not cands:
        return [], RerankStats(0, 0, 0)
    top = cands[0][1]
    norm = normalized_first_stage([s for _, s in cands])
    # The ratio test only makes sense for positive scores (cosine may be negative).
    kept = [(i, d) for i, (d, s) in enumerate(cands) if top <= 0 or s >= alpha * top]
    n_q = len(q_tokens)
    heap: list[float] = []
    scored: list[tuple[float, int, str]] = []
    misses, i = 0, 0
    while i < len(kept):
        if beta is None:
            n = len(kept)
        elif len(heap) < k:
            n = k - len(heap)
        else:
            n = min(chunk, beta - misses)  # fetch no more than the early exit can still need
        group = kept[i:i + n]
        i += len(group)
        sims = maxsim_scores(q_tokens, doc_tokens([d for _, d in group]))
        for (pos, doc), m in zip(group, sims.tolist()):
            s = m if first_stage_weight is None else interpolate(norm[pos], m, n_q, first_stage_weight)
            scored.append((s, pos, doc))
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
        if beta is not None and misses >= beta:
            break
    scored.sort(key=lambda x: (-x[0], x[1]))
    return [(d, float(s)) for s, _, d in scored], RerankStats(len(cands), len(cands) - len(kept), len(scored))
