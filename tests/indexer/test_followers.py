"""Read-only followers: a process that serves a collection another process writes.

A follower takes no lock and writes nothing; refresh() applies the writer's new WAL records and
swaps in a new manifest whole, so a search sees the old state or the new one, never a segment
half installed, and a writer killed mid-merge leaves followers serving.
"""
import os
import signal
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp

from indexer.collection import Collection
from indexer.errors import ReadOnlyError

from .collection_helpers import EXACT_SEARCH, sparse_field

DIM = 200
POLICY = dict(flush_docs=40, merge_small_docs=120, max_segments=4)


def vectors(n, seed):
    return sp.random(n, DIM, density=0.08, format="csr", random_state=seed, dtype=np.float32)


def queries(n=12):
    q = vectors(n, 12345)
    return [(q[i].indices, q[i].data) for i in range(n) if q[i].nnz]


def results(coll, qs):
    return [[(h.id, round(h.score, 4)) for h in coll.search(i, v, k=8, **EXACT_SEARCH)] for i, v in qs]


def make_pair(tmp_path, maintenance: bool):
    writer = Collection.create(tmp_path, "c", {"sparse": sparse_field(DIM)}, maintenance=maintenance, **POLICY)
    return writer, Collection.open(tmp_path, "c", read_only=True)


@pytest.fixture
def pair(tmp_path):
    """A writer whose flushes and merges happen inline (at known moments), and a follower."""
    writer, follower = make_pair(tmp_path, maintenance=False)
    yield writer, follower
    follower.close()
    writer.close()


def test_an_acknowledged_write_is_visible_after_refresh_and_the_follower_writes_nothing(pair):
    writer, follower = pair
    writer.upsert(["a", "b"], vectors(2, 1), texts=["A", "B"])
    assert len(follower) == 0 and follower.refresh() and len(follower) == 2
    assert follower.get("b").text == "B" and not follower.refresh()  # nothing new
    writer.delete(["a"])
    assert follower.refresh() and follower.get("a") is None
    before = {p: p.stat().st_mtime_ns for p in writer.path.rglob("*") if p.is_file()}
    for call in (lambda: follower.upsert(["x"], vectors(1, 2)), lambda: follower.delete(["b"]),
                 follower.flush, follower.merge):
        with pytest.raises(ReadOnlyError, match="read-only"):
            call()
    after = {p: p.stat().st_mtime_ns for p in writer.path.rglob("*") if p.is_file()}
    assert before == after and len(follower) == 1


def test_a_record_being_appended_is_applied_only_once_whole(pair, tmp_path):
    writer, follower = pair
    writer.upsert(["a"], vectors(1, 1))
    follower.refresh()
    (log,) = (writer.path / "wal").glob("wal-*.log")
    size = log.stat().st_size
    writer.upsert(["b", "c"], vectors(2, 2))
    record = log.read_bytes()[size:]
    with open(log, "r+b") as f:  # as if the writer were inside its write() call
        f.truncate(size + len(record) // 2)
    assert not follower.refresh() and len(follower) == 1
    with open(log, "ab") as f:
        f.write(record[len(record) // 2:])
    assert follower.refresh() and sorted(follower.ids()) == ["a", "b", "c"]


def test_followers_match_the_writer_through_flushes_and_merges(pair):
    writer, follower = pair
    qs, n = queries(), 0
    for batch in range(12):
        ids = [f"d{n + i}" for i in range(25)]
        writer.upsert(ids, vectors(25, batch), texts=ids)
        n += 25
        if batch % 3 == 2:
            writer.delete([f"d{n - 30}", f"d{n - 7}"])
        follower.refresh()
        assert sorted(follower.ids()) == sorted(writer.ids())
        assert results(follower, qs) == results(writer, qs)
    assert writer.stats()["segments"] >= 1
    writer.merge(force=True)
    assert follower.refresh() and follower.stats()["segments"] == writer.stats()["segments"] == 1
    assert results(follower, qs) == results(writer, qs)
    assert follower.term_stats().n_docs == writer.term_stats().n_docs


def test_searches_during_ingest_flush_and_merge_never_see_a_half_installed_state(tmp_path):
    """A writer ingests while its background maintainer flushes and merges, a follower thread
    refreshes and searches all the while: no error, and every answer is a state the writer
    went through."""
    writer, follower = make_pair(tmp_path, maintenance=True)
    qs = queries()
    acked, errors, stop = set(), [], threading.Event()

    def follow():
        while not stop.is_set():
            try:
                follower.refresh()
                live = set(follower.ids())
                assert live <= acked_snapshot()
                for hits in results(follower, qs[:3]):
                    assert {h for h, _ in hits} <= live
                    assert len(hits) == min(8, len(hits)) and hits == sorted(hits, key=lambda h: -h[1])
            except Exception as exc:  # reported below, with the state it happened in
                errors.append(exc)
                return

    lock = threading.Lock()

    def acked_snapshot():
        with lock:
            return set(acked)
    t = threading.Thread(target=follow)
    t.start()
    try:
        for batch in range(20):
            ids = [f"d{batch}-{i}" for i in range(20)]
            with lock:
                acked.update(ids)  # before the upsert: the follower may see it right after
            writer.upsert(ids, vectors(20, batch))
            if batch == 12:
                writer.merge(force=True)
    finally:
        stop.set()
        t.join(60)
    assert not errors, errors[0]
    writer.wait_for_maintenance()
    follower.refresh()
    assert results(follower, qs) == results(writer, qs)
    follower.close()
    writer.close()


def test_a_writer_killed_mid_merge_leaves_followers_serving(tmp_path):
    """The writer is another process, killed while it merges; the follower keeps answering with
    the last committed state, and catches up once a new writer has recovered."""
    with Collection.create(tmp_path, "c", {"sparse": sparse_field(DIM, "seismic", exact=False)},
                           flush_docs=400, merge_small_docs=10**6, max_segments=0, maintenance=False) as w:
        for b in range(6):
            w.upsert([f"d{b}-{i}" for i in range(400)], vectors(400, b))  # 6 segments
    follower = Collection.open(tmp_path, "c", read_only=True)
    qs = queries()
    expected = results(follower, qs)
    pid = os.fork()
    if pid == 0:  # the writer: merge the six segments into one Seismic segment, forever
        try:
            with Collection.open(tmp_path, "c") as w:
                w.merge(force=True)
        finally:
            os._exit(0)
    deadline = time.time() + 30
    while time.time() < deadline and not any((tmp_path / "c" / "segments").glob(".seg-*")):
        time.sleep(0.002)  # until the merged segment is being written
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), "the merge ended before the kill: make the segments larger"
    assert any((tmp_path / "c" / "segments").glob(".seg-*"))  # a half-written merged segment
    follower.refresh()
    assert results(follower, qs) == expected and len(follower) == 2400
    with Collection.open(tmp_path, "c") as w:  # a new writer recovers, then merges
        w.upsert(["late"], vectors(1, 99))
        w.merge(force=True)
        assert follower.refresh() and len(follower) == 2401 and follower.stats()["segments"] == 1
    follower.close()
