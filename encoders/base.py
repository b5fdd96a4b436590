"""The encoder protocols and the CSR helpers every sparse encoder shares.

CSR is the currency between packages: float32 values, int32 term ids, sorted indices within
each row, one row per text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

T = TypeVar("T")

# Below this many texts a progress bar is more noise than help.
PROGRESS_MIN_TEXTS = 512


@runtime_checkable
class SparseEncoder(Protocol):
    dim: int

    def encode_documents(self, texts: list[str], batch_size: int = 32) -> sp.csr_matrix: ...

    def encode_queries(self, texts: list[str]) -> sp.csr_matrix: ...

    def decode(self, row: Any) -> list[tuple[str, float]]: ...


@runtime_checkable
class DenseEncoder(Protocol):
    dim: int

    def encode_documents(self, texts: list[str], batch_size: int = 32) -> np.ndarray: ...

    def encode_queries(self, texts: list[str]) -> np.ndarray: ...


def check_texts(texts: Any) -> list[str]:
    """Validate an encoder input: a non-empty sequence of str (a bare str is an error)."""
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be a list of str, not a single string")
    if not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a list of str, got {type(texts).__name__}")
    if len(texts) == 0:
        raise ValueError("texts is empty: nothing to encode")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
    return list(texts)


def progress(it: Iterable[T], total: int, n_texts: int, enabled: bool | None, desc: str,
             unit: str = "batch") -> Iterable[T]:
    """tqdm over ``it``; ``enabled=None`` turns the bar on only for long inputs."""
    show = n_texts >= PROGRESS_MIN_TEXTS if enabled is None else enabled
    return tqdm(it, total=total, desc=desc, disable=not show, leave=False, unit=unit)


def validate_csr(m: Any, dim: int | None = None, n_rows: int | None = None) -> sp.csr_matrix:
    """Raise ValueError unless ``m`` is a CSR matrix in the project's canonical form."""
    if not sp.issparse(m) or m.format != "csr":
        raise ValueError(f"expected a scipy CSR matrix, got {type(m).__name__}")
    if m.dtype != np.float32:
        raise ValueError(f"CSR values must be float32, got {m.dtype}")
    if m.indices.dtype != np.int32 or m.indptr.dtype != np.int32:
        raise ValueError(f"CSR indices must be int32, got {m.indices.dtype}/{m.indptr.dtype}")
    if not m.has_sorted_indices:
        raise ValueError("CSR indices must be sorted within each row")
    if dim is not None and m.shape[1] != dim:
        raise ValueError(f"CSR has {m.shape[1]} columns, expected {dim}")
    if n_rows is not None and m.shape[0] != n_rows:
        raise ValueError(f"CSR has {m.shape[0]} rows, expected {n_rows}")
    if not np.all(np.isfinite(m.data)):
        raise ValueError("CSR values must be finite")
    return m


def csr_from_rows(rows: Sequence[tuple[np.ndarray, np.ndarray]], dim: int) -> sp.csr_matrix:
    """Assemble (term ids, weights) pairs, one per text, into canonical CSR."""
    lengths = np.fromiter((len(ix) for ix, _ in rows), dtype=np.int64, count=len(rows))
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    if indptr[-1] > np.iinfo(np.int32).max:
        raise ValueError("too many non-zeros for int32 indptr")
    indices = np.empty(indptr[-1], dtype=np.int32)
    data = np.empty(indptr[-1], dtype=np.float32)
    for i, (ix, val) in enumerate(rows):
        order = np.argsort(ix, kind="stable")
        indices[indptr[i]:indptr[i + 1]] = np.asarray(ix)[order]
        data[indptr[i]:indptr[i + 1]] = np.asarray(val)[order]
    m = sp.csr_matrix((data, indices, indptr.astype(np.int32)), shape=(len(rows), dim))
    m.has_sorted_indices = True
    return m


def csr_from_dense(dense: np.ndarray) -> sp.csr_matrix:
    """CSR of the non-zero entries of a [n, dim] array."""
    dense = np.asarray(dense, dtype=np.float32)
    if dense.ndim != 2:
        raise ValueError(f"expected a 2-d array, got shape {dense.shape}")
    rows, cols = np.nonzero(dense)
    m = sp.csr_matrix((dense[rows, cols], (rows, cols)), shape=dense.shape, dtype=np.float32)
    return canonical(m)


def canonical(m: sp.spmatrix) -> sp.csr_matrix:
    """Convert any sparse matrix to canonical CSR (float32, int32, sorted, no explicit zeros)."""
    m = sp.csr_matrix(m, dtype=np.float32)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.sort_indices()
    m.indices = m.indices.astype(np.int32, copy=False)
    m.indptr = m.indptr.astype(np.int32, copy=False)
    return m


def topk_indices(values: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest values; ties go to the smaller id so output is deterministic."""
    if k >= len(values):
        return np.arange(len(values))
    order = np.lexsort((ids, -values))
    return order[:k]


def prune_topk(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest weights of each row."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    m = canonical(m)
    rows = []
    for i in range(m.shape[0]):
        ix = m.indices[m.indptr[i]:m.indptr[i + 1]]
        val = m.data[m.indptr[i]:m.indptr[i + 1]]
        keep = topk_indices(val, ix, k)
        rows.append((ix[keep], val[keep]))
    return csr_from_rows(rows, m.shape[1])


def row_items(row: Any) -> tuple[np.ndarray, np.ndarray]:
    """(ids, weights) of a 1-row sparse matrix, a dense 1-d array, a dict, or a pair."""
    if sp.issparse(row):
        r = sp.csr_matrix(row)
        if r.shape[0] != 1:
            raise ValueError(f"decode takes one row, got {r.shape[0]}")
        return r.indices.astype(np.int64), r.data.astype(np.float32)
    if isinstance(row, dict):
        return np.fromiter(row.keys(), dtype=np.int64), np.fromiter(row.values(), dtype=np.float32)
    if isinstance(row, tuple) and len(row) == 2:
        return np.asarray(row[0], dtype=np.int64), np.asarray(row[1], dtype=np.float32)
    arr = np.asarray(row, dtype=np.float32)
    if arr.ndim != 1:
        raise ValueError(f"decode takes one row, got shape {arr.shape}")
    ids = np.flatnonzero(arr)
    return ids, arr[ids]


def decode_row(row: Any, id_to_term: Callable[[list[int]], list[str]]) -> list[tuple[str, float]]:
    """(term, weight) by weight descending, ties by term id."""
    ids, vals = row_items(row)
    keep = vals != 0
    ids, vals = ids[keep], vals[keep]
    order = np.lexsort((ids, -vals))
    terms = id_to_term([int(i) for i in ids[order]])
    return [(t, float(v)) for t, v in zip(terms, vals[order])]
