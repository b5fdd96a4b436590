"""On-disk format shared by the indexes: one .npy file per array plus manifest.json.

A directory is written next to its destination and renamed into place only when complete
(every file fsync'd), so a reader sees either the old index or the new one, never a mix.
The manifest records the format version, the parameters and a CRC32 of every array file;
load() checks the version and refuses a file whose size or checksum does not match.
"""
from __future__ import annotations

import json
import mmap as mmap_module
import os
import shutil
import uuid
import zlib
from pathlib import Path

import numpy as np

from . import crashpoints
from .errors import CorruptionError

FORMAT_VERSION = 1


class IndexFormatError(CorruptionError):
    """The files on disk are not a readable index of this format version (damaged or foreign)."""


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
    crashpoints.step("fsync_dir")


def _manifest_crc(manifest: dict) -> int:
    body = {k: v for k, v in manifest.items() if k != "crc32"}
    return zlib.crc32(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def _write_npy(path: Path, arr: np.ndarray) -> None:
    """np.save's bytes, written by Python's file object and fsync'd: numpy's own writer reports a
    full disk as a bare OSError without errno, and callers must see ENOSPC to know it."""
    arr = np.ascontiguousarray(arr)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(arr))
        f.write(arr.reshape(-1).view(np.uint8).data)
        f.flush()
        os.fsync(f.fileno())


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
            _write_npy(fp, arr)
            crashpoints.step("save_arrays.file")
            files[name] = {"bytes": fp.stat().st_size, "crc32": crc32_file(fp)}
        manifest = {"format": "lsr-search-index", "kind": kind, "format_version": FORMAT_VERSION,
                    "files": files, **meta}
        manifest["crc32"] = _manifest_crc(manifest)
        with open(tmp / "manifest.json", "w") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        crashpoints.step("save_arrays.manifest")
        fsync_dir(tmp)
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, old)
            crashpoints.step("save_arrays.rename_old")
        os.rename(tmp, path)
        crashpoints.step("save_arrays.rename")
        fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
            crashpoints.step("save_arrays.remove_old")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_arrays(path, kind: str, *, mmap: bool = True,
                verify: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """Read back what save_arrays wrote; raises IndexFormatError on any mismatch."""
    path = Path(path)
    mf = path / "manifest.json"
    if not mf.is_file():
        raise IndexFormatError(f"{path} is not an index directory (no manifest.json)", path=mf,
                               check="missing file")
    try:
        manifest = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"{mf} is corrupted: {exc}", path=mf, check="json") from exc
    if not isinstance(manifest, dict):
        raise IndexFormatError(f"{mf} is corrupted (not a JSON object)", path=mf, check="json")
    if manifest.get("format") != "lsr-search-index":
        raise IndexFormatError(f"{mf} is not an lsr-search index manifest", path=mf, check="format")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexFormatError(
            f"{path} was written with index format version {version}; this version of lsr-search "
            f"reads version {FORMAT_VERSION}. Rebuild the index from its documents.", path=mf,
            check="format version")
    # The manifest's own checksum, checked once the version says how to read it: a flipped byte
    # in a file name or size is this manifest's damage, not a missing array (manifests written
    # before it carried one have none).
    if manifest.get("crc32", _manifest_crc(manifest)) != _manifest_crc(manifest):
        raise IndexFormatError(f"{mf} is corrupted (checksum mismatch)", path=mf, check="checksum")
    if manifest.get("kind") != kind:
        raise IndexFormatError(f"{path} holds a {manifest.get('kind')!r} index, not {kind!r}",
                               path=mf, check="kind")
    arrays = {}
    for name, info in manifest["files"].items():
        fp = path / f"{name}.npy"
        size = fp.stat().st_size if fp.is_file() else None
        if size != info["bytes"]:
            raise IndexFormatError(f"{fp} is missing or truncated", path=fp,
                                   check="missing file" if size is None else "size")
        if verify and crc32_file(fp) != info["crc32"]:
            raise IndexFormatError(f"{fp} is corrupted (checksum mismatch)", path=fp, check="checksum")
        arrays[name] = np.load(fp, mmap_mode="r", allow_pickle=False) if mmap else _load_resident(fp)
    return arrays, manifest


_HUGE_MIN = 4 << 20  # arrays from this size up are read into memory that may use 2 MiB pages


def _load_resident(fp: Path) -> np.ndarray:
    """An .npy file read into memory. A large array goes into an anonymous mapping advised for
    transparent huge pages (THP in "madvise" mode, a common default and this machine's, gives
    them only to mappings that ask): an index's forward index and summaries are read at
    random, and a 1 GB index in 4 KiB pages overflows the TLB many times (synthetic-1m queries
    1-10 % faster with 2 MiB pages, one core, same process). Elsewhere, or when the kernel
    declines, these are ordinary pages."""
    with open(fp, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            return np.load(fp, allow_pickle=False)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        count = int(np.prod(shape, dtype=np.int64))
        n = count * dtype.itemsize
        if n < _HUGE_MIN or dtype.hasobject:
            return np.load(fp, allow_pickle=False)
        buf = mmap_module.mmap(-1, n, flags=mmap_module.MAP_PRIVATE | mmap_module.MAP_ANONYMOUS)
        if hasattr(mmap_module, "MADV_HUGEPAGE"):
            buf.madvise(mmap_module.MADV_HUGEPAGE)
        view, got = memoryview(buf), 0
        while got < n:
            r = f.readinto(view[got:])
            if not r:
                raise IndexFormatError(f"{fp} is truncated", path=fp, check="size")
            got += r
        view.release()
    return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C")
