"""What a write must look like before it reaches the WAL: one check per argument of an upsert
or delete, each raising InvalidInputError that names the argument, and nothing stored when one
fails. Pure functions of the collection's configuration: the write path (collection.py) calls
them before it takes its lock."""
from __future__ import annotations

import json

import numpy as np
import scipy.sparse as sp

from .collection_config import CollectionConfig, check_document_id
from .errors import InvalidInputError
from .validation import as_document_csr


def check_upsert(config: CollectionConfig, ids, vectors, texts, metadata, lengths) -> tuple:
    """(ids, {field: vectors}, texts, metadata, lengths int64) of an upsert, checked and in the
    form the WAL stores: metadata as a JSON round trip (what a reader gets back after a flush or
    a reopen), lengths defaulting to the non-zero terms of the first sparse field."""
    ids = check_ids(ids, allow_empty=False, new=True)
    n = len(ids)
    vecs = check_vectors(config, vectors, n)
    texts = _check_list(texts, n, "texts", lambda t: t is None or isinstance(t, str), "a string or None")
    metadata = _check_list(metadata, n, "metadata", lambda m: m is None or isinstance(m, dict),
                           "a dict or None")
    if metadata is not None:
        try:
            metadata = json.loads(json.dumps(metadata, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"metadata must be JSON-serialisable (no NaN/infinity): {exc}") from None
    if lengths is None:
        sparse = config.sparse_fields
        lengths = np.diff(vecs[sparse[0]].indptr) if sparse else np.zeros(n, np.int64)
    lengths = np.asarray(lengths)
    if lengths.shape != (n,) or lengths.dtype.kind not in "iu" or (n and lengths.min() < 0):
        raise InvalidInputError(f"lengths must be {n} non-negative integers")
    return ids, vecs, texts, metadata, lengths.astype(np.int64)


def check_ids(ids, allow_empty: bool, new: bool = False) -> list[str]:
    """A list of distinct ids; new ids (upserts) must also be addressable (check_document_id)."""
    if isinstance(ids, str) or not isinstance(ids, (list, tuple)):
        raise InvalidInputError(f"ids must be a list of strings, got {type(ids).__name__}")
    if not ids and not allow_empty:
        raise InvalidInputError("no documents given (empty ids)")
    seen = set()
    for i in ids:
        if new:
            check_document_id(i)
        elif not isinstance(i, str) or not i:
            raise InvalidInputError(f"document id {i!r} must be a non-empty string")
        if i in seen:
            raise InvalidInputError(f"document id {i!r} appears twice in one call")
        seen.add(i)
    return list(ids)


def check_vectors(config: CollectionConfig, vectors, n: int) -> dict:
    """{field: CSR int32 (sparse) or float32 [n, dim] (dense)} for every field, n rows each; a
    bare matrix is accepted when the collection has one field."""
    fields = config.fields
    if not isinstance(vectors, dict):
        if len(fields) != 1:
            raise InvalidInputError(f"this collection has fields {sorted(fields)}: pass vectors as "
                                    "{field: matrix}")
        vectors = {next(iter(fields)): vectors}
    missing, unknown = sorted(set(fields) - set(vectors)), sorted(set(vectors) - set(fields))
    if missing or unknown:
        raise InvalidInputError(f"vectors: missing field(s) {missing}, unknown field(s) {unknown}; "
                                f"this collection has {sorted(fields)}")
    out = {}
    for name, spec in fields.items():
        m = vectors[name]
        if spec.kind == "sparse":
            try:
                csr = as_document_csr(m, allow_negative=spec.allow_negative, dim=spec.dim)
            except ValueError as exc:
                raise InvalidInputError(f"vectors[{name!r}]: {exc}") from None
            if csr.shape[0] != n:
                raise InvalidInputError(f"vectors[{name!r}] has {csr.shape[0]} rows for {n} ids")
            out[name] = sp.csr_matrix((csr.data, csr.indices.astype(np.int32), csr.indptr),
                                      shape=(n, spec.dim))
        else:
            a = np.asarray(m.toarray() if sp.issparse(m) else m)
            if a.shape != (n, spec.dim) or a.dtype.kind not in "fiu":
                raise InvalidInputError(f"vectors[{name!r}] must be a numeric array of shape ({n}, "
                                        f"{spec.dim}), got {a.dtype} {a.shape}")
            a = a.astype(np.float32)
            if not np.all(np.isfinite(a)):
                raise InvalidInputError(f"vectors[{name!r}] contains NaN or infinity")
            out[name] = a
    return out


def _check_list(values, n: int, what: str, ok, expected: str):
    if values is None:
        return None
    if not isinstance(values, (list, tuple)) or len(values) != n:
        raise InvalidInputError(f"{what} must be a list of {n} items (one per id)")
    for i, v in enumerate(values):
        if not ok(v):
            raise InvalidInputError(f"{what}[{i}] must be {expected}, got {type(v).__name__}")
    return list(values)
