"""Stored token vectors: each document's per-token embeddings (ColBERT style), kept for MaxSim
reranking so that a reranked search reads them instead of encoding the candidates' text.

A collection stores them when created with ``store_token_vectors`` ("fp16" or "int8") and
``token_dim`` (collection_config.py). The indexer stores whatever unit vectors it is given;
which encoder (and projection) made them is the caller's business (service/store.py).

Stored form (``TokenRows``): ``ptr`` int64 [n_docs + 1] into ``codes`` [n_tokens, dim] and
``scales`` float32 [n_tokens]:

    fp16   codes float16, scales all 1 (2 bytes a dimension)
    int8   codes int8 with one symmetric scale per token (code = round(x / scale),
           scale = max|x| / 127, as the dense field's codes: dense_index.quantize); 1 byte a
           dimension + 4 a token. Per-token rather than per-document scales: a document's
           tokens differ in peak value, and 4 bytes a token is ~3% at 128 dimensions.

The same form travels everywhere: it is quantised once, when an upsert is checked, and the
WAL record, the write buffer, the segment files (``tokens/``, memory-mapped) and a merge carry
the codes as they are, so replay and merges never quantise twice. A document without tokens
(no text) has an empty slice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dense_index import quantize
from .errors import InvalidInputError

TOKEN_DTYPES = ("fp16", "int8")
_CODE_DTYPE = {"fp16": np.float16, "int8": np.int8}


def code_dtype(dtype: str) -> type:
    """The numpy type of a stored dtype's codes (readers of codes sent as raw bytes)."""
    if dtype not in _CODE_DTYPE:
        raise InvalidInputError(f"token vector dtype must be one of {TOKEN_DTYPES}, got {dtype!r}")
    return _CODE_DTYPE[dtype]


@dataclass
class TokenRows:
    """Token vectors of consecutive documents in stored form (see the module doc)."""
    dtype: str
    ptr: np.ndarray     # int64 [n + 1], ptr[0] == 0
    codes: np.ndarray   # [ptr[-1], dim], float16 or int8
    scales: np.ndarray  # float32 [ptr[-1]]

    @property
    def n_docs(self) -> int:
        return len(self.ptr) - 1

    @property
    def dim(self) -> int:
        return self.codes.shape[1]

    def doc(self, i: int) -> np.ndarray:
        """Document i's token vectors as float32 [n_tokens, dim]."""
        a, b = int(self.ptr[i]), int(self.ptr[i + 1])
        return dequantize(self.codes[a:b], self.scales[a:b])

    def take(self, rows) -> "TokenRows":
        """The rows' token vectors, in that order (codes copied, not re-quantised)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.ptr[rows], self.ptr[rows + 1]
        lengths = ends - starts
        ptr = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(lengths, out=ptr[1:])
        idx = np.repeat(starts - ptr[:-1], lengths) + np.arange(ptr[-1], dtype=np.int64) if len(rows) \
            else np.zeros(0, np.int64)
        return TokenRows(self.dtype, ptr, np.asarray(self.codes[idx]), np.asarray(self.scales[idx]))

    def nbytes(self) -> int:
        return int(self.ptr.nbytes + self.codes.nbytes + self.scales.nbytes)

    @staticmethod
    def empty(dtype: str, dim: int, n_docs: int = 0) -> "TokenRows":
        return TokenRows(dtype, np.zeros(n_docs + 1, np.int64), np.zeros((0, dim), _CODE_DTYPE[dtype]),
                         np.zeros(0, np.float32))

    @staticmethod
    def concat(parts: list["TokenRows"], dtype: str, dim: int) -> "TokenRows":
        if not parts:
            return TokenRows.empty(dtype, dim)
        lengths = np.concatenate([np.diff(p.ptr) for p in parts])
        ptr = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=ptr[1:])
        return TokenRows(dtype, ptr, np.concatenate([np.asarray(p.codes) for p in parts]),
                         np.concatenate([np.asarray(p.scales) for p in parts]))


def dequantize(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    out = np.asarray(codes, dtype=np.float32)
    if codes.dtype == np.int8:
        out *= np.asarray(scales, np.float32)[:, None]
    return out


def quantize_tokens(docs: list, dtype: str, dim: int) -> TokenRows:
    """Store float token vectors (one [n_tokens, dim] array per document; None or an empty
    array for a document without tokens) as ``dtype``."""
    if dtype not in TOKEN_DTYPES:
        raise InvalidInputError(f"token vector dtype must be one of {TOKEN_DTYPES}, got {dtype!r}")
    mats = []
    for i, d in enumerate(docs):
        a = np.zeros((0, dim), np.float32) if d is None else np.asarray(d)
        if a.size == 0:
            a = np.zeros((0, dim), np.float32)
        if a.ndim != 2 or a.shape[1] != dim or a.dtype.kind not in "fiu":
            raise InvalidInputError(f"tokens[{i}] must be a numeric array of shape (n_tokens, {dim}), "
                                    f"got {a.dtype} {a.shape}")
        a = a.astype(np.float32, copy=False)
        if not np.all(np.isfinite(a)):
            raise InvalidInputError(f"tokens[{i}] contains NaN or infinity")
        mats.append(a)
    ptr = np.zeros(len(mats) + 1, np.int64)
    np.cumsum([len(m) for m in mats], out=ptr[1:])
    flat = np.concatenate(mats) if mats else np.zeros((0, dim), np.float32)
    if dtype == "fp16":
        if flat.size and np.abs(flat).max() > 65504:
            raise InvalidInputError("tokens: values beyond float16's range (unit vectors expected)")
        return TokenRows(dtype, ptr, flat.astype(np.float16), np.ones(len(flat), np.float32))
    codes, scales = quantize(flat) if len(flat) else (np.zeros((0, dim), np.int8), np.zeros(0, np.float32))
    return TokenRows(dtype, ptr, codes, scales)


def check_tokens(config, tokens, n: int) -> TokenRows | None:
    """The tokens argument of an upsert in stored form: a list of n float arrays (None entries
    allowed) or TokenRows already in this collection's form; None when none are given."""
    dtype, dim = config.store_token_vectors, config.token_dim
    if tokens is None:
        return None if dtype is None else TokenRows.empty(dtype, dim, n)
    if dtype is None:
        raise InvalidInputError("tokens: this collection stores no token vectors (create it with "
                                "store_token_vectors)")
    if isinstance(tokens, TokenRows):
        if tokens.dtype != dtype or tokens.dim != dim or tokens.n_docs != n:
            raise InvalidInputError(f"tokens: {tokens.n_docs} documents of {tokens.dtype} x "
                                    f"{tokens.dim}, expected {n} of {dtype} x {dim}")
        return tokens
    if not isinstance(tokens, (list, tuple)) or len(tokens) != n:
        raise InvalidInputError(f"tokens must be a list of {n} arrays (one per id)")
    return quantize_tokens(list(tokens), dtype, dim)


class GrowableTokens:
    """The write buffer's token vectors: appended only (a snapshot's rows never move)."""

    def __init__(self, dtype: str, dim: int):
        self.dtype, self.dim = dtype, dim
        self._ptr = np.zeros(16, np.int64)
        self._codes = np.zeros((16, dim), _CODE_DTYPE[dtype])
        self._scales = np.zeros(16, np.float32)
        self.n_docs = 0
        self.n_tokens = 0

    def append(self, rows: TokenRows) -> None:
        t, n = self.n_tokens, self.n_docs
        need_t, need_n = t + len(rows.codes), n + rows.n_docs
        if need_t > len(self._codes):
            cap = max(need_t, 2 * len(self._codes))
            codes, scales = np.zeros((cap, self.dim), self._codes.dtype), np.zeros(cap, np.float32)
            codes[:t], scales[:t] = self._codes[:t], self._scales[:t]
            self._codes, self._scales = codes, scales
        if need_n + 1 > len(self._ptr):
            ptr = np.zeros(max(need_n + 1, 2 * len(self._ptr)), np.int64)
            ptr[:n + 1] = self._ptr[:n + 1]
            self._ptr = ptr
        self._codes[t:need_t] = rows.codes
        self._scales[t:need_t] = rows.scales
        self._ptr[n + 1:need_n + 1] = rows.ptr[1:] + t
        self.n_tokens, self.n_docs = need_t, need_n

    def view(self) -> TokenRows:
        n, t = self.n_docs, self.n_tokens
        return TokenRows(self.dtype, self._ptr[:n + 1], self._codes[:t], self._scales[:t])
