"""Concurrent queries are encoded in shared batches and each caller gets its own vector."""
import math
import threading
import time

import numpy as np

from service.encoder_cache import ENCODERS
from service.query_batching import QueryBatcher

QUERIES = ["how do bats find insects", "sourdough", "melting glaciers and rising sea level",
           "what is an inverted index used for in search engines", "jazz", "compound interest"] * 4


def _concurrently(fn, items):
    out = [None] * len(items)
    barrier = threading.Barrier(len(items))

    def work(i):
        barrier.wait()
        out[i] = fn(items[i])
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


class _HoldFirstBatch:
    """The encoder, except that its first batch waits until every other caller has queued:
    how many callers share a forward pass must not depend on how fast threads start on a
    loaded machine. (The wait is bounded; the batch count below then tells what went wrong.)"""

    def __init__(self, encoder, batcher, others):
        self._encoder, self._batcher, self._others, self._held = encoder, batcher, others, False

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def encode_queries(self, texts, *args, **kwargs):
        if not self._held:
            self._held = True
            queue, deadline = self._batcher._combiner(self)._queue, time.monotonic() + 60
            while len(queue) < self._others and time.monotonic() < deadline:
                time.sleep(0.005)
        return self._encoder.encode_queries(texts, *args, **kwargs)


def test_dense_and_sparse_queries_batched_equal_alone_encoded():
    dense, sparse = ENCODERS.dense("all-MiniLM-L6-v2"), ENCODERS.sparse("splade-tiny")
    batcher = QueryBatcher(max_batch=8)
    held = _HoldFirstBatch(dense, batcher, len(QUERIES) - 1)
    got = _concurrently(lambda q: batcher.encode(held, q), QUERIES)
    alone = dense.encode_queries(QUERIES, batch_size=1)
    np.testing.assert_allclose(np.stack(got), alone, atol=1e-5)
    # one lone batch, then the 23 queued callers in shared batches of up to 8
    assert batcher._combiner(held).batches == 1 + math.ceil((len(QUERIES) - 1) / 8)

    got = _concurrently(lambda q: batcher.encode(sparse, q), QUERIES)
    for q, row in zip(QUERIES, got):
        ref = sparse.encode_queries([q])
        assert row.shape == (1, sparse.dim)
        # Padding changes the float rounding, so a term whose weight is ~0 (log1p(relu(x)),
        # x a hair above 0) may be present on one side only: compare the vectors, not the
        # index lists; every real term has weight >> 1e-5.
        np.testing.assert_allclose(row.toarray(), ref.toarray(), atol=1e-5)
        assert len(set(row.indices) ^ set(ref.indices)) <= 2, q


def test_each_encoder_gets_its_own_combiner():
    dense, sparse = ENCODERS.dense("all-MiniLM-L6-v2"), ENCODERS.sparse("splade-tiny")
    batcher = QueryBatcher()
    assert batcher._combiner(dense) is batcher._combiner(dense)
    assert batcher._combiner(dense) is not batcher._combiner(sparse)
    assert batcher.encode(dense, "jazz").shape == (dense.dim,)
