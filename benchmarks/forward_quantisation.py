"""Recall ceiling of a quantised forward index: exact top-10 over quantised document vectors
against exact top-10 over the float32 ones (no index involved, so the figure bounds what any
index storing such values can reach).

    python -m benchmarks.forward_quantisation --dataset synthetic-100k

Queries come from query sample 1 of the synthetic generator, never the reported ones.
Prints recall@10 for float16 and per-document linear 10/9/8/7/6-bit values (scale = the document's
largest value / (2^bits - 1), round to nearest).
"""
from __future__ import annotations

import argparse

import numpy as np

from .synthetic import dataset


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, truth)]))


def top10(docs, queries) -> np.ndarray:
    return np.argsort(-(queries @ docs.T).toarray(), axis=1, kind="stable")[:, :10]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="synthetic-100k")
    ap.add_argument("--queries", type=int, default=1000)
    args = ap.parse_args()
    docs, queries = dataset(args.dataset, args.queries, 1)
    docs = docs.tocsr().astype(np.float32)
    truth = top10(docs, queries)
    f16 = docs.copy()
    f16.data = f16.data.astype(np.float16).astype(np.float32)
    print(f"{args.dataset}, {queries.shape[0]} queries (sample 1): recall@10 of exact search")
    print(f"  float16: {recall(top10(f16, queries), truth):.4f}")
    nnz = np.diff(docs.indptr)
    row_peak = np.zeros(docs.shape[0], np.float32)
    row_peak[nnz > 0] = np.maximum.reduceat(docs.data, docs.indptr[:-1][nnz > 0])
    for bits in (10, 9, 8, 7, 6):
        scale = np.repeat(row_peak / (2 ** bits - 1), nnz)
        q = docs.copy()
        q.data = (np.round(docs.data / scale) * scale).astype(np.float32)
        print(f"  u{bits} per document: {recall(top10(q, queries), truth):.4f}")


if __name__ == "__main__":
    main()
