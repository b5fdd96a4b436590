"""The model registry: every model a server can encode with, by name, with its kind and files.

A model is a directory of the models cache (``LSR_MODELS_DIR``, default ``<repo>/models``):

- a plain Hugging Face directory (``config.json``, weights, tokenizer) keeps its old meaning: a
  ``*ForMaskedLM`` is a ``splade`` model, a ``*ForCausalLM`` an ``echo-splade`` model, any other
  transformer a ``dense`` and ``multivector`` one;
- a directory with an ``lsr-model.json`` says what it is::

      {"kind": "inference-free",          # one of KINDS (or a list, e.g. ["dense", "multivector"])
       "base": "splade-tiny",             # optional: the registered model whose weights it uses
       "files": {"idf": "idf.npy"},       # optional: role -> file in this directory
       "options": {"max_length": 256},    # optional: the encoder's options (OPTIONS[kind])
       "description": "..."}              # optional, shown by GET /models

  Weights come from the directory itself when it has a ``config.json``, else from ``base``.
  Per kind: ``inference-free`` takes ``files.idf`` (``.npy`` by term id, or OpenSearch's
  ``{token: idf}`` JSON; without one, a collection's own live document frequencies weigh the
  query tokens); ``csr`` needs ``files.checkpoint`` (a ``TopKSAE`` saved by the CSR trainer)
  and takes its dense model from ``base`` (else the one the checkpoint records, which must be
  a registered name); ``multivector`` takes ``files.projection``; ``splade`` takes
  ``files.vocabulary``.

Built in, without files: ``bm25-hashed`` (the service's hashed BM25 field). Clients name
registered models only, never paths: a name that is not one component of the cache, or whose
``lsr-model.json`` is invalid, is unknown (``problems()`` says why, for the log).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from encoders.models import DEFAULT_DENSE, DEFAULT_SPLADE, models_dir

log = logging.getLogger(__name__)

MANIFEST = "lsr-model.json"
KINDS = ("splade", "echo-splade", "inference-free", "csr", "bm25", "dense", "multivector")
# the kinds that can fill a collection's learned sparse field ("bm25" is the field of its own)
SPARSE_KINDS = ("splade", "echo-splade", "inference-free", "csr")
BM25_HASHED = "bm25-hashed"
# the encoder options a manifest may set, per kind; files a manifest may name, per kind
OPTIONS: dict[str, tuple[str, ...]] = {
    "splade": ("max_length", "query_max_length", "top_k_documents", "top_k_queries", "chunk_tokens"),
    "echo-splade": ("max_length", "prefix", "echo_prefix", "top_k", "chunk_tokens"),
    "inference-free": ("max_length", "top_k_documents", "chunk_tokens"),
    "csr": ("k",),
    "dense": ("max_length",),
    "multivector": ("max_length",),
    "bm25": (),
}
FILES: dict[str, tuple[str, ...]] = {
    "splade": ("vocabulary",), "echo-splade": (), "inference-free": ("idf",), "csr": ("checkpoint",),
    "dense": (), "multivector": ("projection",), "bm25": (),
}
_KEYS = {"kind", "base", "files", "options", "description"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class RegistryError(ValueError):
    """An invalid ``lsr-model.json``, or a model that does not serve the asked role."""


@dataclass(frozen=True)
class ModelSpec:
    """One registered model. ``kinds[0]`` is its kind; a plain encoder directory also serves
    the other dense roles (``("dense", "multivector")``)."""
    name: str
    kinds: tuple[str, ...]
    path: Path | None = None                 # its directory (None: built in)
    weights: Path | None = None              # the transformer directory it loads (own or base's)
    base: str | None = None
    files: dict = field(default_factory=dict)    # role -> absolute path inside `path`
    options: dict = field(default_factory=dict)
    description: str = ""

    @property
    def kind(self) -> str:
        return self.kinds[0]

    @property
    def sparse(self) -> bool:
        return self.kind in SPARSE_KINDS

    def serves(self, role: str) -> bool:
        """role: "sparse" (a collection's learned sparse field), "dense" or "multivector"."""
        return self.sparse if role == "sparse" else role in self.kinds

    def key(self) -> str:
        """What identifies the encoder it builds (two names for one model share one encoder)."""
        return json.dumps([self.kinds, str(self.weights), {k: str(v) for k, v in self.files.items()},
                           self.options], sort_keys=True)

    def public(self) -> dict:
        """What a client may see: no server paths."""
        return {"name": self.name, "kind": self.kind, "kinds": list(self.kinds), "base": self.base,
                "files": {role: p.name for role, p in self.files.items()}, "options": dict(self.options),
                "description": self.description}


def _architectures(weights: Path) -> list[str]:
    try:
        return [str(a) for a in json.loads((weights / "config.json").read_text()).get("architectures") or []]
    except (OSError, ValueError, AttributeError):
        return []


def _plain_kinds(weights: Path) -> tuple[str, ...]:
    arch = _architectures(weights)
    if any("MaskedLM" in a for a in arch):
        return ("splade",)
    if any("CausalLM" in a for a in arch):
        return ("echo-splade",)
    return ("dense", "multivector")


def _file_in(directory: Path, role: str, name: Any) -> Path:
    """A manifest's file: one plain name inside the model's directory, which exists."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise RegistryError(f"files.{role}: {name!r} is not a plain file name in the model's directory")
    path = directory / name
    if not path.is_file():
        raise RegistryError(f"files.{role}: {name!r} is not in the model's directory")
    return path


def _from_manifest(name: str, directory: Path, raw: dict, plain: dict[str, Path]) -> ModelSpec:
    if not isinstance(raw, dict):
        raise RegistryError(f"{MANIFEST} must hold a JSON object")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise RegistryError(f"unknown key(s) {unknown} in {MANIFEST}; known: {sorted(_KEYS)}")
    kinds = raw.get("kind")
    kinds = tuple(kinds) if isinstance(kinds, list) else (kinds,)
    bad = [k for k in kinds if k not in KINDS]
    if not kinds or bad:
        raise RegistryError(f"kind {raw.get('kind')!r}: use one of {list(KINDS)}")
    if "bm25" in kinds:
        raise RegistryError(f"kind 'bm25' is built in ({BM25_HASHED}); a model directory cannot add one")
    if len(kinds) > 1 and not set(kinds) <= {"dense", "multivector"}:
        raise RegistryError("only ['dense', 'multivector'] may be listed together as kinds")
    base = raw.get("base")
    weights: Path | None = directory if (directory / "config.json").is_file() else None
    if base is not None:
        if not isinstance(base, str) or base not in plain or base == name:
            raise RegistryError(f"base {base!r} is not a plain model directory of the models cache "
                                "(one with config.json and no lsr-model.json)")
        if weights is None:
            weights = plain[base]
    files_raw = raw.get("files") or {}
    if not isinstance(files_raw, dict):
        raise RegistryError("files must map roles to file names")
    allowed_files = {f for k in kinds for f in FILES[k]}
    unknown = sorted(set(files_raw) - allowed_files)
    if unknown:
        raise RegistryError(f"files {unknown} mean nothing to kind {kinds[0]!r}; it takes {sorted(allowed_files)}")
    files = {role: _file_in(directory, role, f) for role, f in files_raw.items()}
    options = raw.get("options") or {}
    allowed = {o for k in kinds for o in OPTIONS[k]}
    if not isinstance(options, dict) or set(options) - allowed:
        raise RegistryError(f"options {sorted(set(options) - allowed) if isinstance(options, dict) else options!r} "
                            f"mean nothing to kind {kinds[0]!r}; it takes {sorted(allowed)}")
    if kinds[0] == "csr":
        if "checkpoint" not in files:
            raise RegistryError("kind 'csr' needs files.checkpoint (a CSR / CSRv2 checkpoint)")
    elif weights is None:
        raise RegistryError("no weights: the directory has no config.json and no base names a model")
    desc = raw.get("description", "")
    return ModelSpec(name, kinds, directory, weights, base, files, dict(options), str(desc))


def scan() -> tuple[dict[str, ModelSpec], dict[str, str]]:
    """(every valid model by name, {name: why it is not registered} for invalid manifests)."""
    root = models_dir()
    specs: dict[str, ModelSpec] = {BM25_HASHED: ModelSpec(BM25_HASHED, ("bm25",),
                                                          description="hashed BM25 (built in)")}
    problems: dict[str, str] = {}
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and NAME_RE.fullmatch(p.name)) if root.is_dir() else []
    plain = {p.name: p for p in dirs if (p / "config.json").is_file() and not (p / MANIFEST).is_file()}
    for name, path in plain.items():
        specs[name] = ModelSpec(name, _plain_kinds(path), path, path)
    for p in dirs:
        if not (p / MANIFEST).is_file() or p.name == BM25_HASHED:
            continue
        try:
            specs[p.name] = _from_manifest(p.name, p, json.loads((p / MANIFEST).read_text()), plain)
        except (OSError, ValueError) as exc:  # ValueError: bad JSON too
            problems[p.name] = str(exc)
    # Built-in inference-free entry over the default SPLADE model (IDF live from each collection),
    # unless the cache defines that name itself.
    auto_if = f"{DEFAULT_SPLADE}-inference-free"
    if DEFAULT_SPLADE in plain and auto_if not in specs and auto_if not in problems:
        specs[auto_if] = ModelSpec(auto_if, ("inference-free",), None, plain[DEFAULT_SPLADE], DEFAULT_SPLADE,
                                   description=f"inference-free: documents by {DEFAULT_SPLADE}, queries "
                                   "tokenised and weighted by the collection's live IDF (built in)")
    return specs, problems


def models() -> dict[str, ModelSpec]:
    return scan()[0]


def problems() -> dict[str, str]:
    return scan()[1]


def get(name: Any) -> ModelSpec | None:
    """The registered model of that name, or None (for anything that is not a name, too)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        return None
    return models().get(name)


# ---------------------------------------------------------------- building encoders
def build(spec: ModelSpec, role: str, *, progress: bool | None = False, device: str | None = None,
          dense_int8: bool = False, onnx_queries: bool = True, query_int8: bool = False) -> Any:
    """The encoder of ``spec`` for ``role`` ("sparse", "dense", "multivector"); ``query_int8``:
    dense and multivector queries through the int8 ONNX graph (TokenStates)."""
    if not spec.serves(role):
        raise RegistryError(f"model {spec.name!r} is a {spec.kind} model; it cannot serve as a {role} encoder")
    opts = dict(spec.options)
    weights = str(spec.weights) if spec.weights is not None else None
    if role == "dense":
        from encoders.dense import DenseEncoder
        return _named(DenseEncoder(weights, progress=progress, int8=dense_int8, fast_queries=onnx_queries,
                                   query_int8=query_int8, device=device, **opts), spec, "dense")
    if role == "multivector":
        from encoders.multivector import MultiVectorEncoder
        return _named(MultiVectorEncoder(weights, projection=spec.files.get("projection"), progress=progress,
                                         fast_queries=onnx_queries, query_int8=query_int8, device=device,
                                         **opts), spec, "multivector")
    kind = spec.kind
    if kind == "splade":
        from encoders.splade import SpladeEncoder
        vocab = spec.files.get("vocabulary")
        return _named(SpladeEncoder(weights, progress=progress, device=device, fast_queries=onnx_queries,
                                    vocabulary=str(vocab) if vocab else None, **opts), spec)
    if kind == "echo-splade":
        from encoders.echo_splade import EchoSpladeEncoder
        return _named(EchoSpladeEncoder(weights, progress=progress, device=device, **opts), spec)
    if kind == "inference-free":
        from encoders.inference_free import InferenceFreeEncoder
        idf = spec.files.get("idf")
        enc = InferenceFreeEncoder(weights, idf=idf, doc_model=weights, progress=progress, device=device, **opts)
        enc.live_idf = idf is None
        return _named(enc, spec)
    if kind == "csr":
        from encoders.csr import CSREncoder
        dense = None
        if spec.base is not None:
            dense = str(spec.weights)
        enc = CSREncoder.load(spec.files["checkpoint"], opts.get("k"), progress=progress,
                              dense_model=dense or _registered_dense(spec), device=device,
                              fast_queries=onnx_queries)
        return _named(enc, spec)
    raise RegistryError(f"model {spec.name!r} of kind {kind!r} has no encoder to build")


def _registered_dense(spec: ModelSpec) -> str:
    """The dense model a CSR checkpoint records, which must be a registered dense model (a
    checkpoint must not make the server load an arbitrary path)."""
    import torch
    meta = torch.load(spec.files["checkpoint"], map_location="cpu", weights_only=True).get("meta", {})
    recorded = str(meta.get("dense_model", DEFAULT_DENSE))
    for cand in (recorded, Path(recorded).name):
        dense = get(cand)
        if dense is not None and dense.serves("dense"):
            return str(dense.weights)
    raise RegistryError(f"CSR model {spec.name!r}: its checkpoint's dense model {Path(recorded).name!r} is "
                        "not a registered dense model; name one as \"base\" in lsr-model.json")


def _named(enc: Any, spec: ModelSpec, kind: str | None = None) -> Any:
    """The encoder answers to the registered name (logs and metrics name no server path)."""
    enc.name = spec.name
    enc.kind = kind or spec.kind
    return enc


def dimension(spec: ModelSpec) -> int | None:
    """The vector dimension without loading the model (None where that takes loading it)."""
    try:
        if spec.kind in ("splade", "echo-splade", "inference-free"):
            return int(json.loads((spec.weights / "config.json").read_text())["vocab_size"])
        if spec.kind == "csr":
            return _csr_hidden(spec.files["checkpoint"])
        if spec.kind in ("dense", "multivector"):
            if "projection" in spec.files:
                return None
            return int(json.loads((spec.weights / "config.json").read_text())["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


_CSR_DIMS: dict[tuple[str, float], int] = {}


def _csr_hidden(path: Path) -> int:
    key = (str(path), path.stat().st_mtime)
    if key not in _CSR_DIMS:
        import torch
        _CSR_DIMS[key] = int(torch.load(path, map_location="cpu", weights_only=True)["hidden"])
    return _CSR_DIMS[key]


def write_manifest(directory: str | Path, kind: str | list[str], *, base: str | None = None,
                   files: dict | None = None, options: dict | None = None, description: str = "") -> Path:
    """Write ``lsr-model.json`` into a model directory (what ``lsr train`` does), checked as
    the registry will read it."""
    directory = Path(directory)
    raw: dict[str, Any] = {"kind": kind}
    if base:
        raw["base"] = base
    if files:
        raw["files"] = files
    if options:
        raw["options"] = options
    if description:
        raw["description"] = description
    path = directory / MANIFEST
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(raw, indent=2) + "\n")
    tmp.replace(path)
    return path
