"""Inference-free learned sparse retrieval (Geng et al. 2024; OpenSearch's doc-only models).

Documents go through a SPLADE-style model; a query is only tokenised and each distinct token
weighted by its IDF, so query time needs a tokenizer and a table, no neural network.
The IDF table is computed from the indexed corpus (``IdfTable.fit``) or loaded from a file
(JSON ``{token: idf}``, the format OpenSearch ships as ``idf.json``, or our ``.npy``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from encoders.ascii_wordpiece import AsciiWordPiece
from encoders.base import check_texts, csr_from_rows, decode_row, progress
from encoders.batching import token_ids
from encoders.models import DEFAULT_SPLADE, load_tokenizer


class IdfTable:
    """idf per vocabulary id: ``log(1 + (N - df + 0.5) / (df + 0.5))`` (Lucene's, never negative)."""

    def __init__(self, idf: np.ndarray):
        self.idf = np.asarray(idf, dtype=np.float32)

    @classmethod
    def fit(cls, tokenizer: Any, corpus: list[str], progress_bar: bool | None = None,
            batch_size: int = 256) -> IdfTable:
        corpus = check_texts(corpus)
        df = np.zeros(len(tokenizer), dtype=np.int64)
        starts = range(0, len(corpus), batch_size)
        for lo in progress(starts, len(starts), len(corpus), progress_bar, "IDF"):
            ids = tokenizer(corpus[lo:lo + batch_size], add_special_tokens=False)["input_ids"]
            for row in ids:
                df[np.unique(np.asarray(row, dtype=np.int64))] += 1
        n = len(corpus)
        return cls(np.log1p((n - df + 0.5) / (df + 0.5)))

    def save(self, path: str | Path) -> None:
        np.save(Path(path), self.idf)

    @classmethod
    def load(cls, path: str | Path, tokenizer: Any = None) -> IdfTable:
        path = Path(path)
        if path.suffix == ".json":  # {token: idf}; tokens outside the vocabulary are ignored
            if tokenizer is None:
                raise ValueError("a JSON IDF file maps tokens, so loading it needs the tokenizer")
            table = json.loads(path.read_text())
            idf = np.zeros(len(tokenizer), dtype=np.float32)
            ids = tokenizer.convert_tokens_to_ids(list(table))
            unk = tokenizer.unk_token_id
            for i, w in zip(ids, table.values()):
                if i is not None and i != unk:
                    idf[i] = w
            return cls(idf)
        return cls(np.load(path))


class InferenceFreeEncoder:
    """Documents: a SPLADE encoder; queries: distinct tokens weighted by IDF.

    ``doc_model=None`` builds a query-only encoder (no model weights loaded at all).
    ``live_idf`` (set by the registry for a model without an IDF file): the query weights come
    from the document frequencies of the collection searched (``query_terms`` + its term
    statistics), not from a table.
    """

    live_idf = False

    def __init__(self, tokenizer: str = DEFAULT_SPLADE, *, idf: IdfTable | str | Path | None = None,
                 doc_model: str | None = DEFAULT_SPLADE, progress: bool | None = None, **splade_kwargs: Any):
        self.tokenizer = load_tokenizer(tokenizer)
        self.dim = len(self.tokenizer)
        self._ascii = AsciiWordPiece.of(self.tokenizer)  # a lone ASCII query's fast path, or None
        self.progress = progress
        self.idf = IdfTable.load(idf, self.tokenizer) if isinstance(idf, (str, Path)) else idf
        self.doc_encoder = None
        if doc_model is not None:
            from encoders.splade import SpladeEncoder
            self.doc_encoder = SpladeEncoder(doc_model, progress=progress, **splade_kwargs)
            if self.doc_encoder.dim != self.dim:
                raise ValueError(f"document model has {self.doc_encoder.dim} terms, tokenizer {self.dim}")
        self.name = f"inference-free:{doc_model}"

    def fit(self, corpus: list[str]) -> InferenceFreeEncoder:
        """IDF from the corpus that will be indexed."""
        self.idf = IdfTable.fit(self.tokenizer, corpus, self.progress)
        return self

    def encode_documents(self, texts: list[str], batch_size: int = 32) -> sp.csr_matrix:
        if self.doc_encoder is None:
            raise RuntimeError("this encoder was built with doc_model=None (queries only)")
        return self.doc_encoder.encode_documents(texts, batch_size)

    def query_terms(self, texts: list[str]) -> list[np.ndarray]:
        """The distinct token ids (sorted int32) of each query: all that query time computes
        besides looking up their IDF (here from the table; a service can take it from the
        collection's live document frequencies instead)."""
        texts = check_texts(texts)
        fast = getattr(self.tokenizer, "_tokenizer", None)  # the Rust tokenizer of a fast one
        if len(texts) == 1 and self._ascii is not None:
            row = self._ascii.ids(texts[0])  # a lone query in plain Python (None: not ASCII)
            if row is not None:
                return [np.array(sorted(set(row[:self.tokenizer.model_max_length])), dtype=np.int32)]
        if fast is not None:
            # straight to the Rust tokenizer: the same ids, without transformers' per-call
            # overhead (a few hundred microseconds, most of a model-free query's time)
            limit = self.tokenizer.model_max_length
            # (the padding a tokenizer.json may configure is masked out)
            # one text (a query): encode(), which skips encode_batch's thread pool
            encoded = ([fast.encode(texts[0], add_special_tokens=False)] if len(texts) == 1
                       else fast.encode_batch(texts, add_special_tokens=False))
            rows = [(e.ids if 0 not in e.attention_mask  # unpadded, as a lone query is
                     else [i for i, m in zip(e.ids, e.attention_mask) if m])[:limit] for e in encoded]
        else:
            rows = token_ids(self.tokenizer, texts, add_special_tokens=False, truncation=True,
                             max_length=self.tokenizer.model_max_length)
        # sorted(set()) beats np.unique on a query's ~20 ids (3 vs 4 µs); same sorted distinct ids
        return [np.array(sorted(set(row)), dtype=np.int32) for row in rows]

    def query_weights(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(int32 term ids, float32 IDF weights) per query from the IDF table, terms of IDF 0
        left out: the vectors ``encode_queries`` returns, without building a matrix."""
        if self.idf is None:
            raise RuntimeError("no IDF table: call fit(corpus) or pass idf=")
        out = []
        for uniq in self.query_terms(texts):
            w = self.idf.idf[uniq].astype(np.float32)
            out.append((uniq[w > 0], w[w > 0]))
        return out

    def encode_queries(self, texts: list[str]) -> sp.csr_matrix:
        return csr_from_rows(self.query_weights(check_texts(texts)), self.dim)

    def decode(self, row: Any) -> list[tuple[str, float]]:
        return decode_row(row, self.tokenizer.convert_ids_to_tokens)
