"""Document store of a segment: ids, versions, text, metadata and lengths in one Arrow IPC file.

Arrow IPC (uncompressed) is memory-mapped on open, so reading one document's text is a slice of
the mapped file rather than the decoding of a Parquet row group. Metadata is kept as a JSON
string per document: it is schema-free (each document may carry different keys) and the filter
module builds typed per-key columns from it on first use.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from . import crashpoints
from .storage import IndexFormatError

SCHEMA = pa.schema([("id", pa.string()), ("seq", pa.int64()), ("text", pa.string()),
                    ("metadata", pa.string()), ("length", pa.int64())])


def write_docs(path: Path, ids: list[str], seqs: np.ndarray, texts: list, metadata: list,
               lengths: np.ndarray) -> None:
    """Write the table (the caller fsyncs the file as part of sealing the segment)."""
    meta_json = [None if m is None else json.dumps(m, ensure_ascii=False, allow_nan=False)
                 for m in metadata]
    table = pa.table([pa.array(ids, pa.string()), pa.array(seqs, pa.int64()),
                      pa.array(texts, pa.string()), pa.array(meta_json, pa.string()),
                      pa.array(lengths, pa.int64())], schema=SCHEMA)
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, SCHEMA) as writer:
        writer.write_table(table, max_chunksize=1 << 16)
    crashpoints.step("docstore.write")


class DocTable:
    """Read-only view of a segment's documents, memory-mapped."""

    def __init__(self, path: Path):
        try:
            self._source = pa.memory_map(str(path), "r")
            table = ipc.open_file(self._source).read_all()
        except (pa.ArrowInvalid, OSError) as exc:
            raise IndexFormatError(f"document store {path} is unreadable: {exc}", path=path,
                                   check="arrow") from exc
        if not table.schema.equals(SCHEMA):
            raise IndexFormatError(f"document store {path} has schema {table.schema}, expected {SCHEMA}",
                                   path=path, check="schema")
        self._table = table.combine_chunks()
        self.ids: list[str] = self._table.column("id").to_pylist()
        self.seqs = self._table.column("seq").to_numpy()
        self.lengths = self._table.column("length").to_numpy()
        self._texts = self._table.column("text")
        self._meta = self._table.column("metadata")
        self._meta_cache: list | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def text(self, row: int):
        return self._texts[row].as_py()

    def metadata(self, row: int):
        s = self._meta[row].as_py()
        return None if s is None else json.loads(s)

    def all_metadata(self) -> list:
        """Every row's metadata dict (parsed once, for building filter columns)."""
        if self._meta_cache is None:
            self._meta_cache = [None if s is None else json.loads(s) for s in self._meta.to_pylist()]
        return self._meta_cache

    def texts(self) -> list:
        return self._texts.to_pylist()
