"""Request and response models: the API contract, and the documentation /docs shows."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["sparse", "bm25", "dense", "hybrid"]
_STRICT = ConfigDict(extra="forbid")


class IndexOptions(BaseModel):
    model_config = _STRICT
    seismic: dict[str, Any] = Field(default_factory=dict, description="Seismic build parameters "
                                    "(n_postings, centroid_fraction, summary_energy, ...)")
    flush_docs: int | None = Field(None, ge=1)
    exact_segment_docs: int | None = Field(None, ge=0)
    max_segments: int | None = Field(None, ge=0)
    filter_exact_docs: int | None = Field(None, ge=0)

    def options(self) -> dict:
        d = self.model_dump(exclude_none=True)
        if not d.get("seismic"):
            d.pop("seismic", None)
        return d


class CollectionCreate(BaseModel):
    """Omit an encoder to get the server's default; pass null to leave that field out."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "docs"}]})
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", examples=["docs"])
    sparse_encoder: str | None = Field(None, examples=["splade-tiny"])
    dense_encoder: str | None = Field(None, examples=["all-MiniLM-L6-v2"])
    multivector_encoder: str | None = Field(None, examples=["all-MiniLM-L6-v2"])
    bm25: bool = True
    index: IndexOptions | None = None


class CollectionStats(BaseModel):
    name: str
    documents: int
    segments: int
    buffer_documents: int = 0
    tombstones: int = 0
    bytes: int = 0
    encoders: dict[str, str | None] = {}
    fields: dict[str, str] = {}


class CollectionList(BaseModel):
    collections: list[CollectionStats]


class DocumentIn(BaseModel):
    model_config = _STRICT
    id: str = Field(min_length=1, max_length=1024, examples=["doc-1"])
    text: str = Field(max_length=1_000_000, examples=["Learned sparse retrieval expands terms."])
    metadata: dict[str, Any] | None = Field(None, examples=[{"lang": "en", "year": 2024}])


class UpsertRequest(BaseModel):
    model_config = _STRICT
    documents: list[DocumentIn] = Field(min_length=1)


class UpsertResponse(BaseModel):
    upserted: int


class DocumentOut(BaseModel):
    id: str
    text: str | None
    metadata: dict[str, Any] | None


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
    kappa: int = Field(50, ge=1, le=1000, description="first-stage candidates to rerank")
    alpha: float = Field(0.0, ge=0, le=1, description="skip candidates scoring below alpha x the best")
    beta: int | None = Field(None, ge=1, description="stop after beta consecutive candidates "
                             "that do not enter the top-k (null: never)")
    top: int | None = Field(None, ge=1, le=1000, description="the top-k that early exit tracks "
                            "(default offset + k); fix it so pages stay consistent when beta is set")
    first_stage_weight: float | None = Field(
        None, ge=0, le=1, description="null: the score is MaxSim. A weight w: the score is "
        "w x minmax(first-stage score over the kappa candidates) + (1 - w) x MaxSim / query tokens")


class PRFSpec(BaseModel):
    model_config = _STRICT
    docs: int = Field(3, ge=1, le=50, description="feedback documents (top m)")
    terms: int = Field(64, ge=1, le=4096, description="sparse feedback query keeps this many terms")
    query_weight: float = Field(0.7, ge=0, le=1, description="interpolation before PRF: weight of "
                                "the original query vector")
    score_weight: float = Field(0.5, ge=0, le=1, description="interpolation after PRF: weight of "
                                "the original query's scores")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"query": "how do sparse retrievers expand terms", "k": 5, "mode": "hybrid"},
        {"query": "solar power", "mode": "hybrid", "fusion": {"method": "convex", "alpha": 0.4},
         "rerank": {"kappa": 30, "alpha": 0.2, "beta": 8}, "filter": {"topic": "energy"}}]})
    query: str = Field(min_length=1, max_length=10_000)
    k: int = Field(10, ge=1, le=1000)
    mode: Mode = "hybrid"
    fusion: FusionSpec | None = None
    rerank: RerankSpec | None = None
    prf: PRFSpec | None = None
    filter: dict[str, Any] | None = Field(None, examples=[{"year": {"gte": 2020}}])
    offset: int = Field(0, ge=0, le=100_000)
    explain: bool = False
    depth: int = Field(100, ge=1, le=10_000, description="first-stage candidates per list; pages "
                       "within one depth window rank identically")


class SearchResult(BaseModel):
    id: str
    score: float
    text: str | None = None
    metadata: dict[str, Any] | None = None
    explanation: dict[str, Any] | None = None


class SearchResponse(BaseModel):
    results: list[SearchResult]
    mode: Mode
    offset: int
    k: int
    candidates: int = Field(description="documents in the fused candidate list")
    reranked: int = Field(0, description="leading results ordered by MaxSim (their score is MaxSim)")
    rerank_stats: dict[str, int] | None = None


class JobCreate(BaseModel):
    model_config = _STRICT
    source: str = Field(min_length=1, examples=["/data/corpus.jsonl"])
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


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients send user, dimensions, ...
    input: str | list[str] = Field(examples=["what is learned sparse retrieval"])
    model: str | None = Field(None, description="a dense model name, or 'sparse' / a SPLADE model "
                              "with encoding_format 'sparse'")
    encoding_format: Literal["float", "sparse"] = "float"


class EncodeRequest(BaseModel):
    model_config = _STRICT
    texts: list[str] = Field(min_length=1)
    encoder: str | None = Field(None, description="SPLADE model name (default: the server's), or 'bm25'")
    kind: Literal["documents", "queries"] = "queries"
    top_k: int | None = Field(None, ge=1, le=30522)
