"""Configuration of a collection: its vector fields, encoders and storage policy, as typed objects."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields

from .errors import InvalidInputError
from .seismic.config import SeismicParams

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
    """

    kind: str
    dim: int
    index: str = "seismic"
    params: dict = field(default_factory=dict)

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


@dataclass(frozen=True)
class CollectionConfig:
    """Everything about a collection that is fixed at creation.

    fields:              vector field name -> FieldSpec; every document has a vector in each.
    encoders:            free-form names of the encoders that produce each field (the service
                         fills these in; the collection stores and returns them).
    flush_docs:          the write buffer is sealed into a segment when it holds this many rows.
    exact_segment_docs:  segments with fewer documents use ExactIndex instead of Seismic: up to
                         ~20k SPLADE-like documents exact search is about as fast or faster
                         (BENCHMARKS.md, "Exact vs Seismic on small synthetic segments"), never
                         wrong, and much cheaper to build when the buffer is sealed.
    max_segments:        after a flush leaves more segments than this, small ones are merged
                         (0 disables automatic merging).
    merge_small_docs:    merge() rewrites segments with fewer live documents than this ...
                         (automatically, after a flush, once they hold this many together) ...
    merge_deleted_fraction: ... and segments whose fraction of deleted rows is at least this.
    filter_exact_docs:   a filtered search scores the matching rows of a segment exactly when at
                         most this many match (otherwise it over-fetches from the index).
    """

    fields: dict
    encoders: dict = field(default_factory=dict)
    flush_docs: int = 10_000
    exact_segment_docs: int = 20_000
    max_segments: int = 16
    merge_small_docs: int = 50_000
    merge_deleted_fraction: float = 0.2
    filter_exact_docs: int = 5_000

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
        for name in ("flush_docs", "exact_segment_docs", "merge_small_docs", "filter_exact_docs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "flush_docs" else 0):
                raise InvalidInputError(f"{name} must be a {'positive' if name == 'flush_docs' else 'non-negative'} "
                                 f"integer, got {v!r}")
        if isinstance(self.max_segments, bool) or not isinstance(self.max_segments, int) or self.max_segments < 0:
            raise InvalidInputError(f"max_segments must be a non-negative integer, got {self.max_segments!r}")
        if not 0 < self.merge_deleted_fraction <= 1:
            raise InvalidInputError(f"merge_deleted_fraction must be in (0, 1], got {self.merge_deleted_fraction!r}")

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
        return d
