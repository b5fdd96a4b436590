"""Exact dense top-k over a segment's float32 vectors, at a fraction of a full scan's cost.

Brute force reads every vector for every query: 100,000 x 384 float32 is 154 MB a query,
which is memory-bound. The scan reads int8 codes instead (one scale per row, symmetric:
code = round(x / scale), scale = max|x| / 127), a quarter of the bytes, through the C++
kernel (native/dense_i8.hpp); the best ``candidates(k)`` rows are then re-scored exactly from
the float32 vectors and the top k of those is the answer. The first pass is off by at most
~0.002 on a unit-vector dot product (MiniLM on SciFact), while the k-th and the 4k+64-th
exact scores lie much further apart, so the re-scored top k is the exact top k (tests check
it against the float32 scan). Without the extension the first pass is the exact float32 scan.
Measured in BENCHMARKS.md ("Serving engine").
"""
from __future__ import annotations

import numpy as np

from .native import native_module


def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes int8 [n, d], scales float32 [n]) of float32 rows; an all-zero row gets scale 1."""
    v = np.asarray(vectors, dtype=np.float32)
    peak = np.abs(v).max(axis=1) if v.size else np.zeros(len(v), np.float32)
    scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    codes = np.clip(np.rint(v / scales[:, None]), -127, 127).astype(np.int8)
    return codes, scales


def candidates(k: int) -> int:
    """How many first-pass rows are re-scored exactly for a top k."""
    return 4 * k + 64


class DenseVectors:
    """A dense field of a segment: its float32 vectors (memory-mapped) and their int8 codes."""

    def __init__(self, vectors: np.ndarray, codes: np.ndarray | None = None,
                 scales: np.ndarray | None = None):
        self.vectors = vectors
        if codes is None or scales is None:  # a segment written before the codes existed
            codes, scales = quantize(vectors)
        if codes.shape != vectors.shape or scales.shape != (len(vectors),):
            raise ValueError(f"int8 codes {codes.shape} / scales {scales.shape} do not match the "
                             f"vectors {vectors.shape}")
        self.codes, self.scales = codes, scales

    def first_pass(self, queries: np.ndarray) -> np.ndarray:
        """[n_queries, n_rows] scores to rank candidates by (approximate with the extension)."""
        native = native_module()
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if native is None or not hasattr(native, "dense_i8_scores") or len(self.vectors) == 0:
            return q @ self.vectors.T
        return native.dense_i8_scores(self.codes, self.scales, q)

    def rescore(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Exact float32 dot products of these rows with one query."""
        return np.asarray(self.vectors[rows], dtype=np.float32) @ np.asarray(query, dtype=np.float32)
