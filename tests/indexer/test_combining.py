"""Flat combining: every caller gets its own result, a failing request fails alone, and
concurrent callers really are served in shared batches."""
import threading
import time

import numpy as np
import pytest

from indexer.collection import Collection
from indexer.combining import Combiner

from .conftest import assert_topk_up_to_ties


def test_lone_caller_runs_its_own_request():
    seen = []
    c = Combiner(lambda reqs: (seen.append(list(reqs)), [r * 2 for r in reqs])[1])
    assert c.submit(3) == 6 and c.submit(5) == 10
    assert seen == [[3], [5]] and c.batches == 2


def test_concurrent_callers_share_batches_and_get_their_own_results():
    gate = threading.Event()
    sizes = []

    def run(reqs):
        # hold the first batch so the other callers queue up behind it (the main thread opens
        # the gate; the timeout only keeps a broken run from hanging, generous for a loaded CI)
        gate.wait(120)
        sizes.append(len(reqs))
        return [r * r for r in reqs]

    c = Combiner(run, max_batch=8)
    out = {}
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, c.submit(i))) for i in range(20)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(c._queue) + sum(sizes) < 19:  # all but the running caller are queued
        assert time.monotonic() < deadline, "the callers did not queue up within 60 s"
        time.sleep(0.01)
    gate.set()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert out == {i: i * i for i in range(20)}
    assert sum(sizes) == 20 and max(sizes) == 8 and len(sizes) < 20


def test_a_bad_request_fails_alone_and_the_combiner_recovers():
    calls = []

    def run(reqs):
        calls.append(list(reqs))
        if "bad" in reqs:
            raise ValueError("bad request in batch")
        return [r.upper() for r in reqs]
    c = Combiner(run)
    with pytest.raises(ValueError, match="bad request"):
        c.submit("bad")
    assert c.submit("good") == "GOOD"
    # a batch holding one bad request: it is rerun one request at a time
    for r in ("a", "bad", "b"):
        c._queue.append(_slot(r))
    slots = list(c._queue)
    c._run_queued()
    assert [s.done for s in slots] == [True, True, True]
    assert slots[0].result == "A" and slots[2].result == "B" and slots[0].error is None
    assert isinstance(slots[1].error, ValueError)
    assert calls[-4:] == [["a", "bad", "b"], ["a"], ["bad"], ["b"]]
    with pytest.raises(RuntimeError, match="2 results for 1"):
        Combiner(lambda reqs: [1, 2]).submit(0)
    with pytest.raises(ValueError, match="max_batch"):
        Combiner(lambda r: r, max_batch=0)


def _slot(request):
    from indexer.combining import _Slot
    return _Slot(request)


def test_concurrent_dense_searches_equal_sequential_ones(tmp_path):
    rng = np.random.default_rng(7)
    coll = Collection.create(tmp_path, "dense", {"dense": {"kind": "dense", "dim": 8}},
                             flush_docs=60, exact_segment_docs=10)
    n = 150  # two sealed segments and a write buffer
    vecs = rng.standard_normal((n, 8)).astype(np.float32)
    ids = [f"d{i}" for i in range(n)]
    for a in range(0, n, 30):
        coll.upsert(ids[a:a + 30], {"dense": vecs[a:a + 30]}, metadata=[{"i": i} for i in range(a, a + 30)])
    coll.delete(["d3", "d77"])
    queries = rng.standard_normal((40, 8)).astype(np.float32)
    args = [(q, 1 + j % 7, {"i": {"lt": 100}} if j % 3 == 0 else None) for j, q in enumerate(queries)]
    expected = [[(h.id, h.score) for h in coll.search_dense(q, k=k, filter=f)] for q, k, f in args]
    batches_before = coll._dense_combiner.batches
    got = [None] * len(args)
    barrier = threading.Barrier(len(args))

    def worker(j):
        barrier.wait()
        q, k, f = args[j]
        got[j] = [(h.id, h.score) for h in coll.search_dense(q, k=k, filter=f)]
    threads = [threading.Thread(target=worker, args=(j,)) for j in range(len(args))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    # A batched product may round differently from a single one (last bits only; which bits
    # depends on the CPU's BLAS kernels and the thread count), so every ranking is compared
    # with its brute-force scores up to near-ties, never as an exact order.
    live = np.array([i not in (3, 77) for i in range(n)])
    for (q, k, f), hits, seq in zip(args, got, expected):
        allowed = live & (np.arange(n) < 100) if f else live
        truth = {ids[i]: float(s) for i, s in zip(np.flatnonzero(allowed), vecs[allowed] @ q)}
        assert_topk_up_to_ties(hits, truth, k)
        assert_topk_up_to_ties(seq, truth, k)
    # concurrent == sequential, position by position, to the last bits
    np.testing.assert_allclose([s for hits in got for _, s in hits],
                               [s for hits in expected for _, s in hits], rtol=1e-5)
    assert coll._dense_combiner.batches - batches_before <= len(args)
    coll.close()
