"""Which shard owns a document: a stable hash of its id, the same in every process, on every
machine and in every Python version (not ``hash()``, which is salted per process)."""
from __future__ import annotations

import hashlib
from pathlib import Path


def shard_of(doc_id: str, shards: int) -> int:
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % shards


def group_by_shard(ids: list[str], shards: int) -> dict[int, list[int]]:
    """{shard: positions in ids}, positions in their original order."""
    out: dict[int, list[int]] = {}
    for i, doc_id in enumerate(ids):
        out.setdefault(shard_of(doc_id, shards), []).append(i)
    return out


def shard_dir(root: Path, shard: int) -> Path:
    """The data directory of one shard (shared storage in production: readers on other
    machines follow it read-only)."""
    return Path(root) / f"shard-{shard:03d}"
