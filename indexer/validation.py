"""Input checks shared by every index: bad input raises ValueError naming the problem."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .errors import InvalidInputError


def as_document_csr(csr, *, allow_negative: bool = False, dim: int | None = None,
                    copy: bool = True) -> sp.csr_matrix:
    """Return a canonical float32 CSR (sorted, de-duplicated, explicit zeros dropped).

    Raises ValueError on anything that is not a 2-D sparse matrix of finite numbers.
    ``copy=False``: a matrix that is already canonical float32 CSR comes back as it is (for a
    caller that only reads it before returning, such as an index build, where a copy of a
    million documents' arrays would be a gigabyte of peak memory); it is never modified.
    """
    if not sp.issparse(csr):
        raise InvalidInputError(f"documents must be a scipy.sparse matrix (CSR), got {type(csr).__name__}")
    if csr.ndim != 2:
        raise InvalidInputError(f"documents must be 2-D, got shape {csr.shape}")
    if csr.dtype.kind not in "fiu":
        raise InvalidInputError(f"document values must be numeric, got dtype {csr.dtype}")
    n_docs, n_cols = csr.shape
    if n_docs == 0:
        raise InvalidInputError("cannot build an index over an empty collection (0 documents)")
    if n_cols == 0:
        raise InvalidInputError("documents have dimension 0")
    if dim is not None and n_cols > dim:
        raise InvalidInputError(f"documents have {n_cols} columns but the index dimension is {dim}")
    reuse = (not copy and sp.isspmatrix_csr(csr) and csr.dtype == np.float32 and csr.has_canonical_format
             and not (csr.data == 0).any())
    out = csr if reuse else sp.csr_matrix(csr, dtype=np.float32, copy=True)
    if not np.all(np.isfinite(out.data)):
        raise InvalidInputError("document values contain NaN or infinity")
    if not allow_negative and out.nnz and out.data.min() < 0:
        raise InvalidInputError("document values must be non-negative for this index "
                         "(summaries are per-term maxima); use ExactIndex for signed vectors")
    if not reuse:  # (in place: only ever on the copy)
        out.sum_duplicates()
        out.eliminate_zeros()
        out.sort_indices()
    if out.nnz >= 2**31:
        raise InvalidInputError("too many non-zeros for one index (>= 2^31); split the collection into segments")
    return out


def as_query(indices, values, dim: int, *, allow_negative: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Canonical query: int32 term ids sorted ascending with duplicates summed, float32 values.

    On the hot path (already int32/float32, sorted, unique) this costs a few numpy calls.
    """
    idx = indices if isinstance(indices, np.ndarray) else np.asarray(indices)
    val = values if isinstance(values, np.ndarray) else np.asarray(values)
    if idx.ndim != 1 or val.ndim != 1:
        raise InvalidInputError(f"query indices and values must be 1-D, got shapes {idx.shape} and {val.shape}")
    n = idx.shape[0]
    if n != val.shape[0]:
        raise InvalidInputError(f"query has {n} indices but {val.shape[0]} values")
    if n == 0:
        raise InvalidInputError("empty query: it has no terms")
    if idx.dtype != np.int32:
        if idx.dtype.kind not in "iu":
            raise InvalidInputError(f"query indices must be integers, got dtype {idx.dtype}")
        if idx.min() < 0 or idx.max() >= dim:
            raise InvalidInputError(f"query term ids must be in [0, {dim}), got range [{idx.min()}, {idx.max()}]")
        idx = idx.astype(np.int32)
    if val.dtype != np.float32:
        if val.dtype.kind not in "fiu":
            raise InvalidInputError(f"query values must be numeric, got dtype {val.dtype}")
        val = val.astype(np.float32)
    if not np.isfinite(val).all():
        raise InvalidInputError("query values contain NaN or infinity")
    if not allow_negative and (val < 0).any():
        raise InvalidInputError("query values must be non-negative")
    if n > 1 and not (idx[1:] > idx[:-1]).all():
        order = np.argsort(idx, kind="stable")
        idx, val = idx[order], val[order]
        if (idx[1:] == idx[:-1]).any():
            uniq, start = np.unique(idx, return_index=True)
            val = np.add.reduceat(val, start).astype(np.float32)
            idx = uniq.astype(np.int32)
    if idx[0] < 0 or idx[-1] >= dim:
        raise InvalidInputError(f"query term ids must be in [0, {dim}), got range [{idx[0]}, {idx[-1]}]")
    return np.ascontiguousarray(idx), np.ascontiguousarray(val)


def as_query_csr(queries, dim: int) -> sp.csr_matrix:
    """Validate a batch of queries given as a CSR matrix (one row per query)."""
    if not sp.issparse(queries):
        raise InvalidInputError(f"queries must be a scipy.sparse matrix (CSR), got {type(queries).__name__}")
    if queries.ndim != 2 or queries.shape[0] == 0:
        raise InvalidInputError(f"queries must be a non-empty 2-D matrix, got shape {queries.shape}")
    if queries.shape[1] > dim:
        raise InvalidInputError(f"queries have {queries.shape[1]} columns but the index dimension is {dim}")
    if queries.dtype.kind not in "fiu":
        raise InvalidInputError(f"query values must be numeric, got dtype {queries.dtype}")
    q = sp.csr_matrix(queries, dtype=np.float32, copy=True)
    if not np.all(np.isfinite(q.data)):
        raise InvalidInputError("query values contain NaN or infinity")
    q.sum_duplicates()
    q.eliminate_zeros()
    q.sort_indices()
    empty = np.flatnonzero(np.diff(q.indptr) == 0)
    if empty.size:
        raise InvalidInputError(f"empty query at row {int(empty[0])}: it has no non-zero terms")
    if q.shape[1] < dim:
        q = sp.csr_matrix((q.data, q.indices, q.indptr), shape=(q.shape[0], dim))
    return q


def check_k(k) -> int:
    if type(k) is int and k > 0:
        return k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidInputError(f"k must be an integer, got {k!r}")
    if k <= 0:
        raise InvalidInputError(f"k must be positive, got {k}")
    return int(k)


def check_knn_expand(knn_expand) -> int:
    """The κ-NN neighbours scored per top hit: a non-negative integer."""
    if isinstance(knn_expand, bool) or not isinstance(knn_expand, (int, np.integer)) or knn_expand < 0:
        raise InvalidInputError(f"knn_expand must be a non-negative integer, got {knn_expand!r}")
    return int(knn_expand)


def check_search_params(query_cut, heap_factor) -> tuple[int, float]:
    if isinstance(query_cut, bool) or not isinstance(query_cut, (int, np.integer)) or query_cut <= 0:
        raise InvalidInputError(f"query_cut must be a positive integer, got {query_cut!r}")
    try:
        hf = float(heap_factor)
    except (TypeError, ValueError):
        raise InvalidInputError(f"heap_factor must be a number in (0, 1], got {heap_factor!r}") from None
    if not 0 < hf <= 1:  # also false for NaN
        raise InvalidInputError(f"heap_factor must be in (0, 1], got {heap_factor!r}")
    return int(query_cut), hf


def native_ready(indices, values) -> bool:
    """True when the arrays can go to the C++ kernel as they are (it validates the rest)."""
    return (type(indices) is np.ndarray and type(values) is np.ndarray
            and indices.dtype == np.int32 and values.dtype == np.float32
            and indices.ndim == 1 and values.ndim == 1
            and indices.flags.c_contiguous and values.flags.c_contiguous)
