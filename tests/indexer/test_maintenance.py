"""Flushes and merges run in a background thread: a write waits for neither, only for room
(back-pressure at max_buffer_docs); the policy decides the same way inline and in the thread."""
import threading

import numpy as np
import pytest
import scipy.sparse as sp

from indexer.collection import Collection
from indexer.collection_config import CollectionConfig
from indexer.maintenance import MaintenancePolicy

from .collection_helpers import sparse_field

DIM = 2000


def vectors(n, seed, nnz=40):
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n), nnz)
    cols = np.concatenate([rng.choice(DIM, nnz, replace=False) for _ in range(n)])
    return sp.csr_matrix((rng.random(n * nnz, dtype=np.float32) + 0.01, (rows, cols)), shape=(n, DIM))


def maintainer_threads(name: str) -> set[str]:
    return {t.name for t in threading.enumerate() if t.name in (f"lsr-flush-{name}", f"lsr-merge-{name}")}


def test_the_policy_defaults_and_decisions():
    cfg = CollectionConfig.from_dict({"fields": {"s": sparse_field(10)}, "flush_docs": 100})
    policy = MaintenancePolicy.from_config(cfg)
    assert cfg.max_buffer_docs == 400 and policy.flush_due(100) and not policy.flush_due(99)
    assert policy.full(400) and not policy.full(399)
    assert policy.merge_due([10] * 17)  # more than max_segments
    assert not policy.merge_due([10, 10]) and policy.merge_due([30_000, 30_000])  # small ones add up
    with pytest.raises(ValueError, match="max_buffer_docs"):
        CollectionConfig.from_dict({"fields": {"s": sparse_field(10)}, "flush_docs": 100, "max_buffer_docs": 50})


def test_writes_do_not_wait_for_a_merge(tmp_path):
    """A forced merge of a large collection runs in one thread; single-document upserts and
    deletes, each durable, all return while it is still running."""
    coll = Collection.create(tmp_path, "c", {"sparse": sparse_field(DIM, "seismic", exact=False)},
                             flush_docs=6000, max_segments=0)
    for b in range(5):
        coll.upsert([f"d{b}-{i}" for i in range(6000)], vectors(6000, b))
        coll.flush()
    merging = threading.Thread(target=coll.merge, kwargs={"force": True})
    merging.start()
    while not any((tmp_path / "c" / "segments").glob(".seg-*")):  # the merged segment is being written
        assert merging.is_alive(), "the merge ended before it could be observed"
    for i in range(20):
        coll.upsert([f"new-{i}"], vectors(1, 100 + i))
        coll.delete([f"d0-{i}"])
    still_merging = merging.is_alive()
    merging.join()
    assert still_merging, "the merge finished before the writes: make it larger"
    assert coll.stats()["segments"] == 1 and len(coll) == 30_000
    assert all(f"new-{i}" in coll and f"d0-{i}" not in coll for i in range(20))
    coll.close()


def test_back_pressure_holds_the_buffer_near_its_high_water_mark(tmp_path):
    """Upserts faster than the maintainer can seal: the buffer never grows past
    max_buffer_docs by more than one batch, and every write lands."""
    batch, high = 100, 600
    coll = Collection.create(tmp_path, "c", {"sparse": sparse_field(DIM, "seismic", exact=False)},
                             flush_docs=300, max_buffer_docs=high, exact_segment_docs=0, max_segments=0)
    peak, stop = [0], threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], coll.buffered_rows())
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for b in range(30):
            coll.upsert([f"d{b}-{i}" for i in range(batch)], vectors(batch, b))
    finally:
        stop.set()
        watcher.join()
    coll.wait_for_maintenance()
    assert peak[0] <= high + batch and len(coll) == 30 * batch
    assert coll.stats()["buffer_documents"] < 300 and coll.stats()["segments"] >= 2
    coll.close()


def test_close_stops_the_maintainer_and_reopen_resumes_from_the_wal(tmp_path):
    name = "maintained-once"
    coll = Collection.create(tmp_path, name, {"sparse": sparse_field(DIM, "exact")}, flush_docs=50)
    coll.upsert([f"d{i}" for i in range(40)], vectors(40, 1))
    assert maintainer_threads(name) == {f"lsr-flush-{name}", f"lsr-merge-{name}"}
    coll.close()
    assert not maintainer_threads(name)
    with Collection.open(tmp_path, name) as coll:
        coll.upsert([f"e{i}" for i in range(20)], vectors(20, 2))  # 60 >= 50: a flush is due
        coll.wait_for_maintenance()
        assert coll.stats()["segments"] == 1 and len(coll) == 60


def test_a_collection_dropped_without_close_does_not_keep_its_thread(tmp_path):
    import gc
    import time
    coll = Collection.create(tmp_path, "forgotten", {"sparse": sparse_field(DIM, "exact")})
    del coll
    gc.collect()
    deadline = time.time() + 30
    while maintainer_threads("forgotten") and time.time() < deadline:
        time.sleep(0.05)
    assert not maintainer_threads("forgotten")


def test_a_cancelled_merge_changes_nothing(tmp_path):
    """merge(cancelled=...) gives up between the new segment's fields (how close() stops the
    maintainer's merge): nothing rewritten, no leftover directory, every document still there,
    and a later merge does the work."""
    fields = {"a": sparse_field(DIM, "exact"), "b": sparse_field(DIM, "exact")}
    coll = Collection.create(tmp_path, "c", fields, max_segments=0, maintenance=False)
    for b in range(3):
        v = vectors(50, b)
        coll.upsert([f"d{b}-{i}" for i in range(50)], {"a": v, "b": v})
        coll.flush()
    asked = []

    def after_first_field() -> bool:
        asked.append(1)
        return len(asked) > 1
    assert coll.merge(force=True, cancelled=after_first_field) == 0
    assert len(asked) == 2  # asked before field a (go on), then before field b (stop)
    assert coll.stats()["segments"] == 3 and len(coll) == 150
    assert sorted(p.name for p in (tmp_path / "c" / "segments").iterdir()) == sorted(
        f"seg-{i:06d}" for i in (1, 2, 3))
    q = vectors(1, 0)[0]
    assert coll.search(q.indices, q.data, k=1, field="a")[0].id == "d0-0"
    assert coll.merge(force=True) == 3 and coll.stats()["segments"] == 1 and len(coll) == 150
    coll.close()


def test_too_many_segments_merge_even_when_none_is_small(tmp_path):
    """max_segments holds on its own: segments that each hold merge_small_docs or more (a
    flush that found more rows than flush_docs, a slow flusher) still merge when there are too
    many of them — the ones with the fewest live documents, just enough of them."""
    coll = Collection.create(tmp_path, "c", {"s": sparse_field(DIM, "exact")}, max_segments=2,
                             merge_small_docs=4, maintenance=False)
    for b, n in enumerate((10, 6, 8)):
        coll.upsert([f"d{b}-{i}" for i in range(n)], vectors(n, b))
        coll.flush()  # without a maintainer, the third flush merges inline
    policy = MaintenancePolicy.from_config(coll.config)
    assert sorted(coll.live_per_segment()) == [10, 14]  # the 6 and the 8 merged, not the 10
    assert not policy.merge_due(coll.live_per_segment())
    assert coll.merge() == 0  # nothing due: no rewrite of a segment on its own
    q = vectors(8, 2)[7]
    assert coll.search(q.indices, q.data, k=1, field="s")[0].id == "d2-7" and len(coll) == 24
    coll.close()


def test_the_maintainer_brings_the_segment_count_back_to_max_segments(tmp_path):
    coll = Collection.create(tmp_path, "c", {"s": sparse_field(DIM, "exact")}, flush_docs=4,
                             max_segments=2, merge_small_docs=4)
    for b in range(5):  # one batch a flush: five segments of four documents, none small
        coll.upsert([f"d{b}-{i}" for i in range(4)], vectors(4, b))
        coll.wait_for_maintenance(30)  # TimeoutError while a merge stays due with nothing to merge
    assert coll.stats()["segments"] <= 2 and len(coll) == 20
    assert not MaintenancePolicy.from_config(coll.config).merge_due(coll.live_per_segment())
    coll.close()
