"""On-disk format shared by the indexes: one .npy file per array plus manifest.json.

A directory is written next to its destination and renamed into place only when complete
(every file fsync'd), so a reader sees either the old index or the new one, never a mix.
The manifest records the format version, the parameters and a CRC32 of every array file;
load() checks the version and refuses a file whose size or checksum does not match.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
import zlib
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1


class IndexFormatError(ValueError):
    """The files on disk are not a readable index of this format version."""


def crc32_file(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_arrays(path, kind: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Atomically write `arrays` and a manifest to directory `path` (replacing any old one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files = {}
        for name, arr in arrays.items():
            fp = tmp / f"{name}.npy"
            with open(fp, "wb") as f:
                np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            files[name] = {"bytes": fp.stat().st_size, "crc32": crc32_file(fp)}
        manifest = {"format": "lsr-search-index", "kind": kind, "format_version": FORMAT_VERSION,
                    "files": files, **meta}
        with open(tmp / "manifest.json", "w") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(tmp)
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, old)
        os.rename(tmp, path)
        fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_arrays(path, kind: str, *, mmap: bool = True,
                verify: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """Read back what save_arrays wrote; raises IndexFormatError on any mismatch."""
    path = Path(path)
    mf = path / "manifest.json"
    if not mf.is_file():
        raise IndexFormatError(f"{path} is not an index directory (no manifest.json)")
    try:
        manifest = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"{mf} is corrupted: {exc}") from exc
    if manifest.get("format") != "lsr-search-index":
        raise IndexFormatError(f"{mf} is not an lsr-search index manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexFormatError(
            f"{path} was written with index format version {version}; this version of lsr-search "
            f"reads version {FORMAT_VERSION}. Rebuild the index from its documents.")
    if manifest.get("kind") != kind:
        raise IndexFormatError(f"{path} holds a {manifest.get('kind')!r} index, not {kind!r}")
    arrays = {}
    for name, info in manifest["files"].items():
        fp = path / f"{name}.npy"
        if not fp.is_file() or fp.stat().st_size != info["bytes"]:
            raise IndexFormatError(f"{fp} is missing or truncated")
        if verify and crc32_file(fp) != info["crc32"]:
            raise IndexFormatError(f"{fp} is corrupted (checksum mismatch)")
        arrays[name] = np.load(fp, mmap_mode="r" if mmap else None, allow_pickle=False)
    return arrays, manifest
