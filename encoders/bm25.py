"""BM25 as sparse vectors: the dot product of a query row and a document row is the BM25 score.

Document weight of term t: ``idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl))`` with the
Lucene idf ``log(1 + (N - df + 0.5) / (df + 0.5))``; query weight: the term's count in the
query (or 1). This is bm25s's "lucene" method, so BM25 runs through the same index and kernels
as learned sparse vectors. Tokenisation matches bm25s's default: lowercase, the regex
``(?u)\\b\\w\\w+\\b``, Lucene's English stopwords, no stemming (bm25s stems only with the
PyStemmer extra).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from encoders.base import check_texts, csr_from_rows, decode_row, progress

# Lucene's English stopword set, the list bm25s uses for stopwords="en".
STOPWORDS_EN = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
    "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
    "these", "they", "this", "to", "was", "will", "with",
))
TOKEN_PATTERN = r"(?u)\b\w\w+\b"


class Tokenizer:
    """bm25s's default splitter: lowercase, regex word split, stopword removal."""

    def __init__(self, lower: bool = True, pattern: str = TOKEN_PATTERN,
                 stopwords: Iterable[str] = STOPWORDS_EN):
        self.lower = lower
        self.pattern = pattern
        self._split = re.compile(pattern).findall
        self.stopwords = frozenset(stopwords)

    def __call__(self, text: str) -> list[str]:
        if self.lower:
            text = text.lower()
        return [t for t in self._split(text) if t not in self.stopwords]


class BM25Encoder:
    """BM25 over a fitted corpus. ``fit`` first; ``dim`` is the fitted vocabulary size."""

    def __init__(self, k1: float = 1.5, b: float = 0.75, query_weights: str = "counts",
                 tokenizer: Tokenizer | None = None, progress: bool | None = None):
        if query_weights not in ("counts", "ones"):
            raise ValueError(f"query_weights must be 'counts' or 'ones', got {query_weights!r}")
        self.k1, self.b, self.query_weights = k1, b, query_weights
        self.tokenizer = tokenizer or Tokenizer()
        self.progress = progress
        self.vocab: dict[str, int] = {}
        self.terms: list[str] = []
        self.idf = np.empty(0, dtype=np.float64)
        self.n_docs = 0
        self.avgdl = 0.0

    @property
    def dim(self) -> int:
        return len(self.terms)

    def fit(self, corpus: list[str]) -> BM25Encoder:
        """Vocabulary, document frequencies and average length from ``corpus``."""
        corpus = check_texts(corpus)
        df: Counter[str] = Counter()
        total_len = 0
        for text in progress(corpus, len(corpus), len(corpus), self.progress, "BM25 fit", "doc"):
            tokens = self.tokenizer(text)
            total_len += len(tokens)
            df.update(set(tokens))
        self.terms = sorted(df)
        self.vocab = {t: i for i, t in enumerate(self.terms)}
        dfs = np.array([df[t] for t in self.terms], dtype=np.float64)
        self.n_docs = len(corpus)
        self.idf = np.log(1.0 + (self.n_docs - dfs + 0.5) / (dfs + 0.5))
        self.avgdl = total_len / self.n_docs
        return self

    def _check_fitted(self) -> None:
        if not self.n_docs:
            raise RuntimeError("BM25Encoder is not fitted: call fit(corpus) or load(path) first")

    def _counts(self, text: str) -> tuple[np.ndarray, np.ndarray, int]:
        tokens = self.tokenizer(text)
        counts = Counter(self.vocab[t] for t in tokens if t in self.vocab)
        ids = np.fromiter(counts.keys(), dtype=np.int32, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        return ids, tf, len(tokens)

    def encode_documents(self, texts: list[str], batch_size: int = 32) -> sp.csr_matrix:
        # batch_size is part of the protocol; BM25 has no batches to size.
        texts = check_texts(texts)
        self._check_fitted()
        rows = []
        for text in progress(texts, len(texts), len(texts), self.progress, "BM25 documents", "doc"):
            ids, tf, length = self._counts(text)
            norm = self.k1 * (1.0 - self.b + self.b * length / self.avgdl)
            rows.append((ids, (self.idf[ids] * tf / (tf + norm)).astype(np.float32)))
        return csr_from_rows(rows, self.dim)

    def encode_queries(self, texts: list[str]) -> sp.csr_matrix:
        texts = check_texts(texts)
        self._check_fitted()
        rows = []
        for text in texts:
            ids, tf, _ = self._counts(text)
            weights = tf if self.query_weights == "counts" else np.ones_like(tf)
            rows.append((ids, weights.astype(np.float32)))
        return csr_from_rows(rows, self.dim)

    def decode(self, row: Any) -> list[tuple[str, float]]:
        return decode_row(row, lambda ids: [self.terms[i] for i in ids])

    def save(self, path: str | Path) -> None:
        """Fitted statistics as JSON (vocabulary order = term ids)."""
        self._check_fitted()
        state = {"k1": self.k1, "b": self.b, "query_weights": self.query_weights,
                 "lower": self.tokenizer.lower, "pattern": self.tokenizer.pattern,
                 "stopwords": sorted(self.tokenizer.stopwords), "n_docs": self.n_docs,
                 "avgdl": self.avgdl, "terms": self.terms, "idf": self.idf.tolist()}
        Path(path).write_text(json.dumps(state))

    @classmethod
    def load(cls, path: str | Path) -> BM25Encoder:
        s = json.loads(Path(path).read_text())
        enc = cls(s["k1"], s["b"], s["query_weights"],
                  Tokenizer(s["lower"], s["pattern"], s["stopwords"]))
        enc.terms = s["terms"]
        enc.vocab = {t: i for i, t in enumerate(enc.terms)}
        enc.idf = np.asarray(s["idf"], dtype=np.float64)
        enc.n_docs, enc.avgdl = s["n_docs"], s["avgdl"]
        return enc
