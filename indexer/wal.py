"""Write-ahead log: every acknowledged upsert or delete is a record here, fsync'd before the
call returns, until a flush has sealed it into a segment.

Record = u32 payload length | u32 CRC32 of payload | payload. The payload is a u32 header
length, a JSON header (operation, sequence number, ids, texts, metadata) and the raw bytes of
the vectors' arrays. Files are named by the first sequence number they may hold; a flush
rotates to a new file and, once the segment is committed, deletes the older ones.

On replay a record cut short or failing its checksum at the very end of the last file is a
write torn by a crash: it was never acknowledged, so it is dropped and the file truncated to the
last whole record. A bad record anywhere else is corruption and raises WALCorruptError.
"""
from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .atomic import fsync_dir
from .storage import IndexFormatError

_REC = struct.Struct("<II")
_U32 = struct.Struct("<I")


class WALCorruptError(IndexFormatError):
    """A write-ahead log record in the middle of the log fails its checksum."""


@dataclass
class UpsertOp:
    seq: int
    ids: list[str]
    vectors: dict  # field -> csr_matrix (sparse) or 2-D float32 ndarray (dense)
    texts: list | None
    metadata: list | None
    lengths: np.ndarray  # int64 per document


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
    return UpsertOp(header["seq"], header["ids"], vectors, header["texts"], header["metadata"],
                    arrays["lengths"])


def _file_name(first_seq: int) -> str:
    return f"wal-{first_seq:020d}.log"


class WriteAheadLog:
    """Append-only log files under one directory; one writer at a time (the caller's lock)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self._path: Path | None = None

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("wal-*.log"))

    def replay(self) -> list:
        """All whole records in order; truncates a torn tail of the last file (see module doc)."""
        ops, files = [], self.files()
        for i, path in enumerate(files):
            data = path.read_bytes()
            pos, last = 0, i == len(files) - 1
            while pos < len(data):
                torn = None
                if pos + _REC.size > len(data):
                    torn = "a cut-off record header"
                else:
                    n, crc = _REC.unpack_from(data, pos)
                    end = pos + _REC.size + n
                    if end > len(data):
                        torn = "a cut-off record"
                    elif zlib.crc32(data[pos + _REC.size:end]) != crc:
                        if end < len(data) or not last:
                            raise WALCorruptError(f"write-ahead log {path} is corrupted at byte {pos} "
                                                  "(checksum mismatch before the end of the log)")
                        torn = "a record failing its checksum"
                if torn is not None:
                    if not last:
                        raise WALCorruptError(f"write-ahead log {path} ends in {torn} but is not the "
                                              "newest log file")
                    self._truncate(path, pos)  # never acknowledged: drop it
                    break
                ops.append(decode_op(data[pos + _REC.size:end]))
                pos = end
        return ops

    @staticmethod
    def _truncate(path: Path, size: int) -> None:
        with open(path, "r+b") as f:
            f.truncate(size)
            f.flush()
            os.fsync(f.fileno())

    def open(self, next_seq: int) -> None:
        """Append to the newest file, or start one at next_seq when there is none."""
        files = self.files()
        self._open_file(files[-1] if files else self.dir / _file_name(next_seq))

    def _open_file(self, path: Path) -> None:
        self.close()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._path = path
        fsync_dir(self.dir)

    def append(self, payload: bytes) -> None:
        """Write one record and fsync it: when this returns the operation is durable."""
        rec = _REC.pack(len(payload), zlib.crc32(payload)) + payload
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            view = memoryview(rec)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
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
        fsync_dir(self.dir)

    @property
    def nbytes(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd, self._path = None, None
