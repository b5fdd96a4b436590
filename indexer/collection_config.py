"""Configuration of a collection: its vector fields, encoders and storage policy, as typed objects."""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields

from .errors import InvalidInputError
from .query import DEFAULTS
from .seismic.config import SeismicParams
from .token_store import TOKEN_DTYPES
from .validation import check_search_params

SEARCH_DEFAULT_KEYS = ("query_cut", "heap_factor")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


def check_name(name) -> str:
    """A collection name that is one safe path component (no '/', '..', leading dot, NUL)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise InvalidInputError(f"invalid collection name {name!r}: use 1-64 characters from "
                         "[A-Za-z0-9_.-], starting with a letter or digit")
    return name


MAX_ID_LENGTH = 1024
# Characters that cannot travel in a URL path as themselves (control characters).
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def check_document_id(doc_id) -> str:
    """A document id that every client can address as a URL path: GET /documents/{id} takes
    ids with '/', but clients normalise '.' and '..' segments away (`DELETE .../documents/..`
    would reach `DELETE /collections/{name}`), and empty segments or control characters do not
    survive proxies. Such ids are refused when stored, so every stored id stays addressable."""
    if not isinstance(doc_id, str) or not doc_id or len(doc_id) > MAX_ID_LENGTH:
        raise InvalidInputError(f"document id {doc_id!r} must be a non-empty string of at most "
                                f"{MAX_ID_LENGTH} characters")
    if _CONTROL_RE.search(doc_id):
        raise InvalidInputError(f"document id {doc_id!r} contains a control character")
    if any(seg in ("", ".", "..") for seg in doc_id.split("/")):
        raise InvalidInputError(f"document id {doc_id!r} cannot travel in a URL path: no '.' or "
                                "'..' segments, no leading, trailing or doubled '/'")
    try:
        doc_id.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"document id {doc_id!r} is not valid Unicode (lone surrogate)") from None
    return doc_id


@dataclass(frozen=True)
class FieldSpec:
    """One vector per document for this field.

    kind:   "sparse" (CSR rows over `dim` term ids) or "dense" (float32 vectors of length `dim`).
    index:  for sparse fields, "seismic" (approximate; values must be non-negative) or "exact"
            (brute force; signed values allowed). Dense fields are always searched exactly.
    params: Seismic build parameters (see SeismicParams) for sealed segments.
    search: the field's search defaults where they differ from indexer.query.DEFAULTS
            (query_cut, heap_factor): what a search that names neither uses. An index built
            for one kind of query (inference-free: a few flat IDF weights) has its own best
            operating point; the field records it beside the build parameters it goes with.
    """

    kind: str
    dim: int
    index: str = "seismic"
    params: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in ("sparse", "dense"):
            raise InvalidInputError(f"field kind must be 'sparse' or 'dense', got {self.kind!r}")
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim <= 0:
            raise InvalidInputError(f"field dim must be a positive integer, got {self.dim!r}")
        if self.kind == "sparse" and self.index not in ("seismic", "exact"):
            raise InvalidInputError(f"sparse field index must be 'seismic' or 'exact', got {self.index!r}")
        if self.kind == "dense" and self.params:
            raise InvalidInputError("dense fields take no index params")
        if self.kind == "sparse":
            SeismicParams.from_dict(self.params)  # raises on unknown or invalid parameters
        if not isinstance(self.search, dict):
            raise InvalidInputError(f"field search defaults must be a dict, got {type(self.search).__name__}")
        unknown = sorted(set(self.search) - set(SEARCH_DEFAULT_KEYS))
        if unknown:
            raise InvalidInputError(f"unknown field search default(s) {unknown}; known: {list(SEARCH_DEFAULT_KEYS)}")
        if self.search and self.kind != "sparse":
            raise InvalidInputError("only sparse fields take search defaults")
        if self.search:
            check_search_params(self.search.get("query_cut", DEFAULTS.query_cut),
                                self.search.get("heap_factor", DEFAULTS.heap_factor))

    def search_defaults(self) -> tuple[int, float]:
        """(query_cut, heap_factor) of a search that names neither."""
        return (self.search.get("query_cut", DEFAULTS.query_cut),
                float(self.search.get("heap_factor", DEFAULTS.heap_factor)))

    @property
    def allow_negative(self) -> bool:
        return self.kind == "dense" or self.index == "exact"

    @classmethod
    def from_dict(cls, d: dict) -> "FieldSpec":
        if isinstance(d, FieldSpec):
            return d
        if not isinstance(d, dict):
            raise InvalidInputError(f"a field spec must be a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidInputError(f"unknown field spec key(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


def _option(default, doc: str, **bounds):
    """A collection option: its default, its bounds (ge / gt / le, or choices for a string)
    and what it does; None is allowed where the default is None. Declared
    once here: the checks below and the REST schema (service/schemas.py) are derived from it."""
    return field(default=default, metadata={"doc": doc, "bounds": bounds})


@dataclass(frozen=True)
class CollectionConfig:
    """Everything about a collection that is fixed at creation: its vector fields (name ->
    FieldSpec; every document has a vector in each), the names of the encoders that fill them
    (free-form: the service fills these in, the collection stores and returns them), and the
    storage options below (OPTIONS)."""

    fields: dict
    encoders: dict = field(default_factory=dict)
    flush_docs: int = _option(10_000, "the write buffer is sealed into a segment when it holds this "
                              "many rows", ge=1)
    max_buffer_docs: int | None = _option(None, "writes wait (back-pressure) while the write buffer "
                                          "holds this many rows, i.e. while the background maintenance "
                                          "is behind; at least flush_docs; default 4 x flush_docs", ge=1)
    exact_segment_docs: int = _option(20_000, "segments with fewer documents use exact search instead "
                                      "of Seismic: up to ~20k SPLADE-like documents it is about as fast "
                                      "(BENCHMARKS.md), never wrong, and much cheaper to build", ge=0)
    max_segments: int = _option(16, "after a flush leaves more segments than this, small ones are "
                                "merged, and if that is not enough those with the fewest live "
                                "documents (0: no automatic merging)", ge=0)
    merge_small_docs: int = _option(50_000, "a merge rewrites the segments with fewer live documents "
                                    "than this, automatically once they hold this many together", ge=0)
    merge_deleted_fraction: float = _option(0.2, "... and the segments with at least this fraction of "
                                            "deleted rows", gt=0, le=1)
    filter_exact_docs: int = _option(5_000, "a filtered search scores a segment's matching rows exactly "
                                     "when at most this many match (else it over-fetches from the index)",
                                     ge=0)
    store_token_vectors: str | None = _option(None, "store each document's token vectors for MaxSim "
                                              "reranking, as 'fp16' or 'int8' (one scale per token); "
                                              "null: reranking encodes the candidates' text per query",
                                              choices=TOKEN_DTYPES)
    token_dim: int | None = _option(None, "dimension of the stored token vectors (with "
                                    "store_token_vectors; the service defaults it to the multivector "
                                    "encoder's and projects to a smaller one, e.g. 128)", ge=1, le=4096)

    def __post_init__(self):
        if not isinstance(self.fields, dict) or not self.fields:
            raise InvalidInputError("a collection needs at least one vector field, e.g. "
                                    "{'sparse': {'kind': 'sparse', 'dim': 30522}}")
        specs = {}
        for name, spec in self.fields.items():
            if not isinstance(name, str) or not FIELD_RE.fullmatch(name):
                raise InvalidInputError(f"invalid field name {name!r}: letters, digits and '_', "
                                        "starting with a letter, at most 32 characters")
            specs[name] = FieldSpec.from_dict(spec)
        object.__setattr__(self, "fields", specs)
        if not isinstance(self.encoders, dict) or not all(
                isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in self.encoders.items()):
            raise InvalidInputError("encoders must map strings to encoder names (str or None)")
        if self.max_buffer_docs is None:
            object.__setattr__(self, "max_buffer_docs", 4 * self.flush_docs)
        for opt in OPTIONS:
            _check_option(opt, getattr(self, opt.name))
        if (self.store_token_vectors is None) != (self.token_dim is None):
            raise InvalidInputError("store_token_vectors and token_dim go together: give both or "
                                    f"neither (got {self.store_token_vectors!r}, {self.token_dim!r})")
        if self.max_buffer_docs < self.flush_docs:
            raise InvalidInputError(f"max_buffer_docs must be >= flush_docs ({self.flush_docs}), "
                                    f"got {self.max_buffer_docs}")

    @property
    def sparse_fields(self) -> list[str]:
        return [n for n, s in self.fields.items() if s.kind == "sparse"]

    @classmethod
    def from_dict(cls, d: dict) -> "CollectionConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidInputError(f"unknown collection option(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fields"] = {n: asdict(s) for n, s in self.fields.items()}
        for spec in d["fields"].values():  # none recorded: the file reads as before search defaults
            if not spec["search"]:
                del spec["search"]
        return d


# The storage options, in declaration order (not the fields and encoders).
OPTIONS = tuple(f for f in fields(CollectionConfig) if "doc" in f.metadata)


def _check_option(opt, value) -> None:
    b = opt.metadata["bounds"]
    if value is None and opt.default is None:
        return
    if "choices" in b:
        if value not in b["choices"]:
            raise InvalidInputError(f"{opt.name} must be one of {list(b['choices'])} or null, got {value!r}")
        return
    integer = opt.type.startswith("int")
    ok_type = (isinstance(value, int) if integer else isinstance(value, (int, float)) and math.isfinite(value))
    if isinstance(value, bool) or not ok_type:
        raise InvalidInputError(f"{opt.name} must be {'an integer' if integer else 'a finite number'}, "
                                f"got {value!r}")
    if ("ge" in b and value < b["ge"]) or ("gt" in b and value <= b["gt"]) or ("le" in b and value > b["le"]):
        limits = ", ".join(f"{'>=' if k == 'ge' else '>' if k == 'gt' else '<='} {v}" for k, v in b.items())
        raise InvalidInputError(f"{opt.name} must be {limits}, got {value!r}")

