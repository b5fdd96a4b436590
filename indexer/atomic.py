"""Small durable-file helpers: atomic JSON documents that carry their own checksum.

A JSON file is written to a temporary name in the same directory, fsync'd, renamed over the
destination and the directory fsync'd, so a reader sees the old file or the new one, never a
mix. The body carries a CRC32 of its canonical encoding, so a torn or edited file is refused.
"""
from __future__ import annotations

import json
import os
import uuid
import zlib
from pathlib import Path

from . import crashpoints
from .storage import IndexFormatError, crc32_file, fsync_dir

__all__ = ["IndexFormatError", "crc32_file", "fsync_dir", "read_json_checked", "write_json_atomic",
           "write_bytes_durable"]


def _canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def write_bytes_durable(path: Path, data: bytes) -> None:
    """Write a new file and fsync it (the caller fsyncs the directory once for many files).
    On failure (a full disk...) the partial file is removed."""
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise
    crashpoints.step("write_bytes_durable")


def write_json_atomic(path, obj: dict) -> None:
    """Atomically replace `path` with `obj` plus a "crc32" field over its canonical encoding."""
    path = Path(path)
    body = dict(obj)
    body.pop("crc32", None)
    body["crc32"] = zlib.crc32(_canonical(body))
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        write_bytes_durable(tmp, json.dumps(body, indent=1, sort_keys=True).encode())
        os.replace(tmp, path)
        crashpoints.step("write_json_atomic.rename")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def read_json_checked(path, what: str) -> dict:
    """Read a file written by write_json_atomic; IndexFormatError if missing, torn or altered."""
    path = Path(path)
    if not path.is_file():
        raise IndexFormatError(f"{what} {path} is missing", path=path, check="missing file")
    try:
        body = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"{what} {path} is corrupted (not valid JSON: {exc})", path=path,
                               check="json") from exc
    if not isinstance(body, dict) or "crc32" not in body:
        raise IndexFormatError(f"{what} {path} is corrupted (no checksum)", path=path, check="checksum")
    crc = body.pop("crc32")
    if zlib.crc32(_canonical(body)) != crc:
        raise IndexFormatError(f"{what} {path} is corrupted (checksum mismatch)", path=path,
                               check="checksum")
    return body
