"""BEIR-layout data: corpus.jsonl (_id, title, text), queries.jsonl (_id, text), qrels/<split>.tsv."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

Qrels = dict[str, dict[str, int]]


def _require(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"missing {path} (expected a BEIR-layout folder)")
    return path


def load_titled_corpus(folder: str | Path) -> tuple[list[str], list[str], list[str]]:
    """Document ids, titles and texts of corpus.jsonl (stripped), in file order."""
    ids, titles, texts = [], [], []
    with _require(Path(folder) / "corpus.jsonl").open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            d = json.loads(line)
            if "_id" not in d:
                raise ValueError(f"corpus.jsonl line {n} has no _id")
            ids.append(str(d["_id"]))
            titles.append((d.get("title") or "").strip())
            texts.append((d.get("text") or "").strip())
    return ids, titles, texts


def load_corpus(folder: str | Path) -> tuple[list[str], list[str]]:
    """Document ids and texts; a text is "title text" as BEIR's evaluation joins them."""
    ids, titles, texts = load_titled_corpus(folder)
    return ids, [f"{t} {x}".strip() for t, x in zip(titles, texts)]


def load_queries(folder: str | Path) -> dict[str, str]:
    queries = {}
    with _require(Path(folder) / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                queries[str(d["_id"])] = d.get("text") or ""
    return queries


def load_qrels(folder: str | Path, split: str = "test") -> Qrels:
    """query id -> {doc id: relevance}, from the tab-separated file with a header row."""
    qrels: Qrels = {}
    with _require(Path(folder) / "qrels" / f"{split}.tsv").open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t")
        header = next(rows, None)
        if header is None:
            raise ValueError(f"qrels/{split}.tsv is empty")
        if header[0].strip() != "query-id":  # tolerate a headerless file
            rows = iter([header, *rows])
        for row in rows:
            if len(row) >= 3:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class BeirDataset:
    name: str
    doc_ids: list[str]
    doc_texts: list[str]
    query_ids: list[str]  # the judged queries of the split, in queries.jsonl order
    query_texts: list[str]
    qrels: Qrels
    corpus_sha256: str

    @classmethod
    def load(cls, folder: str | Path, split: str = "test") -> BeirDataset:
        folder = Path(folder)
        doc_ids, doc_texts = load_corpus(folder)
        queries = load_queries(folder)
        qrels = load_qrels(folder, split)
        missing = [q for q in qrels if q not in queries]
        if missing:
            raise ValueError(f"{len(missing)} qrels query ids not in queries.jsonl, e.g. {missing[0]}")
        qids = [q for q in queries if q in qrels]
        return cls(folder.resolve().name, doc_ids, doc_texts, qids, [queries[q] for q in qids],
                   qrels, file_hash(folder / "corpus.jsonl"))
