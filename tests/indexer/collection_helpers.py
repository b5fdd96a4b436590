"""Helpers for the collection tests: a brute-force oracle and the crash-test writer process."""
from __future__ import annotations

import os
import sys
import zlib

import numpy as np
import scipy.sparse as sp

# Seismic parameters under which the index is exact (no pruning, full summaries, f32 values),
# so a collection's results can be compared with brute force.
EXACT_SEISMIC = dict(pruning="none", summary_energy=1.0, forward_dtype="float32",
                     centroid_fraction=0.3, min_cluster_size=1)
EXACT_SEARCH = dict(query_cut=1000, heap_factor=1.0)


def sparse_field(dim: int, index: str = "seismic", exact: bool = True) -> dict:
    params = EXACT_SEISMIC if (index == "seismic" and exact) else {}
    return {"kind": "sparse", "dim": dim, "index": index, "params": dict(params)}


class Oracle:
    """What the collection should contain, kept as plain dicts."""

    def __init__(self):
        self.docs: dict[str, tuple[np.ndarray, str | None, dict | None]] = {}

    def upsert(self, ids, csr, texts=None, metadata=None):
        dense = csr.toarray().astype(np.float64)
        for i, doc_id in enumerate(ids):
            self.docs[doc_id] = (dense[i], None if texts is None else texts[i],
                                 None if metadata is None else metadata[i])

    def delete(self, ids):
        for doc_id in ids:
            self.docs.pop(doc_id, None)

    def search(self, q_dense: np.ndarray, k: int, pred=None) -> list[tuple[str, float]]:
        out = []
        for doc_id, (v, _, meta) in self.docs.items():
            if pred is not None and not pred(meta or {}):
                continue
            if np.any((v != 0) & (q_dense != 0)):
                out.append((doc_id, float(v @ q_dense)))
        out.sort(key=lambda x: (-x[1], x[0]))
        return out[:k]


def assert_same_hits(hits, expected, rtol=1e-4):
    got = [(h.id, h.score) for h in hits]
    assert len(got) == len(expected), (got, expected)
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], rtol=rtol, atol=1e-4)
    # ids must agree wherever the expected score is not (nearly) tied with a neighbour
    for j, (doc_id, score) in enumerate(expected):
        near = [e for e in expected if abs(e[1] - score) <= 1e-4 * max(1.0, abs(score))]
        if len(near) == 1:
            assert got[j][0] == doc_id, (j, got, expected)


def random_docs(rng, n: int, dim: int, nnz: int = 12) -> sp.csr_matrix:
    rows = np.repeat(np.arange(n), nnz)
    cols = np.concatenate([rng.choice(dim, nnz, replace=False) for _ in range(n)])
    vals = rng.random(n * nnz).astype(np.float32) + 0.05
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, dim), dtype=np.float32)


# ---------------------------------------------------------------- crash-test writer
CRASH_DIM = 65536


def doc_terms(doc_id: str) -> tuple[int, int]:
    """Two (almost surely) unique terms per document, so a query on them finds it."""
    a = zlib.crc32(doc_id.encode()) % CRASH_DIM
    b = zlib.crc32((doc_id + "#").encode()) % CRASH_DIM
    return (a, b) if a != b else (a, (b + 1) % CRASH_DIM)


def doc_vectors(ids: list[str]) -> sp.csr_matrix:
    rows, cols = [], []
    for i, doc_id in enumerate(ids):
        for t in doc_terms(doc_id):
            rows.append(i)
            cols.append(t)
    return sp.csr_matrix((np.full(len(rows), 2.0, np.float32), (rows, cols)), shape=(len(ids), CRASH_DIM))


def crash_writer(data_dir: str, name: str, ack_path: str, round_no: int, ready) -> None:
    """Ingest until killed; after each call returns, append what it acknowledged to ack_path.

    Lines: "I <ids>" before an upsert (intent), "U <ids>" after it returned, "X <id>" before a
    delete, "D <id>" after it returned. The parent kills this process with SIGKILL at a random
    moment — possibly between a call and its acknowledgement line."""
    from indexer.collection import Collection
    coll = Collection.open(data_dir, name)
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    ready.set()
    rng = np.random.default_rng(round_no)
    acked: list[str] = []
    i = 0
    while True:
        ids = [f"r{round_no}-{i}-{j}" for j in range(int(rng.integers(1, 5)))]
        os.write(fd, ("I " + " ".join(ids) + "\n").encode())
        coll.upsert(ids, doc_vectors(ids), texts=ids, metadata=[{"round": round_no, "i": i}] * len(ids))
        os.write(fd, ("U " + " ".join(ids) + "\n").encode())
        acked += ids
        if i % 7 == 6:
            victim = acked.pop(int(rng.integers(len(acked))))
            os.write(fd, f"X {victim}\n".encode())
            coll.delete([victim])
            os.write(fd, f"D {victim}\n".encode())
        i += 1


if __name__ == "__main__":  # manual use: python -m tests.indexer.collection_helpers DIR NAME ACK ROUND
    import threading
    crash_writer(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), threading.Event())
