"""Snapshots as tar archives: stream one out (download), take one in (upload).

A download is a plain (uncompressed) POSIX tar written on the fly, file by file in 1 MiB
chunks, so the server never holds an archive — or even one whole segment file — in memory.
Every file of the snapshot is opened before the first byte is sent: a snapshot deleted
while it downloads still arrives whole (its open files outlive the unlink).

An upload is read with every member checked before anything is written: only regular files
and directories, relative names without ``..`` and without a leading ``/``, inside the
entries a snapshot holds. Links, devices and FIFOs are refused — a snapshot never holds them,
and a link is the classic way out of the extraction directory. The archive becomes a new
snapshot of the collection (``<data dir>/.snapshots/<name>/<id>``), written under a hidden
temporary name and made visible by one rename.
"""
from __future__ import annotations

import json
import os
import posixpath
import shutil
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from indexer.atomic import fsync_dir, read_json_checked
from indexer.errors import LsrError

from .errors import BadRequest

ARCHIVE_INFO = "lsr-snapshot.json"  # first member: what the archive holds
FORMAT = "lsr-search-snapshot"
# top-level entries of a snapshot directory (indexer/snapshots.py, _STATE_ENTRIES)
SNAPSHOT_ENTRIES = frozenset({"collection.json", "MANIFEST.json", "segments", "tombstones", "wal"})
CHUNK = 1 << 20
_BLOCK = tarfile.BLOCKSIZE


def _header(name: str, size: int, mtime: float, is_dir: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = 0 if is_dir else size
    info.mtime = int(mtime)
    info.mode = 0o755 if is_dir else 0o644
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def _padding(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)


def open_snapshot(path: Path, meta: dict) -> Iterator[bytes]:
    """The snapshot directory `path` as a tar stream (an iterator of bytes). The files are
    opened now (so a concurrent delete cannot cut the archive short); the iterator closes them."""
    entries: list[tuple[str, Path, bool]] = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        rel_root = os.path.relpath(root, path)
        for d in dirs:
            entries.append((posixpath.normpath(posixpath.join(rel_root, d)), Path(root) / d, True))
        for f in sorted(files):
            entries.append((posixpath.normpath(posixpath.join(rel_root, f)), Path(root) / f, False))
    opened: list[tuple[str, BinaryIO | None, os.stat_result]] = []
    try:
        for rel, p, is_dir in entries:
            if is_dir:
                opened.append((rel, None, p.stat()))
            else:
                f = open(p, "rb")
                opened.append((rel, f, os.fstat(f.fileno())))
    except BaseException:
        for _, f, _ in opened:
            if f is not None:
                f.close()
        raise
    info = json.dumps({"format": FORMAT, **meta}, indent=1).encode()

    def stream() -> Iterator[bytes]:
        try:
            yield _header(ARCHIVE_INFO, len(info), time.time()) + info + _padding(len(info))
            for rel, f, st in opened:
                if f is None:
                    yield _header(rel, 0, st.st_mtime, is_dir=True)
                    continue
                yield _header(rel, st.st_size, st.st_mtime)
                left = st.st_size  # the size in the header: a file is immutable in a snapshot
                while left > 0:
                    chunk = f.read(min(CHUNK, left))
                    if not chunk:
                        raise OSError(f"snapshot file {rel} shrank while it was sent")
                    left -= len(chunk)
                    yield chunk
                yield _padding(st.st_size)
                f.close()
            yield b"\0" * (2 * _BLOCK)  # end of archive
        finally:
            for _, f, _ in opened:
                if f is not None:
                    f.close()
    return stream()


def _member_name(m: tarfile.TarInfo) -> str:
    """The member's safe relative name, or BadRequest naming the field and the member."""
    name = m.name
    if "\0" in name or "\\" in name:
        raise BadRequest(f"file: archive member {name!r} has a forbidden character")
    if name.startswith("/") or posixpath.isabs(name):
        raise BadRequest(f"file: archive member {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise BadRequest(f"file: archive member {name!r} leads outside the archive ('..')")
    if m.issym() or m.islnk():
        raise BadRequest(f"file: archive member {name!r} is a link (a snapshot holds none)")
    if not (m.isfile() or m.isdir()):
        raise BadRequest(f"file: archive member {name!r} is not a regular file or directory")
    if not parts:
        return ""
    if parts[0] != ARCHIVE_INFO and parts[0] not in SNAPSHOT_ENTRIES:
        raise BadRequest(f"file: archive member {name!r} is not part of a snapshot (expected "
                         f"{ARCHIVE_INFO} and {sorted(SNAPSHOT_ENTRIES)})")
    if parts[0] in (ARCHIVE_INFO, "collection.json", "MANIFEST.json") and (len(parts) > 1 or m.isdir()):
        raise BadRequest(f"file: archive member {name!r} is not part of a snapshot")
    return "/".join(parts)


def import_archive(fileobj: BinaryIO, dest: Path) -> None:
    """Extract an uploaded snapshot archive into the new directory `dest` (made visible by one
    rename once complete and fsync'd). Any unsafe or foreign member: BadRequest, nothing kept."""
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r:")  # uncompressed, as downloads are
    except (tarfile.TarError, EOFError) as exc:
        raise BadRequest(f"file: not an uncompressed tar archive of a snapshot ({exc})") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with tar:
            try:
                members = tar.getmembers()
            except (tarfile.TarError, EOFError) as exc:
                raise BadRequest(f"file: the tar archive is damaged ({exc})") from None
            checked = [(m, _member_name(m)) for m in members]  # every member before any write
            names = {rel for _, rel in checked}
            missing = sorted({"collection.json", "MANIFEST.json"} - names)
            if missing:
                raise BadRequest(f"file: the archive is not a snapshot: it has no {missing}")
            if len(names) != len(checked):
                raise BadRequest("file: the archive names a member twice")
            tmp.mkdir()
            for m, rel in checked:
                if not rel or rel == ARCHIVE_INFO:
                    continue
                target = tmp / rel
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                with open(target, "xb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
                    out.flush()
                    os.fsync(out.fileno())
        _check_json(tmp / "collection.json", "collection.json")
        _check_json(tmp / "MANIFEST.json", "MANIFEST.json")
        for sub in ("segments", "tombstones", "wal"):
            (tmp / sub).mkdir(exist_ok=True)
        for root, _dirs, _files in os.walk(tmp, topdown=False):
            fsync_dir(Path(root))
        os.rename(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_json(path: Path, what: str) -> None:
    """The file as the indexer writes it (JSON with its checksum); BadRequest otherwise."""
    try:
        read_json_checked(path, what)
    except LsrError as exc:
        check = getattr(exc, "check", None) or "format"
        raise BadRequest(f"file: the archive's {what} fails its check ({check})") from None
