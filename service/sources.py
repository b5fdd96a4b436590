"""Document sources for batch indexing: JSONL files, Parquet files and BEIR folders.

Each record becomes (id, text, metadata). Ids come from ``id`` or ``_id``; the text is
``title`` and ``text`` joined (BEIR's convention); metadata is the ``metadata`` object if
there is one, else every other field.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

Record = tuple[str, str, dict | None]
_RESERVED = {"id", "_id", "text", "title", "metadata"}


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    if path.is_dir():
        return "beir"
    return "parquet" if path.suffix.lower() in (".parquet", ".pq") else "jsonl"


def resolve(source: str, fmt: str | None) -> tuple[Path, str]:
    path = Path(source).expanduser()
    if not path.exists():
        raise ValueError(f"source {source!r} does not exist on the server")
    fmt = detect_format(path, fmt)
    if fmt == "beir":
        path = path / "corpus.jsonl" if path.is_dir() else path
        if not path.is_file():
            raise ValueError(f"{source!r} is not a BEIR folder (no corpus.jsonl)")
    elif not path.is_file():
        raise ValueError(f"source {source!r} is not a file")
    return path, fmt


def to_record(d: dict, where: str) -> Record:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a JSON object")
    doc_id = d.get("id", d.get("_id"))
    if doc_id is None or (isinstance(doc_id, str) and not doc_id):
        raise ValueError(f"{where}: no id (or _id)")
    text = " ".join(str(d[k]) for k in ("title", "text") if d.get(k)).strip()
    meta = d.get("metadata")
    if meta is None:
        meta = {k: v for k, v in d.items() if k not in _RESERVED} or None
    elif isinstance(meta, str):
        meta = json.loads(meta) if meta else None
    if meta is not None and not isinstance(meta, dict):
        raise ValueError(f"{where}: metadata must be an object")
    return str(doc_id), text, meta


def count(path: Path, fmt: str) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq
        return pq.ParquetFile(path).metadata.num_rows
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def read(path: Path, fmt: str, skip: int = 0) -> Iterator[Record]:
    """Records in file order, after the first ``skip`` (resuming a job)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq
        n = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for d in batch.to_pylist():
                n += 1
                if n > skip:
                    yield to_record(d, f"{path.name} row {n}")
        return
    n = 0
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            n += 1
            if n <= skip:
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path.name} line {lineno}: invalid JSON ({exc.msg})") from None
            yield to_record(d, f"{path.name} line {lineno}")
