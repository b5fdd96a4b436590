"""Write-ahead log: every acknowledged upsert or delete is a record here, fsync'd before the
call returns, until a flush has sealed it into a segment.

A file starts with the magic b"LSRWAL2\n"; a record is u32 payload length | u32 CRC32 of the
payload | u32 CRC32 of those 8 bytes | payload. The payload is a u32 header length, a JSON header
(operation, sequence number, ids, texts, metadata) and the raw bytes of the vectors' arrays
(and of the stored token vectors, in their quantised form, when the collection keeps them).
The header's own checksum is what tells a torn write from damage when a record claims to run
past the end of its file: a crash leaves a true length there, a flipped bit a length failing
its check. (Files without the magic, written by earlier versions, have 8-byte headers and are
still read; new records always go to a file of the current format.) Files are named by the
first sequence number they may hold; a flush rotates to a new file and, once the segment is
committed, deletes the older ones.

Replay tells two kinds of damage apart. A *torn tail* — the last record of the newest file
extends past its end — is a write cut by a crash: append() had not returned, so it was never
acknowledged. A *bad record* — a complete record failing its checksum, or a cut-off one in an
older file, or a header failing its own checksum — was acknowledged: it is corruption. What
happens then is RocksDB's WAL recovery mode (WAL_RECOVERY_MODES, an argument of replay):

    tolerate_torn_tail (default)  drop a torn tail; a bad record raises WALCorruptError
    point_in_time                 stop at the first torn or bad record; drop it and all after
    absolute_consistency          any torn or bad record raises WALCorruptError

Dropped bytes are never deleted: they are first written durably to the quarantine directory
(wal-<first seq>.log.<byte offset>.<reason>), then the file is truncated to its last good record
and later files are removed, so the log continues cleanly. A torn tail is logged as a warning,
dropped acknowledged records as an error (logger "lsr.indexer").
"""
from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from . import crashpoints
from .atomic import fsync_dir, write_bytes_durable
from .errors import InvalidInputError
from .storage import IndexFormatError
from .token_store import TokenRows

_MAGIC = b"LSRWAL2\n"
_REC = struct.Struct("<III")   # payload length, payload CRC32, CRC32 of the first two fields
_REC_V1 = struct.Struct("<II")  # files without the magic: length, payload CRC32
_U32 = struct.Struct("<I")

WAL_RECOVERY_MODES = (TOLERATE_TORN_TAIL, POINT_IN_TIME, ABSOLUTE_CONSISTENCY) = (
    "tolerate_torn_tail", "point_in_time", "absolute_consistency")

log = logging.getLogger("lsr.indexer")


class WALCorruptError(IndexFormatError):
    """A write-ahead log record that was acknowledged is damaged (or, under
    absolute_consistency, the log ends in a torn write)."""


def check_recovery_mode(mode) -> None:
    if mode not in WAL_RECOVERY_MODES:
        raise InvalidInputError(f"unknown WAL recovery mode {mode!r}; use one of "
                                f"{', '.join(WAL_RECOVERY_MODES)}")


@dataclass
class UpsertOp:
    seq: int
    ids: list[str]
    vectors: dict  # field -> csr_matrix (sparse) or 2-D float32 ndarray (dense)
    texts: list | None
    metadata: list | None
    lengths: np.ndarray  # int64 per document
    tokens: TokenRows | None = None  # stored token vectors (token_store.py), already quantised


@dataclass
class DeleteOp:
    seq: int
    ids: list[str]


def encode_op(op) -> bytes:
    """The payload of one record; raises ValueError when texts or metadata are not JSON-able."""
    arrays: list[tuple[str, np.ndarray]] = []
    if isinstance(op, UpsertOp):
        header = {"op": "upsert", "seq": op.seq, "ids": op.ids, "texts": op.texts,
                  "metadata": op.metadata, "fields": {}}
        for name, m in op.vectors.items():
            if sp.issparse(m):
                header["fields"][name] = {"kind": "sparse", "shape": list(m.shape)}
                arrays += [(f"{name}.indptr", m.indptr.astype(np.int64)),
                           (f"{name}.indices", m.indices.astype(np.int32)),
                           (f"{name}.data", m.data.astype(np.float32))]
            else:
                header["fields"][name] = {"kind": "dense", "shape": list(m.shape)}
                arrays.append((f"{name}.dense", np.ascontiguousarray(m, dtype=np.float32)))
        arrays.append(("lengths", np.asarray(op.lengths, dtype=np.int64)))
        if op.tokens is not None:  # the stored form itself: replay never re-quantises
            header["tokens"] = op.tokens.dtype
            arrays += [("tokens.ptr", np.asarray(op.tokens.ptr, np.int64)),
                       ("tokens.codes", np.ascontiguousarray(op.tokens.codes)),
                       ("tokens.scales", np.asarray(op.tokens.scales, np.float32))]
    elif isinstance(op, DeleteOp):
        header = {"op": "delete", "seq": op.seq, "ids": op.ids}
    else:
        raise TypeError(f"not a WAL operation: {type(op).__name__}")
    header["arrays"] = [[k, a.dtype.str, list(a.shape)] for k, a in arrays]
    try:
        head = json.dumps(header, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"texts and metadata must be JSON-serialisable (no NaN/infinity, no "
                         f"unpaired surrogates): {exc}") from exc
    return b"".join([_U32.pack(len(head)), head] + [a.tobytes() for _, a in arrays])


def decode_op(payload: bytes):
    (hlen,) = _U32.unpack_from(payload, 0)
    header = json.loads(payload[4:4 + hlen].decode("utf-8"))
    pos, arrays = 4 + hlen, {}
    for key, dtype, shape in header["arrays"]:
        dt = np.dtype(dtype)
        n = int(np.prod(shape)) if shape else 1
        arrays[key] = np.frombuffer(payload, dtype=dt, count=n, offset=pos).reshape(shape).copy()
        pos += n * dt.itemsize
    if header["op"] == "delete":
        return DeleteOp(header["seq"], header["ids"])
    vectors = {}
    for name, f in header["fields"].items():
        if f["kind"] == "sparse":
            vectors[name] = sp.csr_matrix((arrays[f"{name}.data"], arrays[f"{name}.indices"],
                                           arrays[f"{name}.indptr"]), shape=tuple(f["shape"]))
        else:
            vectors[name] = arrays[f"{name}.dense"]
    tokens = None
    if header.get("tokens") is not None:
        tokens = TokenRows(header["tokens"], arrays["tokens.ptr"], arrays["tokens.codes"],
                           arrays["tokens.scales"])
    return UpsertOp(header["seq"], header["ids"], vectors, header["texts"], header["metadata"],
                    arrays["lengths"], tokens)


def _file_name(first_seq: int) -> str:
    return f"wal-{first_seq:020d}.log"


@dataclass
class _Damage:
    """A record that replay cannot use."""
    offset: int
    cut_off: bool  # extends past the end of its file (else: complete but failing a check)
    check: str
    what: str


def _read_record(data: bytes, pos: int, v1: bool = False):
    """(operation, end offset) of the record at pos, or the _Damage found there."""
    rec = _REC_V1 if v1 else _REC
    if pos + rec.size > len(data):
        return _Damage(pos, True, "wal record size", "a cut-off record header")
    n, crc = _REC_V1.unpack_from(data, pos)
    if not v1 and zlib.crc32(data[pos:pos + 8]) != _U32.unpack_from(data, pos + 8)[0]:
        return _Damage(pos, False, "wal record header checksum", "a record header failing its checksum")
    end = pos + rec.size + n
    if end > len(data):
        return _Damage(pos, True, "wal record size", "a cut-off record")
    payload = data[pos + rec.size:end]
    if zlib.crc32(payload) != crc:
        return _Damage(pos, False, "wal record checksum", "a record failing its checksum")
    try:
        return decode_op(payload), end
    except (ValueError, KeyError, TypeError, IndexError, struct.error) as exc:
        # a checksum matching garbage: a zero-filled tail (length 0, CRC 0) is the usual case
        return _Damage(pos, False, "wal record format", f"an undecodable record ({exc!r})")


def _file_format(data: bytes) -> tuple[int, bool] | None:
    """(offset of the first record, old format?) of a log file's bytes; None for a file that a
    crash cut inside its magic (created, never written to: nothing to replay)."""
    if data.startswith(_MAGIC):
        return len(_MAGIC), False
    if _MAGIC.startswith(data):
        return None
    return 0, True


class WriteAheadLog:
    """Append-only log files under one directory; one writer at a time (the caller's lock).
    Records dropped by replay go to `quarantine` (default: a sibling directory "quarantine")."""

    def __init__(self, directory, quarantine=None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.quarantine = Path(quarantine) if quarantine is not None else self.dir.parent / "quarantine"
        self._fd: int | None = None
        self._path: Path | None = None

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("wal-*.log"))

    def replay(self, recovery: str = TOLERATE_TORN_TAIL) -> list:
        """The operations of all good records in order, handling damage as the recovery mode
        says (see module doc): raising WALCorruptError, or quarantining what it drops."""
        check_recovery_mode(recovery)
        ops, files = [], self.files()
        for i, path in enumerate(files):
            data = path.read_bytes()
            fmt = _file_format(data)
            if fmt is None:
                continue
            pos, v1 = fmt
            while pos < len(data):
                rec = _read_record(data, pos, v1)
                if isinstance(rec, _Damage):
                    self._recover(recovery, path, data, rec, later=files[i + 1:])
                    return ops
                op, pos = rec
                ops.append(op)
        return ops

    def _recover(self, recovery: str, path: Path, data: bytes, damage: _Damage, later: list) -> None:
        """Raise WALCorruptError, or drop the damaged record and everything after it."""
        torn_tail = damage.cut_off and not later
        if torn_tail:
            problem = f"ends in a torn write at byte {damage.offset} ({damage.what})"
        else:
            problem = f"is corrupted at byte {damage.offset}: {damage.what}"
            if damage.cut_off:
                problem += " in a log file that is not the newest"
        if recovery == ABSOLUTE_CONSISTENCY or (not torn_tail and recovery != POINT_IN_TIME):
            hint = "" if torn_tail else "; wal_recovery='point_in_time' opens the state before it"
            raise WALCorruptError(f"write-ahead log {path} {problem} (recovery mode {recovery!r})"
                                  f"{hint}", path=path, check=damage.check)
        kept = self._drop(path, data, damage.offset, later, "torn-tail" if torn_tail else "bad-record")
        if torn_tail:
            log.warning("write-ahead log %s %s, never acknowledged: dropped, moved to %s",
                        path, problem, kept[0])
        else:
            log.error("write-ahead log %s %s: point_in_time recovery dropped it and all records "
                      "after it, moved to %s", path, problem, ", ".join(map(str, kept)))

    def _drop(self, path: Path, data: bytes, offset: int, later: list, reason: str) -> list[Path]:
        """Quarantine data[offset:] and the later files, then cut them from the log; returns
        the quarantine files."""
        pieces = [(path, offset, reason, data[offset:])]
        pieces += [(p, 0, "after-bad-record", p.read_bytes()) for p in later]
        kept = [self._quarantine(*piece) for piece in pieces]  # durable before anything is cut
        self._truncate(path, offset)
        for p in later:
            p.unlink()
            crashpoints.step("wal.remove")
        fsync_dir(self.dir)
        return kept

    def _quarantine(self, source: Path, offset: int, reason: str, blob: bytes) -> Path:
        """Write blob durably to a new file in the quarantine directory; returns its path."""
        self.quarantine.mkdir(exist_ok=True)
        base = self.quarantine / f"{source.name}.{offset}.{reason}"
        dest, n = base, 0
        while dest.exists():  # the same spot damaged again by a later crash
            n += 1
            dest = base.with_name(f"{base.name}.{n}")
        write_bytes_durable(dest, blob)
        fsync_dir(self.quarantine)
        fsync_dir(self.quarantine.parent)
        return dest

    @staticmethod
    def _truncate(path: Path, size: int) -> None:
        with open(path, "r+b") as f:
            f.truncate(size)
            f.flush()
            os.fsync(f.fileno())
        crashpoints.step("wal.truncate")

    def open(self, next_seq: int) -> None:
        """Append to the newest file, or start one at next_seq when there is none (or when the
        newest holds records of the old format)."""
        files = self.files()
        newest = files[-1] if files else None
        if newest is not None:
            with open(newest, "rb") as f:
                if _file_format(f.read(len(_MAGIC))) == (0, True):  # the old record format
                    newest = None
        self._open_file(newest or self.dir / _file_name(next_seq))

    def _open_file(self, path: Path) -> None:
        # the new file first: if it cannot be created (disk full) appends go on in the old one
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        crashpoints.step("wal.create")
        try:
            if os.fstat(fd).st_size < len(_MAGIC):  # new, or cut inside its magic by a crash
                os.ftruncate(fd, 0)
                os.write(fd, _MAGIC)
                os.fsync(fd)
                crashpoints.step("wal.magic")
            fsync_dir(self.dir)
        except BaseException:
            os.close(fd)
            raise
        self.close()
        self._fd, self._path = fd, path

    def append(self, payload: bytes) -> None:
        """Write one record and fsync it: when this returns the operation is durable."""
        head = _REC_V1.pack(len(payload), zlib.crc32(payload))
        rec = head + _U32.pack(zlib.crc32(head)) + payload
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            view = memoryview(rec)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            crashpoints.step("wal.write")
            os.fsync(self._fd)
            crashpoints.step("wal.fsync")
        except BaseException:
            # a failed write (disk full...) must not leave half a record before the next one
            os.ftruncate(self._fd, start)
            raise

    def rotate(self, next_seq: int) -> None:
        """Continue in a new file whose records all have seq >= next_seq."""
        path = self.dir / _file_name(next_seq)
        if path != self._path:
            self._open_file(path)

    def remove_before(self, first_seq: int) -> None:
        """Delete files that hold only records with seq < first_seq (sealed into segments)."""
        files = self.files()
        for path, nxt in zip(files, files[1:]):
            if int(nxt.name[4:24]) <= first_seq and path != self._path:
                path.unlink(missing_ok=True)
                crashpoints.step("wal.remove")
        fsync_dir(self.dir)

    @property
    def nbytes(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd, self._path = None, None


class WalTail:
    """Reads a log that another process writes, as it grows (a read-only follower).

    It never writes: a record cut off at the end is one being appended right now — the next
    read() takes it once whole; a complete record failing its check is damage
    (WALCorruptError), as for the writer. Files are read in name order from where the last
    read() stopped, only the bytes added since; a file removed meanwhile (its records sealed
    into a segment) is skipped."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self._file: str | None = None  # name of the file being followed
        self._pos = 0                  # where its next record starts
        self._v1 = False               # that file has the old record format

    def read(self) -> list:
        ops = []
        for path in sorted(self.dir.glob("wal-*.log")):
            if self._file is not None and path.name < self._file:
                continue
            if path.name != self._file:
                self._file, self._pos = path.name, 0
            try:
                with open(path, "rb") as f:
                    if self._pos == 0:  # a file not started yet: its format first
                        fmt = _file_format(f.read(len(_MAGIC)))
                        if fmt is None:
                            continue  # created, magic not yet written
                        self._pos, self._v1 = fmt
                    f.seek(self._pos)
                    data = f.read()
            except FileNotFoundError:  # removed after a commit: its records are in a segment
                continue
            pos = 0
            while pos < len(data):
                rec = _read_record(data, pos, self._v1)
                if isinstance(rec, _Damage):
                    if rec.cut_off:
                        self._pos += pos
                        return ops  # being written: next time
                    raise WALCorruptError(f"write-ahead log {path} is corrupted at byte {self._pos + pos}: "
                                          f"{rec.what}", path=path, check=rec.check)
                op, pos = rec
                ops.append(op)
            self._pos += pos
        return ops
