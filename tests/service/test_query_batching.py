"""Concurrent queries are encoded in shared batches and each caller gets its own vector."""
import threading

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


def test_dense_and_sparse_queries_batched_equal_alone_encoded():
    dense, sparse = ENCODERS.dense("all-MiniLM-L6-v2"), ENCODERS.sparse("splade-tiny")
    batcher = QueryBatcher(max_batch=8)
    got = _concurrently(lambda q: batcher.encode(dense, q), QUERIES)
    alone = dense.encode_queries(QUERIES, batch_size=1)
    np.testing.assert_allclose(np.stack(got), alone, atol=1e-5)
    assert batcher._combiner(dense).batches < len(QUERIES)  # some callers shared a forward pass

    got = _concurrently(lambda q: batcher.encode(sparse, q), QUERIES)
    for q, row in zip(QUERIES, got):
        ref = sparse.encode_queries([q])
        assert row.shape == (1, sparse.dim)
        np.testing.assert_array_equal(row.indices, ref.indices)
        np.testing.assert_allclose(row.data, ref.data, atol=1e-5)


def test_each_encoder_gets_its_own_combiner():
    dense, sparse = ENCODERS.dense("all-MiniLM-L6-v2"), ENCODERS.sparse("splade-tiny")
    batcher = QueryBatcher()
    assert batcher._combiner(dense) is batcher._combiner(dense)
    assert batcher._combiner(dense) is not batcher._combiner(sparse)
    assert batcher.encode(dense, "jazz").shape == (dense.dim,)
