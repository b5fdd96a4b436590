"""WAL recovery modes: a torn tail (never acknowledged) is not corruption (acknowledged, damaged);
what a mode drops is quarantined byte for byte and logged, never silently lost."""
import logging

import pytest

from indexer.collection import Collection
from indexer.errors import InvalidInputError
from indexer.wal import (ABSOLUTE_CONSISTENCY, POINT_IN_TIME, TOLERATE_TORN_TAIL, WAL_RECOVERY_MODES,
                         DeleteOp, WALCorruptError, WriteAheadLog, encode_op)

from .collection_helpers import CRASH_DIM, doc_vectors

BATCH, BATCHES = 50, 4
IDS = [f"d{i}" for i in range(BATCH * BATCHES)]


def _ingest(tmp_path):
    """Collection "c" with 200 documents in 4 WAL records (no flush); returns the WAL file and
    the record boundaries [0, end of record 1, ..., end of record 4]."""
    coll = Collection.create(tmp_path, "c", {"sparse": {"kind": "sparse", "dim": CRASH_DIM}})
    wal = coll.path / "wal"
    bounds = [sum(p.stat().st_size for p in wal.iterdir())]
    for b in range(BATCHES):
        ids = IDS[b * BATCH:(b + 1) * BATCH]
        coll.upsert(ids, doc_vectors(ids), texts=ids)
        bounds.append(sum(p.stat().st_size for p in wal.iterdir()))
    coll.close()
    (path,) = wal.iterdir()
    return path, bounds


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x20
    path.write_bytes(bytes(data))


def _tear_last(path, bounds) -> int:
    """Cut the file in the middle of the last record (a crash during its write)."""
    with open(path, "r+b") as f:
        f.truncate((bounds[-2] + bounds[-1]) // 2)
    return bounds[-2]


def _flip_last(path, bounds) -> int:
    _flip(path, bounds[-2] + 60)  # inside the payload: the record is whole, its checksum fails
    return bounds[-2]


def _flip_second(path, bounds) -> int:
    _flip(path, bounds[1] + 60)
    return bounds[1]


def _flip_last_length(path, bounds) -> int:
    """A flipped high bit in the last record's length: it now claims to run far past the end of
    the file, as a torn write would — only the header's own checksum tells them apart."""
    _flip(path, bounds[-2] + 2)
    return bounds[-2]


DAMAGE = {"torn_tail": _tear_last, "bad_last": _flip_last, "bad_middle": _flip_second,
          "bad_last_length": _flip_last_length}
# damage -> mode -> documents kept, or the failed check of the WALCorruptError raised
EXPECTED = {
    "torn_tail": {TOLERATE_TORN_TAIL: 150, POINT_IN_TIME: 150, ABSOLUTE_CONSISTENCY: "wal record size"},
    "bad_last": {TOLERATE_TORN_TAIL: "wal record checksum", POINT_IN_TIME: 150,
                 ABSOLUTE_CONSISTENCY: "wal record checksum"},
    "bad_middle": {TOLERATE_TORN_TAIL: "wal record checksum", POINT_IN_TIME: 50,
                   ABSOLUTE_CONSISTENCY: "wal record checksum"},
    "bad_last_length": {TOLERATE_TORN_TAIL: "wal record header checksum", POINT_IN_TIME: 150,
                        ABSOLUTE_CONSISTENCY: "wal record header checksum"},
}


def test_a_flipped_byte_in_the_last_record_is_an_error_not_a_silent_loss(tmp_path):
    """The old replay took a whole last record failing its checksum for a torn write and
    dropped it: 200 acknowledged documents came back as 150, with no error."""
    path, bounds = _ingest(tmp_path)
    _flip_last(path, bounds)
    damaged = path.read_bytes()
    with pytest.raises(WALCorruptError, match=f"corrupted at byte {bounds[-2]}.*point_in_time") as err:
        Collection.open(tmp_path, "c")
    assert (err.value.path, err.value.check) == (str(path), "wal record checksum")
    assert path.read_bytes() == damaged and not (tmp_path / "c" / "quarantine").exists()


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("mode", WAL_RECOVERY_MODES)
def test_each_recovery_mode_on_each_damage(tmp_path, caplog, mode, damage, record_property):
    record_property("reliability:WAL damage x recovery mode", 1)
    path, bounds = _ingest(tmp_path)
    offset = DAMAGE[damage](path, bounds)
    damaged = path.read_bytes()
    quarantine = tmp_path / "c" / "quarantine"
    expected = EXPECTED[damage][mode]
    if isinstance(expected, str):
        with pytest.raises(WALCorruptError) as err:
            Collection.open(tmp_path, "c", wal_recovery=mode)
        assert (err.value.path, err.value.check) == (str(path), expected)
        assert path.read_bytes() == damaged and not quarantine.exists()
        return
    with caplog.at_level(logging.WARNING, logger="lsr.indexer"):
        coll = Collection.open(tmp_path, "c", wal_recovery=mode)
    assert sorted(coll.ids()) == sorted(IDS[:expected])
    assert coll.get(IDS[expected - 1]).text == IDS[expected - 1]
    reason = "torn-tail" if damage == "torn_tail" else "bad-record"
    (kept,) = quarantine.iterdir()
    assert kept.name == f"{path.name}.{offset}.{reason}"
    assert kept.read_bytes() == damaged[offset:]  # exactly what was dropped
    assert path.read_bytes() == damaged[:offset]
    (record,) = [r for r in caplog.records if r.name == "lsr.indexer"]
    assert record.levelno == (logging.WARNING if damage == "torn_tail" else logging.ERROR)
    assert str(kept) in record.getMessage()
    # the log goes on cleanly after the last good record
    coll.upsert(["new"], doc_vectors(["new"]), texts=["new"])
    coll.close()
    with Collection.open(tmp_path, "c") as coll:
        assert len(coll) == expected + 1 and coll.get("new").text == "new"


def test_the_same_spot_torn_twice_is_quarantined_twice(tmp_path):
    path, bounds = _ingest(tmp_path)
    _tear_last(path, bounds)
    Collection.open(tmp_path, "c").close()
    with Collection.open(tmp_path, "c") as coll:  # write the last batch again, then tear it again
        ids = IDS[-BATCH:]
        coll.upsert(ids, doc_vectors(ids), texts=ids)
    assert path.stat().st_size == bounds[-1]
    _tear_last(path, bounds)
    with Collection.open(tmp_path, "c") as coll:
        assert len(coll) == 150
    names = sorted(p.name for p in (tmp_path / "c" / "quarantine").iterdir())
    assert names == [f"{path.name}.{bounds[-2]}.torn-tail", f"{path.name}.{bounds[-2]}.torn-tail.1"]


def test_quarantine_survives_reopen_and_stays_out_of_snapshots(tmp_path):
    path, bounds = _ingest(tmp_path)
    _tear_last(path, bounds)
    with Collection.open(tmp_path, "c") as coll:
        coll.snapshot(tmp_path / "snap")
    with Collection.open(tmp_path, "c") as coll:
        assert len(coll) == 150
    assert len(list((tmp_path / "c" / "quarantine").iterdir())) == 1
    assert not (tmp_path / "snap" / "quarantine").exists()
    with Collection.restore(tmp_path / "snap", tmp_path, "r") as restored:
        assert sorted(restored.ids()) == sorted(IDS[:150])


def test_point_in_time_quarantines_later_log_files(tmp_path):
    """A bad record in an older file: point_in_time drops the rest of that file and every later
    file (quarantined first, then removed); the other modes refuse to open."""
    wal = WriteAheadLog(tmp_path / "wal")
    wal.open(1)
    sizes = []
    for seq in (1, 2, 3):
        wal.append(encode_op(DeleteOp(seq, [f"x{seq}"])))
        sizes.append(wal.files()[0].stat().st_size)
    wal.rotate(4)
    for seq in (4, 5):
        wal.append(encode_op(DeleteOp(seq, [f"x{seq}"])))
    wal.close()
    first, second = wal.files()
    _flip(first, sizes[0] + 12)
    data1, data2 = first.read_bytes(), second.read_bytes()
    for mode in (TOLERATE_TORN_TAIL, ABSOLUTE_CONSISTENCY):
        with pytest.raises(WALCorruptError, match="corrupted at byte"):
            WriteAheadLog(tmp_path / "wal").replay(mode)
    assert [op.seq for op in WriteAheadLog(tmp_path / "wal").replay(POINT_IN_TIME)] == [1]
    assert wal.files() == [first] and first.read_bytes() == data1[:sizes[0]]
    q = tmp_path / "quarantine"
    assert (q / f"{first.name}.{sizes[0]}.bad-record").read_bytes() == data1[sizes[0]:]
    assert (q / f"{second.name}.0.after-bad-record").read_bytes() == data2


def test_an_unknown_recovery_mode_is_refused(tmp_path):
    Collection.create(tmp_path, "c", {"sparse": {"kind": "sparse", "dim": 10}}).close()
    with pytest.raises(InvalidInputError, match="tolerate_torn_tail, point_in_time, absolute_consistency"):
        Collection.open(tmp_path, "c", wal_recovery="skip_any_corrupted_records")
    with Collection.open(tmp_path, "c") as coll:  # the failed open released the collection
        assert len(coll) == 0


def test_a_log_of_the_old_format_is_read_and_new_records_go_to_a_new_file(tmp_path):
    """Files without the magic (8-byte record headers) were written by earlier versions."""
    import struct
    import zlib

    import numpy as np

    from indexer.wal import UpsertOp
    wal_dir = tmp_path / "wal"
    wal_dir.mkdir()
    payload = encode_op(UpsertOp(1, IDS[:2], {"sparse": doc_vectors(IDS[:2])}, None, None,
                                 np.zeros(2, np.int64)))
    old = wal_dir / "wal-00000000000000000001.log"
    old.write_bytes(struct.pack("<II", len(payload), zlib.crc32(payload)) + payload)
    wal = WriteAheadLog(wal_dir)
    (op,) = wal.replay()
    assert op.ids == IDS[:2]
    wal.open(2)
    wal.append(encode_op(UpsertOp(2, IDS[2:3], {"sparse": doc_vectors(IDS[2:3])}, None, None,
                                  np.zeros(1, np.int64))))
    wal.close()
    assert old.read_bytes()[:8] != b"LSRWAL2\n" and len(wal.files()) == 2
    assert [o.ids for o in WriteAheadLog(wal_dir).replay()] == [IDS[:2], IDS[2:3]]
