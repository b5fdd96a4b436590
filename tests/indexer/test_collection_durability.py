import multiprocessing as mp
import time

import numpy as np
import pytest
import scipy.sparse as sp

from indexer.collection import Collection
from indexer.storage import IndexFormatError
from indexer.wal import DeleteOp, UpsertOp, WALCorruptError, WriteAheadLog, encode_op

from . import collection_helpers as helpers
from .collection_helpers import CRASH_DIM, doc_terms, sparse_field

DIM = 300


def _ops(n):
    rng = np.random.default_rng(0)
    ops = []
    for s in range(1, n + 1):
        if s % 3 == 0:
            ops.append(DeleteOp(s, [f"d{s - 1}"]))
        else:
            m = sp.random(2, DIM, density=0.05, format="csr", random_state=s, dtype=np.float32)
            ops.append(UpsertOp(s, [f"d{s}", f"e{s}"], {"sparse": m}, ["t", None],
                                [{"k": s}, None], rng.integers(0, 9, 2)))
    return ops


def test_wal_roundtrip_and_torn_tail_at_every_cut(tmp_path):
    ops = _ops(6)
    wal = WriteAheadLog(tmp_path / "w")
    wal.open(1)
    sizes = []
    for op in ops:
        wal.append(encode_op(op))
        sizes.append(wal.files()[-1].stat().st_size)
    wal.close()
    full = wal.files()[-1].read_bytes()
    back = WriteAheadLog(tmp_path / "w").replay()
    assert [o.seq for o in back] == [o.seq for o in ops]
    assert back[0].metadata == [{"k": 1}, None] and back[0].texts == ["t", None]
    np.testing.assert_array_equal(back[0].vectors["sparse"].toarray(), ops[0].vectors["sparse"].toarray())
    np.testing.assert_array_equal(back[0].lengths, ops[0].lengths)
    # cut the file anywhere: exactly the whole records before the cut come back
    for cut in range(sizes[3] - 40, sizes[5], 7):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / wal.files()[-1].name).write_bytes(full[:cut])
        w = WriteAheadLog(d)
        got = w.replay()
        assert [o.seq for o in got] == [o.seq for o in ops if sizes[o.seq - 1] <= cut]
        w.open(99)  # the torn tail was truncated, so new records follow whole ones
        w.append(encode_op(DeleteOp(99, ["x"])))
        w.close()
        assert WriteAheadLog(d).replay()[-1].seq == 99


def test_wal_corruption_in_the_middle_is_an_error(tmp_path):
    wal = WriteAheadLog(tmp_path)
    wal.open(1)
    for op in _ops(4):
        wal.append(encode_op(op))
    wal.close()
    path = wal.files()[-1]
    data = bytearray(path.read_bytes())
    data[20] ^= 0x01  # inside the first record
    path.write_bytes(bytes(data))
    with pytest.raises(WALCorruptError, match="corrupted at byte 8"):  # after the magic
        WriteAheadLog(tmp_path).replay()
    # a torn tail in an older file (not the newest) is corruption too
    path.write_bytes(bytes(data[:10]))
    (tmp_path / "wal-00000000000000000100.log").write_bytes(b"")
    with pytest.raises(WALCorruptError, match="not the newest"):
        WriteAheadLog(tmp_path).replay()


def _populated(tmp_path):
    coll = Collection.create(tmp_path, "c", {"sparse": sparse_field(DIM)}, flush_docs=40,
                             exact_segment_docs=10, maintenance=False)
    m = sp.random(100, DIM, density=0.05, format="csr", random_state=1, dtype=np.float32)
    for a in range(0, 100, 40):
        coll.upsert([f"d{i}" for i in range(a, min(100, a + 40))], m[a:a + 40],
                    texts=[str(i) for i in range(a, min(100, a + 40))])
    coll.delete(["d1", "d2"])
    coll.flush()  # two segments of 40 + one of 18, tombstones for d1, d2
    coll.close()
    return tmp_path / "c"


def _flip(path, offset=None):
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 0x20
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("target,damage,message", [
    ("MANIFEST.json", "flip", "collection manifest .* corrupted"),
    ("MANIFEST.json", "truncate", "collection manifest .* corrupted"),
    ("collection.json", "flip", "collection configuration .* corrupted"),
    ("segments/seg-000001/segment.json", "truncate", "segment manifest .* corrupted"),
    ("segments/seg-000001/docs.arrow", "flip", "docs.arrow is corrupted"),
    ("segments/seg-000001/docs.arrow", "truncate", "docs.arrow is missing or truncated"),
    ("segments/seg-000002/sparse/fwd_rec.npy", "flip", "fwd_rec.npy is corrupted"),
    ("segments/seg-000002/sparse/fwd_rec.npy", "truncate", "missing or truncated"),
    ("tombstones", "flip", "rows.npy is corrupted"),
])
def test_corrupted_files_are_refused_with_a_clear_error(tmp_path, target, damage, message, record_property):
    record_property("reliability:damaged files refused (indexer)", 1)
    root = _populated(tmp_path)
    path = root / target
    if target == "tombstones":
        path = next(path.iterdir()) / "rows.npy"
    if damage == "flip":
        _flip(path)
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(IndexFormatError, match=message):
        Collection.open(tmp_path, "c")


def _set_format_version(path, version):
    import json
    body = json.loads(path.read_text())
    body["format_version"] = version
    path.write_text(json.dumps(body))


@pytest.mark.parametrize("target,damage,check", [
    ("MANIFEST.json", "truncate", "json"),
    ("MANIFEST.json", "delete", "missing file"),
    ("segments/seg-000002/sparse/fwd_rec.npy", "flip", "checksum"),
    ("segments/seg-000002/sparse/fwd_rec.npy", "truncate", "size"),
    ("segments/seg-000002/sparse/fwd_rec.npy", "delete", "missing file"),
    ("segments/seg-000002/sparse/manifest.json", "truncate", "json"),
    ("segments/seg-000002/sparse/manifest.json", "version", "format version"),
])
def test_a_damaged_file_is_reported_with_its_path_and_the_failed_check(tmp_path, target, damage, check,
                                                                      record_property):
    record_property("reliability:damaged files refused (indexer)", 1)
    path = _populated(tmp_path) / target
    if damage == "flip":
        _flip(path)
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "delete":
        path.unlink()
    else:
        _set_format_version(path, 99)
    with pytest.raises(IndexFormatError) as err:
        Collection.open(tmp_path, "c")
    assert (err.value.path, err.value.check) == (str(path), check)


def test_unlisted_segment_directories_are_invisible_and_removed(tmp_path):
    root = _populated(tmp_path)
    seg = root / "segments"
    (seg / ".seg-000009.tmp-abcd").mkdir()  # an interrupted flush
    import shutil
    shutil.copytree(seg / "seg-000001", seg / "seg-000009")  # built but never committed
    coll = Collection.open(tmp_path, "c", maintenance=False)  # nothing flushes behind our back
    assert sorted(p.name for p in seg.iterdir()) == ["seg-000001", "seg-000002", "seg-000003"]
    assert len(coll) == 98 and coll.stats()["tombstones"] == 2
    coll.close()


def _read_acks(path):
    """(upsert intents, acknowledged upserts, acknowledged deletes, delete intents)."""
    intents, upserted, deleted, deleting = [], set(), set(), set()
    if not path.exists():
        return intents, upserted, deleted, deleting
    for line in path.read_text().split("\n"):
        if not line.endswith(tuple("0123456789")) or " " not in line:
            continue  # a line cut by the kill
        kind, *ids = line.split(" ")
        if kind == "I":
            intents.append(ids)
        elif kind == "U":
            upserted.update(ids)
        elif kind == "D":
            deleted.update(ids)
        elif kind == "X":
            deleting.update(ids)
    return intents, upserted, deleted, deleting


def test_sigkill_during_ingest_loses_no_acknowledged_write(tmp_path, record_property):
    """Kill a writer (upserts, deletes, automatic flushes and merges) with SIGKILL at random
    moments, 22 times; after each kill the reopened collection holds every acknowledged
    document, searchable, none that was acknowledged deleted, each upsert batch whole or not at
    all, and exactly the segments its manifest lists."""
    Collection.create(tmp_path, "c", {"sparse": {"kind": "sparse", "dim": CRASH_DIM}},
                      flush_docs=24, exact_segment_docs=40, max_segments=3,
                      merge_small_docs=1000).close()
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["indexer.collection", "tests.indexer.collection_helpers"])
    rng = np.random.default_rng(11)
    ack = tmp_path / "acks.txt"
    all_up, all_del, kills, mid_flush = set(), set(), 0, 0
    for round_no in range(22):
        ready = ctx.Event()
        p = ctx.Process(target=helpers.crash_writer, args=(str(tmp_path), "c", str(ack), round_no, ready))
        p.start()
        assert ready.wait(60), "writer did not start"
        time.sleep(float(rng.uniform(0.02, 0.35)))
        p.kill()
        p.join()
        assert p.exitcode == -9
        kills += 1
        intents, up, dele, deleting = _read_acks(ack)
        all_up |= up
        all_del |= dele
        in_flight = deleting - dele  # killed between the delete and its acknowledgement
        segs = tmp_path / "c" / "segments"
        mid_flush += any(q.name.startswith(".") for q in segs.iterdir())
        coll = Collection.open(tmp_path, "c", maintenance=False)  # inspect, don't flush
        present = set(coll.ids())
        assert all_up - all_del - in_flight <= present, sorted(all_up - all_del - in_flight - present)[:5]
        all_del |= in_flight - present  # it did happen: from now on it must stay deleted
        assert not (all_del & present)
        for batch in intents:  # one WAL record per call: all of a batch or none of it
            assert len(set(batch) & (present | all_del)) in (0, len(batch)), batch
        for doc_id in sorted(up - dele - in_flight):
            assert coll.get(doc_id).text == doc_id
            terms = list(doc_terms(doc_id))
            assert doc_id in [h.id for h in coll.search(terms, [1.0, 1.0], k=10)]
        listed = sorted(f"seg-{i:06d}" for i in _manifest_segments(tmp_path / "c"))
        assert sorted(q.name for q in segs.iterdir()) == listed
        st = coll.stats()
        assert st["documents"] == len(present) == sum(st["segment_documents"]) + st["buffer_documents"]
        coll.close()
        ack.unlink(missing_ok=True)
    assert kills >= 20 and len(all_up) > 200
    record_property("reliability:SIGKILL trials during ingest", kills)
    print(f"{kills} kills, {len(all_up)} acknowledged documents, {mid_flush} kills left a partial segment")


def _manifest_segments(root):
    import json
    return json.loads((root / "MANIFEST.json").read_text())["segments"]


def test_restore_replaces_only_a_closed_collection_and_an_interrupted_one_is_put_back(tmp_path):
    from indexer.errors import LockedError
    fields = {"sparse": sparse_field(DIM, "exact")}
    m = sp.random(6, DIM, density=0.05, format="csr", random_state=1, dtype=np.float32)
    with Collection.create(tmp_path, "c", fields) as c:
        c.upsert([f"d{i}" for i in range(3)], m[:3])
        c.snapshot(tmp_path / "snap", hard_links=False)
        c.upsert([f"d{i}" for i in range(3, 6)], m[3:])
        with pytest.raises(LockedError):  # open: cannot be swapped out
            Collection.restore(tmp_path / "snap", tmp_path, "c", replace=True)
        assert len(c) == 6
    with pytest.raises(Exception, match="already exists"):
        Collection.restore(tmp_path / "snap", tmp_path, "c")
    with Collection.restore(tmp_path / "snap", tmp_path, "c", replace=True) as c:
        assert sorted(c.ids()) == ["d0", "d1", "d2"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # a crash between the restore's two renames: the old directory is aside, the name is free
    (tmp_path / "c").rename(tmp_path / ".c.replaced-0123abcd")
    (tmp_path / ".c.tmp-89abcdef").mkdir()
    (tmp_path / ".gone.dropped-00000000").mkdir()
    done = Collection.recover_interrupted(tmp_path)
    assert len(done) == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["c", "snap"]
    with Collection.open(tmp_path, "c") as c:
        assert len(c) == 3
