"""Vectors a client computed elsewhere (a GPU farm, another service), checked against the
collection and put into the form its encoders produce.

One form per field, for documents (upserts) and queries (searches) alike:

- ``sparse`` (SPLADE): ``{"indices": [...], "values": [...]}`` with token ids of the collection's
  SPLADE model, or ``{"token": weight}`` with the tokens of its tokenizer as ``/encode`` names them
  (``"wind"``, ``"##ing"``; an unknown token is a 400). Weights are used as given: the document's
  stored weights, or the query's weights (the index keeps the heaviest query terms as for text).
- ``bm25`` (hashed BM25, service/lexical.py): term *frequencies*, not BM25 weights, because the
  parameters of BM25 live in the collection: ``{"word": count}`` with the words bm25s's tokenizer
  yields (lower case, stop words dropped, no stemming: ``/encode`` with ``"encoder": "bm25",
  "kind": "queries"`` returns exactly this), hashed as for text (CRC32 mod 2^18; words that
  collide add up, as in a text), or ``{"indices", "values"}`` over the hashed ids. A document's
  frequencies are saturated with the collection's average length, its length being their sum
  (rounded); a query's are weighted by the live IDF, terms no document has are dropped (what
  Qdrant's ``"modifier": "idf"`` does). So a text's counts give exactly the text's vectors.
- ``dense``: exactly the model's dimension of numbers, stored and searched as given (float32):
  scores are dot products, and the text path's MiniLM vectors have unit length, so a client
  mixing its vectors with text-encoded ones should send unit vectors too.

Every problem is a BadRequest (400) naming the field: ``documents[3].vectors.dense: expected 384
numbers, got 12``. The schema (service/schemas.py) has already bounded every number (finite,
|x| <= 1e6, sparse weights >= 0) and typed every index.
"""
from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import lexical
from .errors import BadRequest

_F32_MAX = float(np.finfo(np.float32).max)
_VOCABS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> {token: id}


def _vocab(tokenizer) -> dict[str, int]:
    try:
        return _VOCABS[tokenizer]
    except (KeyError, TypeError):
        vocab = dict(tokenizer.get_vocab())
        try:
            _VOCABS[tokenizer] = vocab
        except TypeError:  # not weakly referenceable: look it up each time
            pass
        return vocab


def _as_lists(raw) -> tuple[list, list] | None:
    """(indices, values) of the parallel-lists form; None for a {term: weight} map."""
    if hasattr(raw, "indices") and hasattr(raw, "values") and not isinstance(raw, Mapping):
        return list(raw.indices), list(raw.values)
    if isinstance(raw, Mapping) and any(isinstance(raw.get(k), (list, tuple)) for k in ("indices", "values")):
        return list(raw.get("indices") or []), list(raw.get("values") or [])
    return None


def sparse_row(field: str, raw, dim: int, where: str, *, tokenizer=None,
               model: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct int32 term ids, float64 weights) of a client's sparse vector for
    ``field`` ("sparse": ids / tokens of ``tokenizer``; "bm25": hashed ids / words). Zero
    weights are dropped."""
    lists = _as_lists(raw)
    if lists is not None:
        indices, values = lists
        if len(indices) != len(values):
            raise BadRequest(f"{where}: {len(indices)} indices but {len(values)} values "
                             "(one value per index)")
        ids = np.array(indices, dtype=np.int64) if indices else np.empty(0, np.int64)
        vals = np.array(values, dtype=np.float64) if values else np.empty(0, np.float64)
        if ids.size and (ids.min() < 0 or ids.max() >= dim):
            bad = int(ids[(ids < 0) | (ids >= dim)][0])
            raise BadRequest(f"{where}.indices: {bad} is outside [0, {dim}), the {field} field's "
                             "term ids")
        order = np.argsort(ids, kind="stable")
        ids, vals = ids[order], vals[order]
        dup = np.flatnonzero(ids[1:] == ids[:-1])
        if dup.size:
            raise BadRequest(f"{where}.indices: {int(ids[dup[0]])} appears more than once")
    elif isinstance(raw, Mapping):
        terms = list(raw)
        vals = np.array([raw[t] for t in terms], dtype=np.float64) if terms else np.empty(0, np.float64)
        if field == "bm25":
            ids = np.array([lexical.term_id(t) for t in terms], dtype=np.int64)
        else:
            if tokenizer is None:
                raise BadRequest(f"{where}: terms need the field's tokenizer; give indices and values")
            vocab = _vocab(tokenizer)
            found = [vocab.get(t) for t in terms]
            missing = [t for t, i in zip(terms, found) if i is None or i >= dim]
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise BadRequest(f"{where}: term {missing[0]!r}{more} is not a token of model "
                                 f"{model!r}; give the tokenizer's tokens as /encode names them, "
                                 "or indices and values")
            ids = np.array(found, dtype=np.int64)
        if ids.size:  # hashed words may collide: they add up, as in a text
            ids, inverse = np.unique(ids, return_inverse=True)
            vals = np.bincount(inverse, weights=vals, minlength=len(ids))
    else:
        raise BadRequest(f"{where}: expected {{\"indices\": [...], \"values\": [...]}} or "
                         f"{{term: weight}}, got {type(raw).__name__}")
    if vals.size and (not np.all(np.isfinite(vals)) or vals.min() < 0 or vals.max() > _F32_MAX):
        raise BadRequest(f"{where}: weights must be finite non-negative float32 numbers")
    keep = vals != 0
    return ids[keep].astype(np.int32), vals[keep]


def dense_vector(raw, dim: int, where: str) -> np.ndarray:
    """A client's dense vector as float32 [dim], exactly ``dim`` finite numbers."""
    if isinstance(raw, (str, bytes, Mapping)) or not hasattr(raw, "__len__"):
        raise BadRequest(f"{where}: expected a list of {dim} numbers, got {type(raw).__name__}")
    if len(raw) != dim:
        raise BadRequest(f"{where}: expected {dim} numbers, got {len(raw)}")
    try:
        v = np.array(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadRequest(f"{where}: expected {dim} numbers") from None
    if v.shape != (dim,) or not np.all(np.isfinite(v)) or (v.size and np.abs(v).max() > _F32_MAX):
        raise BadRequest(f"{where}: expected {dim} finite float32 numbers")
    return v.astype(np.float32)


def field_problem(field: str, fields: list[str], collection: str, where: str) -> None:
    """400 when the collection has no such field."""
    if field not in fields:
        raise BadRequest(f"{where}: collection {collection!r} has no {field} field (its fields: "
                         f"{fields})")


def document_inputs(coll, enc, texts: list[str | None], vectors: list[dict | None] | None) -> dict:
    """Every document's given vector per field, checked, or None where the text is to be
    encoded: {field: [row or None per document]}; a document with neither text nor a vector
    for a field is a 400 naming the field. Sparse rows are (ids, weights); bm25 rows carry the
    term frequencies (lexical.saturate makes them weights); dense rows are float32 arrays."""
    fields = enc.fields
    names = coll.config.encoders
    out: dict[str, list] = {f: [None] * len(texts) for f in fields}
    for i, text in enumerate(texts):
        given: dict[str, Any] = (vectors[i] or {}) if vectors is not None else {}
        for f, raw in given.items():
            where = f"documents[{i}].vectors.{f}"
            field_problem(f, fields, coll.name, where)
            spec = coll.config.fields[f]
            if f == "dense":
                out[f][i] = dense_vector(raw, spec.dim, where)
            else:
                out[f][i] = sparse_row(f, raw, spec.dim, where, model=names.get(f),
                                       tokenizer=enc.sparse.tokenizer if f == "sparse" and _is_terms(raw) else None)
        if text is None:
            missing = [f for f in fields if f not in given]
            if missing:
                raise BadRequest(f"documents[{i}].vectors.{missing[0]}: the document has no text to "
                                 f"encode and no vector for the {missing[0]} field (give \"text\", or "
                                 f"vectors for every field: {fields})")
    return out


def _is_terms(raw) -> bool:
    return _as_lists(raw) is None and isinstance(raw, Mapping)


def query_vector(field: str, raw, coll, enc, where: str):
    """A client's query vector for one list, in the form the text path's encoder gives:
    (int32 ids, float32 weights) for sparse and bm25 (bm25: counts x live IDF), float32 [dim]
    for dense."""
    spec = coll.config.fields[field]
    if field == "dense":
        return dense_vector(raw, spec.dim, where)
    ids, vals = sparse_row(field, raw, spec.dim, where, model=coll.config.encoders.get(field),
                           tokenizer=enc.sparse.tokenizer if field == "sparse" and _is_terms(raw) else None)
    if field == "bm25":
        def stats(terms):
            s = coll.term_stats("bm25", terms)
            return s.df, s.n_docs
        return lexical.weigh_query(ids, vals, stats)
    return ids, vals.astype(np.float32)


def bm25_words(raw) -> dict[int, str]:
    """Hashed id -> word of a client's bm25 term map (to explain scores); {} for id lists."""
    if not _is_terms(raw):
        return {}
    return {lexical.term_id(t): t for t in raw}
