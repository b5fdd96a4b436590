"""The served models: the registry (encoders/registry.py) as the service shows and uses it.

``describe()`` is what ``GET /models`` and ``/readyz`` list: every registered model with its
kind, dimension and device. ``sparse_query`` is the one place that turns a query text into the
sparse list's query vector, whatever the collection's sparse kind: an inference-free model
without an IDF file weighs the query's tokens by the collection's own live IDF (its sparse
field's document frequencies, kept current as the hashed BM25 field's are), so such a query
runs no neural network at all.
"""
from __future__ import annotations

import numpy as np

from encoders import device as devices
from encoders import registry

from . import lexical
from .encoder_cache import EncoderCache

# the role a model of each kind fills in a collection
ROLE = {"splade": "sparse", "echo-splade": "sparse", "inference-free": "sparse", "csr": "sparse",
        "bm25": "bm25", "dense": "dense", "multivector": "multivector"}
QUERY_SIDE = {"inference-free": "tokenizer + IDF (no model)", "bm25": "tokenizer + live IDF (no model)"}

# The sparse field's Seismic build parameters and search defaults by the kind of its encoder,
# where they differ from indexer's (SeismicParams, indexer.query.DEFAULTS); a collection records
# them at creation (FieldSpec.params / .search), and index.seismic in the create request
# overrides the build parameters. Inference-free queries are the query's own ~19 tokens, all of
# similar IDF weight, against documents of ~116 expanded terms: the lists are long and a query
# visits most of them. Chosen on SciFact *train* queries against exact search, 100,000 passages
# (BENCHMARKS.md, "Inference-free operating point"): lists capped at 1.5 x 800 postings, a
# κ-NN graph of 10, 14 lists a query, heap_factor 1.0 keep recall@10 0.999 and recall@100 0.98
# at ~0.55x the Seismic time of the SPLADE defaults (16 lists, heap_factor 0.8, 3,500). The cap
# is per list: a collection far past 100k passages should raise n_postings with it.
FIELD_PROFILES = {
    # the graph by search: block-mates (the Seismic default) lost 0.001 of recall@10 here
    "inference-free": {"params": {"n_postings": 800, "knn": 10, "knn_source": "search"},
                       "search": {"query_cut": 14, "heap_factor": 1.0}},
}


def sparse_field(kind: str, dim: int, seismic: dict) -> dict:
    """The sparse field's spec for an encoder of this kind (seismic: the client's build params)."""
    profile = FIELD_PROFILES.get(kind, {})
    spec = {"kind": "sparse", "dim": dim, "params": {**profile.get("params", {}), **seismic}}
    if profile.get("search"):
        spec["search"] = dict(profile["search"])
    return spec


def sparse_query(encoder, text: str, coll, batcher) -> tuple[np.ndarray, np.ndarray]:
    """(int32 term ids, float32 weights) of a query for the collection's sparse field."""
    if getattr(encoder, "live_idf", False):
        ids = encoder.query_terms([text])[0]
        if len(ids) == 0:
            return ids, np.empty(0, np.float32)
        stats = coll.term_stats("sparse", ids)
        seen = stats.df > 0  # a token no document has cannot score: dropped, as BM25's are
        w = lexical.idf(stats.df[seen].astype(np.float64), stats.n_docs)
        return ids[seen].astype(np.int32), w.astype(np.float32)
    if getattr(encoder, "kind", None) == "inference-free":  # an IDF table: no model, no batching
        return encoder.query_weights([text])[0]  # looked up directly: no CSR row to build and read back
    row = batcher.encode(encoder, text)  # a 1 x dim CSR row, batched with concurrent queries
    return row.indices.astype(np.int32), row.data.astype(np.float32)


def model_free(store, name: str, mode: str) -> bool:
    """Whether a search of collection ``name`` in ``mode`` runs no model: BM25, or an
    inference-free sparse field (tokenizer and IDF), alone or fused with BM25. Such a search
    is a fraction of a millisecond and can run on the event loop (routes/search.py)."""
    if mode == "bm25":
        return True
    if mode not in ("sparse", "hybrid"):
        return False
    try:
        encoders = store.get(name).config.encoders
    except Exception:  # noqa: BLE001 — unknown, damaged: the search itself answers that
        return False
    if encoders.get("sparse_kind") != "inference-free":
        return False
    return mode == "sparse" or not encoders.get("dense")


def term_names(encoder):
    """ids -> the names of a sparse encoder's terms (tokens; latents for CSR), for explanations."""
    tokenizer = getattr(encoder, "tokenizer", None)
    if tokenizer is not None:
        return lambda ids: tokenizer.convert_ids_to_tokens(ids)
    return lambda ids: [f"latent_{i}" for i in ids]


def _device(spec, enc) -> str:
    if spec.kind == "bm25":
        return "cpu"
    found = getattr(enc, "device", None) or getattr(getattr(enc, "doc_encoder", None), "device", None)
    if found is None and spec.kind == "csr" and enc is not None:
        found = getattr(enc.dense, "device", None)
    if found is not None:
        return str(found)
    try:
        return str(devices.resolve(None))
    except devices.DeviceError as exc:  # a setting the machine cannot honour: say so here too
        return f"unavailable ({exc})"


def describe(cache: EncoderCache, defaults: dict | None = None) -> list[dict]:
    """Every registered model: name, kind(s), role, dimension, device (where its documents are
    encoded), query side, whether it is loaded, and the server defaults it is (``defaults``:
    role -> model name)."""
    out = []
    defaults = defaults or {}
    for name, spec in sorted(registry.models().items()):
        roles = ["sparse"] if spec.sparse else [ROLE[k] for k in spec.kinds]
        loaded = {r: cache.loaded_encoder(r, name) for r in roles if r in ("sparse", "dense", "multivector")}
        enc = next((e for e in loaded.values() if e is not None), None)
        dim = getattr(enc, "dim", None) if enc is not None else None
        if spec.kind == "bm25":
            dim = lexical.DIM
        if dim is None:
            dim = registry.dimension(spec)
        entry = {**spec.public(), "roles": roles, "dimension": dim, "device": _device(spec, enc),
                 "query_side": QUERY_SIDE.get(spec.kind, "model"),
                 "loaded": [r for r, e in loaded.items() if e is not None],
                 "default_for": [r for r, n in defaults.items() if n == name]}
        if spec.kind == "inference-free":
            entry["idf"] = "file" if "idf" in spec.files else "collection"
        out.append(entry)
    return out


def settings_defaults(settings) -> dict:
    return {"sparse": settings.sparse_encoder, "dense": settings.dense_encoder,
            "multivector": settings.multivector_encoder, "bm25": registry.BM25_HASHED}
