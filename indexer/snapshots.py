"""Snapshots of a collection, restoring one, and finishing what a crash interrupted.

A snapshot is a directory laid out like a collection (_STATE_ENTRIES: the configuration, the
committed state and its WAL), written durably and made visible by one rename. Restoring copies
it into the data directory and swaps it in by renames. Creates, restores and drops all work in
hidden directories next to the collections (_LEFTOVER_RE) that a crash may leave behind;
recover_interrupted() cleans those up. Collection.snapshot/restore/recover_interrupted call
these; snapshot() reads the collection's locks and committed state, which collection.py owns.
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

from . import crashpoints
from .atomic import fsync_dir, read_json_checked
from .collection_config import check_name
from .datadir import acquire_collection_lock
from .errors import CollectionExistsError, ConflictError
from .segment import segment_dir_name

# .<name>.<kind>-<hex>: a create/restore in progress, a dropped or a replaced collection
_LEFTOVER_RE = re.compile(r"^\.(.+)\.(tmp|dropped|replaced)-[0-9a-f]{8}$")
# What a snapshot holds: the configuration and the committed state plus its WAL.
_STATE_ENTRIES = {"collection.json", "MANIFEST.json", "segments", "tombstones", "wal"}


def snapshot(coll, dest_dir, *, hard_links: bool = True) -> None:
    """Write a consistent copy of the collection `coll` to a new directory dest_dir.

    The buffer is flushed first. Segment files are immutable: they are copied (or, with
    hard_links, linked when on the same file system — cheap, but then a flipped bit hits
    both, so a snapshot meant for recovering from damage takes copies) while only the
    maintenance lock is held, so writes and searches go on. The manifest, tombstones and
    WAL are copied under the lock; everything is fsync'd; dest_dir appears atomically."""
    dest = Path(dest_dir)
    if dest.exists():
        raise ConflictError(f"snapshot destination {dest} already exists")
    coll.flush()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    with coll._seal_lock, coll._merge_lock:  # the segment list and the tombstones stay put
        try:
            with coll._lock:
                coll._check_writable()
                segments = {segment_dir_name(s.id) for s in coll._segments}
            tmp.mkdir(parents=True)
            _copy_tree(coll.path / "segments", tmp / "segments", keep=segments, link=hard_links)
            with coll._lock:
                coll._check_open()
                for sub in ("tombstones", "wal"):
                    _copy_tree(coll.path / sub, tmp / sub,
                               keep={coll._tomb_name} if sub == "tombstones" else None, link=False)
                for name in ("collection.json", "MANIFEST.json"):
                    _copy_file(coll.path / name, tmp / name, link=False)
            fsync_dir(tmp)
            os.rename(tmp, dest)
            crashpoints.step("snapshot.rename")
            fsync_dir(dest.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def restore(open_collection, src_dir, data_dir, name: str, *, replace: bool, wal_recovery: str,
            maintenance: bool):
    """Create collection `name` in data_dir from a snapshot directory and open it (with
    open_collection: Collection.open).

    replace=True swaps out an existing collection of that name (which no Collection object
    may have open): the snapshot is copied in full first, then two renames swap the
    directories, and the old one is deleted only once the restored one has opened — if
    opening fails, the old one is put back. A crash between the two renames leaves the old
    directory as .<name>.replaced-*, which recover_interrupted() puts back."""
    name = check_name(name)
    src = Path(src_dir)
    read_json_checked(src / "collection.json", "snapshot configuration")
    read_json_checked(src / "MANIFEST.json", "snapshot manifest")
    data_dir = Path(data_dir)
    final = data_dir / name
    if final.exists() and not replace:
        raise CollectionExistsError(f"collection {name!r} already exists")
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
    aside = data_dir / f".{name}.replaced-{uuid.uuid4().hex[:8]}"
    lock = acquire_collection_lock(final) if final.exists() else None  # nobody may have it open
    try:
        # copies, not links: the restored collection and the snapshot share no inode
        _copy_tree(src, tmp, keep=_STATE_ENTRIES, link=False)
        if lock is not None:
            os.rename(final, aside)
            crashpoints.step("restore.rename_old")
        os.rename(tmp, final)
        crashpoints.step("restore.rename")
        fsync_dir(data_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if aside.exists() and not final.exists():
            os.rename(aside, final)
        raise
    finally:
        if lock is not None:
            os.close(lock)
    try:
        coll = open_collection(data_dir, name, wal_recovery=wal_recovery, maintenance=maintenance)
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)  # a broken snapshot leaves nothing behind
        if aside.exists():
            os.rename(aside, final)
        fsync_dir(data_dir)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return coll


def recover_interrupted(data_dir) -> list[str]:
    """Finish what a crash interrupted in data_dir: put back a collection whose restore
    stopped between its two renames; delete leftovers of creates, restores and drops.
    Only the process that writes to data_dir may call this. Returns what it did."""
    done = []
    d = Path(data_dir)
    if not d.is_dir():
        return done
    for p in sorted(d.iterdir()):
        m = _LEFTOVER_RE.fullmatch(p.name)
        if m is None:
            continue
        name, kind = m.group(1), m.group(2)
        if kind == "replaced" and not (d / name).exists():
            os.rename(p, d / name)
            done.append(f"put back {name!r} (its restore was interrupted)")
        else:
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p.name}")
    if done:
        fsync_dir(d)
    return done


def _copy_tree(src: Path, dst: Path, keep: set | None, link: bool) -> None:
    """Copy a directory durably (files fsync'd, or hard-linked with link=True); keep limits
    which top-level entries are taken; hidden (temporary) entries are skipped."""
    dst.mkdir()
    for child in sorted(src.iterdir()):
        if child.name.startswith(".") or (keep is not None and child.name not in keep):
            continue
        if child.is_dir():
            _copy_tree(child, dst / child.name, None, link)
        else:
            _copy_file(child, dst / child.name, link)
    fsync_dir(dst)


def _copy_file(src: Path, dst: Path, link: bool) -> None:
    if link:
        try:
            os.link(src, dst)
            crashpoints.step("copy_tree.link")
            return
        except OSError:
            pass  # another file system: copy instead
    shutil.copyfile(src, dst)
    with open(dst, "rb+") as f:
        os.fsync(f.fileno())
    crashpoints.step("copy_tree.copy")
