"""A full disk: ingest into a collection on a small tmpfs until ENOSPC. The error must surface as
OSError(ENOSPC), lose nothing acknowledged, leave no partial files, and the collection must
go on working — and ingest and flush again once space is freed."""
import errno
import os
import subprocess
import zlib

import numpy as np
import pytest

from indexer.collection import Collection
from indexer.wal import DeleteOp, WriteAheadLog, encode_op

from .collection_helpers import random_docs

DIM = 2048
FIELDS = {"sparse": {"kind": "sparse", "dim": DIM}}
BATCH, TEXT = 8, 4096


@pytest.fixture
def small_fs(tmp_path):
    """A 3 MiB tmpfs mounted on a temporary directory (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                         capture_output=True, text=True, check=False)
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs: {res.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)  # lazy: even with a file left open


def _vectors(ids):
    return random_docs(np.random.default_rng(zlib.crc32(ids[0].encode())), len(ids), DIM, nnz=8)


def _texts(ids):
    return [(d + " ") * (TEXT // (len(d) + 1)) for d in ids]


def _state(coll) -> dict:
    return {d: coll.get(d).text for d in coll.ids()}


def _no_partial_files(root):
    """Temporary files and directories of failed writes are removed, not left to fill the disk."""
    leftovers = [p for p in root.rglob(".*") if p.name != ".filler"]
    assert not leftovers, leftovers


def _is_enospc(exc: BaseException) -> bool:
    return type(exc) is OSError and exc.errno == errno.ENOSPC


def _succeeds(fn, *args, **kwargs) -> bool:
    """True if the call returned; False if it failed with ENOSPC (any other error fails the test)."""
    try:
        fn(*args, **kwargs)
    except OSError as exc:
        assert _is_enospc(exc), repr(exc)
        return False
    return True


def test_disk_full_loses_nothing_and_recovers_when_space_is_freed(small_fs, record_property):
    record_property("reliability:disk-full ingests", 1)
    filler = small_fs / ".filler"
    filler.write_bytes(b"\0" * (512 << 10))
    # inline flushes: each failure is an upsert's own (the background path is tested below)
    coll = Collection.create(small_fs, "c", FIELDS, flush_docs=5 * BATCH, maintenance=False)
    acked, in_doubt, failures = {}, [], 0
    for i in range(1000):  # fill the disk, then keep writing into the full disk
        ids = [f"d{i}-{j}" for j in range(BATCH)]
        if _succeeds(coll.upsert, ids, _vectors(ids), texts=_texts(ids)):
            acked.update(zip(ids, _texts(ids)))
        else:  # in doubt: the WAL append failed, or the flush after it
            failures += 1
            in_doubt.append(ids)
        if i % 5 == 4:
            victim = sorted(acked)[i % len(acked)]
            if _succeeds(coll.delete, [victim]):
                del acked[victim]
            else:  # a delete does not flush: its failed append stored nothing
                failures += 1
        if failures >= 3:
            break
    assert failures >= 3, "the disk never filled up"
    with pytest.raises(OSError) as full:  # the buffer cannot be sealed either
        coll.flush()
    assert _is_enospc(full.value)
    _no_partial_files(small_fs)

    # still usable in-process: every acknowledged document is readable and searchable
    state = _state(coll)
    assert {d: state.get(d) for d in acked} == acked
    for batch in in_doubt:  # one WAL record per call: all of a failed batch or none of it
        assert len(set(batch) & set(state)) in (0, BATCH)
    assert any(not set(b) & set(state) for b in in_doubt)  # a WAL append failed, storing nothing
    assert set(state) <= set(acked).union(*in_doubt)
    probe = coll.get(min(acked))
    q = probe.vectors["sparse"]
    assert probe.id in [h.id for h in coll.search(q.indices, q.data, k=3)]

    filler.unlink()
    ids = ["after-0", "after-1"]
    coll.upsert(ids, _vectors(ids), texts=_texts(ids))
    coll.flush()
    st = coll.stats()
    assert st["buffer_documents"] == 0 and st["documents"] == len(state) + 2
    state = _state(coll)
    coll.close()
    _no_partial_files(small_fs)
    with Collection.open(small_fs, "c", maintenance=False) as coll:
        assert _state(coll) == state


def test_background_maintenance_on_a_full_disk_stops_writes_with_its_error_then_resumes(small_fs,
                                                                                       record_property):
    """Background flushes fail (no room for a segment) while WAL appends still fit: upserts go
    on until the room or the buffer (max_buffer_docs) runs out, then fail at once with ENOSPC —
    not block forever; once space is freed the maintainer's retry seals the buffer."""
    coll = Collection.create(small_fs, "c", FIELDS, flush_docs=2 * BATCH, max_buffer_docs=4 * BATCH)
    free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
    filler = small_fs / ".filler"
    filler.write_bytes(b"\0" * (free - (5 * BATCH * (TEXT + 600))))  # room for the WAL only
    acked, error = {}, None

    def upsert(i) -> bool:
        nonlocal error
        ids = [f"d{i}-{j}" for j in range(BATCH)]
        try:
            coll.upsert(ids, _vectors(ids), texts=_texts(ids))
        except OSError as exc:
            error = exc
            return False
        acked.update(zip(ids, _texts(ids)))
        return True
    # The flusher waits (the seal lock) until the buffer is full: by then the WAL has taken the
    # room a segment would need, whatever the threads' timing (a flush that ran early, with
    # 2 batches logged, could fit its segment in the room still free).
    with coll._seal_lock:
        assert all(upsert(i) for i in range(4))
    i = 4
    while i < 40 and upsert(i):
        i += 1
    assert error is not None and _is_enospc(error), error
    assert len(acked) >= 2 * BATCH and coll.stats()["segments"] == 0
    assert {d: t for d, t in _state(coll).items() if d in acked} == acked
    filler.unlink()
    coll.wait_for_maintenance(60)  # the retry seals the buffer
    ids = ["after"]
    coll.upsert(ids, _vectors(ids), texts=_texts(ids))
    coll.wait_for_maintenance(60)
    assert coll.stats()["segments"] >= 1 and set(acked) < set(coll.ids())
    coll.close()
    record_property("reliability:disk-full ingests", 1)


def test_a_wal_file_that_cannot_be_created_leaves_the_old_one_in_use(tmp_path, monkeypatch):
    """A flush rotates the WAL; when the new file cannot be created, appends go on in the old
    one (the log used to be closed first, leaving the collection unable to write)."""
    wal = WriteAheadLog(tmp_path / "wal")
    wal.open(1)
    wal.append(encode_op(DeleteOp(1, ["a"])))

    def no_space(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    with monkeypatch.context() as m:
        m.setattr(os, "open", no_space)
        with pytest.raises(OSError) as err:
            wal.rotate(2)
    assert _is_enospc(err.value)
    wal.append(encode_op(DeleteOp(2, ["b"])))
    wal.close()
    assert [op.seq for op in WriteAheadLog(tmp_path / "wal").replay()] == [1, 2]
