"""Request and response models: the API contract, and the documentation /docs shows."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, create_model

from indexer.collection_config import MAX_ID_LENGTH, OPTIONS

Mode = Literal["sparse", "bm25", "dense", "hybrid"]
def _whole_number(v):
    """JSON Schema's "integer" admits 3.0; a bool or a string is not a number here."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def Int(**bounds):
    """An integer field type with bounds (kept inside the type so that JSON Schema shows them
    as minimum/maximum also when the field is optional)."""
    return Annotated[int, Field(**bounds), BeforeValidator(_whole_number)]
# Requests: no unknown fields, no bool for a number (`k: true`), no string for a number, no
# NaN or infinity (a NaN fusion weight would give `"score": null`).
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong, naming the field or the resource")


class ValidationIssue(BaseModel):
    loc: list[str]
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    detail: str = Field(description="every issue as 'field: message', joined by '; '")
    errors: list[ValidationIssue]


def _error(description: str, model=ErrorResponse) -> dict:
    return {"model": model, "description": description}


# Documented on every API route (the health routes excepted), so clients and schema checkers
# know every status the service can answer.
ERROR_RESPONSES: dict = {
    400: _error("bad input (the message names the field) or malformed JSON"),
    401: _error("missing or unknown API key"),
    403: _error("read-only key on a write route, a non-local client with no keys configured, "
                "or a job source outside LSR_IMPORT_DIR"),
    404: _error("no such collection, document, job or snapshot"),
    409: _error("the name is taken, or the collection is held by another process"),
    413: _error("the body or batch is over a configured limit"),
    422: _error("the body does not match the schema", ValidationErrorResponse),
    503: _error("the collection is damaged (the message names the file and the failed check) "
                "or closing"),
    507: _error("the data directory's disk is full"),
}


class _IndexOptionsBase(BaseModel):
    model_config = _STRICT
    seismic: dict[str, Any] = Field(default_factory=dict, description="Seismic build parameters "
                                    "(n_postings, centroid_fraction, summary_energy, ...; knn: a κ-NN "
                                    "graph of that many neighbours a document, which searches then use)")

    def options(self) -> dict:
        d = self.model_dump(exclude_none=True)
        if not d.get("seismic"):
            d.pop("seismic", None)
        return d


def _option_field(opt) -> tuple:
    bounds = opt.metadata["bounds"]
    if "choices" in bounds:
        kind = Literal[tuple(bounds["choices"])]
    elif opt.type.startswith("int"):
        kind = Int(**bounds)
    else:
        kind = Annotated[float, Field(**bounds)]
    return kind | None, Field(None, description=f"{opt.metadata['doc']} (default {opt.default})")


# Derived from the one declaration of the options (indexer CollectionConfig): every option, its
# bounds and its description; an omitted option takes the collection default.
IndexOptions = create_model("IndexOptions", __base__=_IndexOptionsBase,
                            **{opt.name: _option_field(opt) for opt in OPTIONS})


class CollectionCreate(BaseModel):
    """Omit an encoder to get the server's default; pass null to leave that field out."""
    model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [{"name": "docs"}]})
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", examples=["docs"])
    sparse_encoder: str | None = Field(None, examples=["splade-tiny", "splade-tiny-inference-free"],
                                       description="a registered model of a sparse kind (splade, "
                                       "echo-splade, inference-free, csr; GET /models lists them); "
                                       "the collection records it and its kind")
    dense_encoder: str | None = Field(None, examples=["all-MiniLM-L6-v2"])
    multivector_encoder: str | None = Field(None, examples=["all-MiniLM-L6-v2"])
    bm25: bool = True
    index: IndexOptions | None = None


class Damage(BaseModel):
    file: str | None = Field(description="the file that failed, relative to the collection")
    check: str | None = Field(description="the check that failed (checksum, size, json, ...)")
    message: str


class CollectionStats(BaseModel):
    name: str
    state: Literal["ready", "damaged"] = "ready"
    damage: Damage | None = Field(None, description="why a damaged collection cannot be served")
    documents: int | None = Field(None, description="null when damaged")
    segments: int | None = None
    buffer_documents: int = 0
    tombstones: int = 0
    bytes: int = 0
    encoders: dict[str, str | None] = {}
    fields: dict[str, str] = {}
    token_vectors: dict[str, Any] | None = Field(
        None, description="stored token vectors for reranking (store_token_vectors): dtype, dim, "
        "tokens, bytes, bytes_per_document, bytes_per_token; null when the collection stores none")
    shards: int | None = Field(None, description="on a cluster router: the shards the collection is "
                               "spread over (the counts above are their sums); null on a single node")


class CollectionList(BaseModel):
    collections: list[CollectionStats]


# Raw vectors (documents and queries encoded elsewhere). The schema bounds each number, so that
# no score can overflow float32; what depends on the collection (dimension, index range, the
# vocabulary, indices vs values) is checked against it (400 naming the field, service/raw_vectors.py).
VECTOR_LIMIT = 1e6
MAX_SPARSE_TERMS = 1 << 18  # the hashed BM25 space (service/lexical.py): no vector needs more
MAX_DENSE_DIM = 1 << 16
SparseWeight = Annotated[float, Field(ge=0, le=VECTOR_LIMIT)]
DenseValue = Annotated[float, Field(ge=-VECTOR_LIMIT, le=VECTOR_LIMIT)]
Term = Annotated[str, Field(min_length=1, max_length=1000)]


class SparseVector(BaseModel):
    """A sparse vector as parallel lists: term ids and their weights."""
    model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [
        {"indices": [2610, 11300], "values": [1.2, 0.7]}]})
    indices: list[Int(ge=0, lt=2**31)] = Field(max_length=MAX_SPARSE_TERMS, description="term ids: "
                                               "the field's vocabulary ids (sparse) or hashed term ids (bm25)")
    values: list[SparseWeight] = Field(max_length=MAX_SPARSE_TERMS, description="one weight per index")


def _sparse_form(v) -> str:
    """{"indices": [...], "values": [...]} (or a SparseVector) or a {term: weight} map."""
    if isinstance(v, SparseVector):
        return "SparseVector"
    if isinstance(v, dict) and any(isinstance(v.get(k), list) for k in ("indices", "values")):
        return "SparseVector"
    return "terms"


SparseIn = Annotated[Union[Annotated[SparseVector, Tag("SparseVector")],
                           Annotated[dict[Term, SparseWeight], Tag("terms")]],
                     Discriminator(_sparse_form)]
DenseIn = Annotated[list[DenseValue], Field(max_length=MAX_DENSE_DIM)]


class FieldVectors(BaseModel):
    """Precomputed vectors by field (list): `sparse` (the collection's SPLADE model), `bm25`
    (hashed BM25 terms), `dense` (the collection's dense model). A sparse vector is
    `{"indices": [...], "values": [...]}` or `{"term": weight}` (terms as /encode names them:
    the SPLADE tokenizer's tokens, or BM25's lower-cased words)."""
    model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [
        {"bm25": {"wind": 2, "turbines": 1}}, {"sparse": {"indices": [2610], "values": [1.5]}}]})
    sparse: SparseIn | None = Field(None, description="SPLADE weights, used as given (non-negative)")
    bm25: SparseIn | None = Field(None, description="term frequencies (counts): a document's are "
                                  "saturated with the collection's average length (its length is "
                                  "their sum), a query's weighted by the live IDF")
    dense: DenseIn | None = Field(None, description="the dense model's dimension of numbers, used "
                                  "as given (scores are dot products; the text path's vectors have "
                                  "unit length)")

    def given(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in ("sparse", "bm25", "dense") if getattr(self, f) is not None}


class DocumentIn(BaseModel):
    model_config = _STRICT
    id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, examples=["doc-1"],
                    description="any string that can travel in a URL path: '/' allowed, but no "
                    "'.' or '..' segment, no empty segment, no control character")
    text: str | None = Field(None, max_length=1_000_000,
                             examples=["Learned sparse retrieval expands terms."],
                             description="encoded for every field not given in `vectors`; may be "
                             "omitted when `vectors` has every field of the collection")
    metadata: dict[str, Any] | None = Field(None, examples=[{"lang": "en", "year": 2024}])
    vectors: FieldVectors | None = Field(None, description="precomputed vectors for some or all "
                                         "fields (they take the place of encoding the text)")


class UpsertRequest(BaseModel):
    model_config = _STRICT
    documents: list[DocumentIn] = Field(min_length=1)


class UpsertResponse(BaseModel):
    upserted: int


class DocumentOut(BaseModel):
    id: str
    text: str | None
    metadata: dict[str, Any] | None


class IdsRequest(BaseModel):
    model_config = _STRICT
    ids: list[str] = Field(min_length=1, max_length=10_000, examples=[["doc-1", "a/b"]])


class DocumentsOut(BaseModel):
    documents: list[DocumentOut] = Field(description="the documents found, in the order asked")
    missing: list[str] = Field(description="ids with no document")


class DeleteRequest(BaseModel):
    """Exactly one of ids and filter."""
    model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [
        {"ids": ["doc-1", "doc-2"]}, {"filter": {"topic": "energy", "year": {"lt": 2000}}}]})
    ids: list[str] | None = Field(None, min_length=1, max_length=10_000)
    filter: dict[str, Any] | None = Field(None, description="delete every document whose "
                                          "metadata matches (the search filter syntax)")


class DeleteResponse(BaseModel):
    deleted: int


class MetadataUpdate(BaseModel):
    model_config = _STRICT
    id: str = Field(min_length=1, max_length=1024)
    metadata: dict[str, Any] = Field(examples=[{"year": 2025, "draft": None}])


class MetadataUpdateRequest(BaseModel):
    model_config = _STRICT
    documents: list[MetadataUpdate] = Field(min_length=1, max_length=10_000)
    merge: bool = Field(True, description="true: a JSON merge patch of the stored metadata (keys "
                        "replace or add keys, null removes one); false: replace the metadata")


class MetadataUpdateResponse(BaseModel):
    updated: int


class SnapshotOut(BaseModel):
    id: str
    collection: str
    bytes: int
    created: float = Field(description="Unix time")


class SnapshotList(BaseModel):
    snapshots: list[SnapshotOut]


class RestoreRequest(BaseModel):
    """Optional body of a restore: `target` restores into another (new) collection."""
    model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [{"target": "docs-copy"}]})
    target: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                               description="a new collection to create from the snapshot (409 if "
                               "it exists); omitted: replace the snapshot's own collection")


class DocumentPage(BaseModel):
    documents: list[DocumentOut] = Field(description="documents in id order (Unicode code points)")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at the end")


class FusionSpec(BaseModel):
    model_config = _STRICT
    method: Literal["rrf", "convex"] = "rrf"
    k: float = Field(60.0, ge=0, le=1e6, description="RRF constant")
    normalization: Literal["minmax", "zscore"] = "minmax"
    alpha: float = Field(0.5, ge=0, le=1, description="convex: weight of the dense list; the "
                         "lexical lists share 1 - alpha")
    weights: dict[Literal["sparse", "bm25", "dense"], float] | None = Field(
        None, description="explicit per-list weights (RRF and convex); overrides alpha")


class RerankSpec(BaseModel):
    model_config = _STRICT
    kappa: Int(ge=1, le=1000) = Field(50, description="first-stage candidates to rerank")
    alpha: float = Field(0.0, ge=0, le=1, description="skip candidates scoring below alpha x the best")
    beta: Int(ge=1) | None = Field(None, description="stop after beta consecutive candidates "
                             "that do not enter the top-k (null: never)")
    top: Int(ge=1, le=1000) | None = Field(None, description="the top-k that early exit tracks "
                            "(default offset + k); fix it so pages stay consistent when beta is set")
    first_stage_weight: float | None = Field(
        None, ge=0, le=1, description="null: the score is MaxSim. A weight w: the score is "
        "w x minmax(first-stage score over the kappa candidates) + (1 - w) x MaxSim / query tokens")


class PRFSpec(BaseModel):
    model_config = _STRICT
    docs: Int(ge=1, le=50) = Field(3, description="feedback documents (top m)")
    terms: Int(ge=1, le=4096) = Field(64, description="sparse feedback query keeps this many terms")
    query_weight: float = Field(0.7, ge=0, le=1, description="interpolation before PRF: weight of "
                                "the original query vector")
    score_weight: float = Field(0.5, ge=0, le=1, description="interpolation after PRF: weight of "
                                "the original query's scores")


class MustNot(BaseModel):
    """A term or phrase whose documents are removed (no weight) or demoted (a weight)."""
    model_config = _STRICT
    text: str = Field(min_length=1, max_length=200, examples=["nuclear"])
    weight: float | None = Field(None, gt=0, le=1, description="null: remove the documents that "
                                 "contain it; w: demote them, score - w x |score| (1: a positive "
                                 "score becomes 0); several matches compound")


class HighlightSpec(BaseModel):
    model_config = _STRICT
    fragments: Int(ge=1, le=20) = Field(3, description="fragments per hit, best first")
    fragment_chars: Int(ge=20, le=2000) = Field(160, description="about this many characters "
                                                 "per fragment (cut at word boundaries)")
    terms: Int(ge=1, le=100) = Field(10, description="top contributing query terms to mark")


class FacetSpec(BaseModel):
    model_config = _STRICT
    key: str = Field(min_length=1, max_length=256, examples=["topic"], description="a metadata key")
    scope: Literal["hits", "collection"] = Field(
        "hits", description="hits: the fused candidate list (every list to `depth`, after "
        "filter and exclusions); collection: every live document that matches `filter`")
    size: Int(ge=1, le=1000) = Field(10, description="the most frequent values to return")


class SearchRequest(BaseModel):
    model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [
        {"query": "how do sparse retrievers expand terms", "k": 5, "mode": "hybrid"},
        {"query": "solar power", "mode": "hybrid", "fusion": {"method": "convex", "alpha": 0.4},
         "rerank": {"kappa": 30, "alpha": 0.2, "beta": 8}, "filter": {"topic": "energy"}},
        {"mode": "bm25", "vector": {"bm25": {"solar": 1, "power": 1}}, "k": 5}]})
    query: str | None = Field(None, min_length=1, max_length=10_000, description="the query text: "
                              "encoded for every list not given in `vector`; needed for rerank")
    vector: FieldVectors | None = Field(None, description="query vectors by list (encoded "
                                        "elsewhere); with `query` omitted, one for every list the "
                                        "mode searches")
    k: Int(ge=1, le=1000) = 10
    mode: Mode = "hybrid"
    fusion: FusionSpec | None = None
    rerank: RerankSpec | None = None
    prf: PRFSpec | None = None
    filter: dict[str, Any] | None = Field(None, examples=[{"year": {"gte": 2020}}])
    offset: Int(ge=0, le=100_000) = 0
    explain: bool = False
    depth: Int(ge=1, le=10_000) = Field(100, description="first-stage candidates per list; pages "
                       "within one depth window rank identically")
    highlight: bool | HighlightSpec = Field(
        False, description="true (or options): each hit's `highlights`, the fragments of its text "
        "that carry the top contributing query terms")
    facets: list[FacetSpec] | None = Field(None, max_length=20, description="value counts of "
                                           "metadata keys, over the hits or the filtered collection")
    must_not: list[Annotated[str, Field(min_length=1, max_length=200)] | MustNot] | None = Field(
        None, max_length=64, examples=[["coal", "fossil fuel", {"text": "nuclear", "weight": 0.5}]],
        description="terms or phrases: documents that contain one are removed (or, with a "
        "weight, demoted) in every mode; matched on words, case-insensitive, plurals folded")
    query_syntax: bool = Field(True, description="`-term` and `-\"phrase\"` in the query are "
                               "exclusions (taken out of the query text)")
    negation: bool = Field(False, description="natural-language negation in the query ('…, but "
                           "not X', 'without X', \"don't mention X\", 'excluding X') becomes "
                           "exclusions; off by default: 'without X' is often the topic itself")


class Highlight(BaseModel):
    """One fragment of a hit's text. Render from `text` and `matches` (plain text plus offsets:
    nothing to escape wrongly), or insert `marked`, which is HTML-escaped text with the matches
    in <mark>…</mark> and nothing else."""
    text: str = Field(description="the fragment, as in the document")
    start: int = Field(description="where the fragment starts in the document's text (Unicode "
                       "code points, as Python indexes strings)")
    matches: list[tuple[int, int]] = Field(description="[start, end) of each marked word, in "
                                           "code points relative to the fragment")
    terms: list[str] = Field(description="the query terms the fragment carries (wordpieces / "
                             "BM25 terms / query words), most contributing first")
    score: float = Field(description="the contributions of the terms marked in the fragment")
    marked: str = Field(description="the fragment HTML-escaped, matches wrapped in <mark></mark>")


class FacetValue(BaseModel):
    value: str | float | int | bool | None
    count: int


class FacetOut(BaseModel):
    key: str
    scope: Literal["hits", "collection"]
    values: list[FacetValue] = Field(description="most frequent first, ties by value")
    other: int = Field(description="documents with a value not in `values`")
    missing: int = Field(description="documents without the key (or with an object value); a "
                         "list value counts each of its elements")


class ExclusionOut(BaseModel):
    text: str
    weight: float | None = Field(None, description="null: its documents were removed")
    source: Literal["must_not", "syntax", "negation"]


class SearchResult(BaseModel):
    id: str
    score: float
    text: str | None = None
    metadata: dict[str, Any] | None = None
    explanation: dict[str, Any] | None = None
    highlights: list[Highlight] | None = Field(None, description="with `highlight`: fragments, best "
                                                "first (empty when no query term is in the text)")


class SearchResponse(BaseModel):
    results: list[SearchResult]
    mode: Mode
    offset: int
    k: int
    candidates: int = Field(description="documents in the fused candidate list")
    reranked: int = Field(0, description="leading results ordered by MaxSim (their score is MaxSim)")
    rerank_stats: dict[str, int] | None = None
    query: str | None = Field(None, description="the query text as encoded, when exclusions "
                              "were taken out of it")
    exclusions: list[ExclusionOut] | None = Field(None, description="the exclusions applied")
    excluded: int | None = Field(None, description="candidates the exclusions removed or demoted")
    facets: list[FacetOut] | None = None


class JobCreate(BaseModel):
    model_config = _STRICT
    source: str = Field(min_length=1, examples=["corpus.jsonl"], description="a path inside the "
                        "server's import directory (LSR_IMPORT_DIR), relative to it")
    format: Literal["jsonl", "parquet", "beir"] | None = None


class JobOut(BaseModel):
    id: str
    collection: str
    status: Literal["queued", "running", "cancelling", "done", "failed", "cancelled"]
    done: int
    total: int | None
    rate: float | None = Field(None, description="documents per second")
    eta: float | None = Field(None, description="seconds left")
    source: str
    format: str
    error: str | None = None
    created: str | None = Field(None, description="when the job was created (ISO 8601, UTC)")
    started: str | None = Field(None, description="when it first ran")
    finished: str | None = Field(None, description="when it ended: done, failed or cancelled")


TokenId = Int(ge=0)


class EmbeddingsRequest(BaseModel):
    # extra="allow": OpenAI clients send user and fields this server does not use
    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False, json_schema_extra={
        "examples": [{"model": "all-MiniLM-L6-v2", "input": ["hello world"]},
                     {"model": "all-MiniLM-L6-v2", "input": "hello", "encoding_format": "base64",
                      "dimensions": 128},
                     {"input": [[7592, 2088]], "encoding_format": "float"},
                     {"model": "splade-tiny", "input": "sparse retrieval", "encoding_format": "sparse"}]})
    input: str | list[str] | list[TokenId] | list[list[TokenId]] = Field(
        examples=["what is learned sparse retrieval"],
        description="a text, a list of texts, or token ids of the model's own tokenizer: a list "
        "of ints (one input) or a list of lists of ints (decoded with that tokenizer)")
    model: str | None = Field(None, description="a dense model name (GET /v1/models), or "
                              "'sparse' / a SPLADE model with encoding_format 'sparse'")
    encoding_format: Literal["float", "base64", "sparse"] = Field(
        "float", description="float: lists of numbers; base64: little-endian float32 bytes, base64 "
        "(the OpenAI client's default); sparse (an extension): SPLADE {indices, values}")
    dimensions: Int(ge=1) | None = Field(None, description="dense models: keep the first n "
                                         "dimensions and L2-renormalise (at most the model's)")


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="Unix time the model was installed")
    owned_by: str = "lsr-search"
    kinds: list[Literal["sparse", "dense", "multivector"]] = Field(
        description="what the model serves here (an extension of OpenAI's format)")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class EncodeRequest(BaseModel):
    model_config = _STRICT
    texts: list[str] = Field(min_length=1)
    encoder: str | None = Field(None, description="SPLADE model name (default: the server's), or 'bm25'")
    kind: Literal["documents", "queries"] = "queries"
    top_k: Int(ge=1, le=30522) | None = None
