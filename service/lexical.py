"""BM25 over a growing collection, as sparse vectors through the same index as SPLADE.

encoders.bm25.BM25Encoder fits a vocabulary on a fixed corpus; a collection grows with every
upsert, so here terms are hashed into a fixed space (``DIM`` ids) with a stable hash. The
document side stores the saturated term frequency ``tf / (tf + k1 * (1 - b + b * |d| / avgdl))``
(avgdl as of indexing time); the query side carries ``idf(t) * count(t)`` computed at query
time from the collection's live document frequencies (Collection.term_stats), so IDF is always
current and the dot product is the BM25 score. Tokenisation is bm25s's (encoders.bm25.Tokenizer).
"""
from __future__ import annotations

import zlib
from collections import Counter

import numpy as np
import scipy.sparse as sp

from encoders.base import csr_from_rows
from encoders.bm25 import Tokenizer

DIM = 1 << 18  # collisions stay rare for vocabularies of a few tens of thousands of words
K1, B = 1.5, 0.75

_tokenize = Tokenizer()


def term_id(token: str) -> int:
    return zlib.crc32(token.encode("utf-8")) % DIM


def counts(text: str) -> tuple[Counter, int]:
    tokens = _tokenize(text or "")
    return Counter(term_id(t) for t in tokens), len(tokens)


def token_terms(text: str) -> dict[int, str]:
    """Term id -> token, to explain a BM25 score in words."""
    return {term_id(t): t for t in _tokenize(text or "")}


def count_rows(texts: list[str]) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Per text (term ids, term frequencies float64), and the token lengths."""
    rows, lengths = [], np.empty(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        c, lengths[i] = counts(t)
        rows.append((np.fromiter(c.keys(), dtype=np.int32, count=len(c)),
                     np.fromiter(c.values(), dtype=np.float64, count=len(c))))
    return rows, lengths


def fill_counts(rows: list, texts: list) -> tuple[list, np.ndarray]:
    """Term frequencies and token lengths of a batch: a client's rows (ids, tfs) as given, whose
    length is the tfs' sum; None rows counted from their text."""
    todo = [i for i, r in enumerate(rows) if r is None]
    counted, text_lengths = count_rows([texts[i] for i in todo])
    rows, lengths = list(rows), np.empty(len(rows), dtype=np.int64)
    for i, r in enumerate(rows):
        if r is not None:
            lengths[i] = int(round(float(r[1].sum())))
    for j, i in enumerate(todo):
        rows[i], lengths[i] = counted[j], text_lengths[j]
    return rows, lengths


def saturate(rows: list[tuple[np.ndarray, np.ndarray]], lengths: np.ndarray, avgdl: float) -> sp.csr_matrix:
    """The document side of BM25: ``tf / (tf + k1 * (1 - b + b * |d| / avgdl))`` per term, as CSR."""
    out = []
    for (ids, tf), n in zip(rows, lengths):
        tf = np.asarray(tf, dtype=np.float64)
        norm = K1 * (1.0 - B + B * n / avgdl)
        out.append((ids, (tf / (tf + norm)).astype(np.float32)))
    return csr_from_rows(out, DIM)


def encode_documents(texts: list[str], avgdl: float | None = None) -> tuple[sp.csr_matrix, np.ndarray]:
    """(saturated-tf CSR, token lengths); avgdl defaults to this batch's mean length."""
    rows, lengths = count_rows(texts)
    if avgdl is None or avgdl <= 0:
        avgdl = float(lengths.mean()) if len(lengths) and lengths.mean() > 0 else 1.0
    return saturate(rows, lengths, avgdl), lengths


def idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    """Lucene's idf, never negative."""
    return np.log1p((n_docs - df + 0.5) / (df + 0.5))


def encode_query(text: str, stats) -> tuple[np.ndarray, np.ndarray]:
    """(term ids, weights) of a query against the current statistics; unseen terms dropped.
    stats(term_ids) -> (their document frequencies, live document count)."""
    c, _ = counts(text)
    ids = np.array(sorted(c), dtype=np.int32)
    return weigh_query(ids, np.array([c[i] for i in ids], dtype=np.float64), stats)


def weigh_query(ids: np.ndarray, tf: np.ndarray, stats) -> tuple[np.ndarray, np.ndarray]:
    """``idf(t) * tf(t)`` of sorted distinct term ids with their query counts (a text's, or a
    client's raw query vector), against the current statistics; unseen terms dropped."""
    if len(ids) == 0:
        return np.empty(0, np.int32), np.empty(0, np.float32)
    ids = np.asarray(ids, dtype=np.int32)
    d, n_docs = stats(ids)
    seen = d > 0
    ids, d, tf = ids[seen], d[seen], np.asarray(tf, dtype=np.float64)[seen]
    w = idf(d.astype(np.float64), n_docs) * tf
    return ids, w.astype(np.float32)
