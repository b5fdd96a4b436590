"""Encoders are loaded once per process and shared by every collection, request and job.

Clients name models, never paths: a name is a model of the registry (encoders/registry.py:
the models cache ``LSR_MODELS_DIR``, filled by ``python -m encoders.fetch_models``, plus the
built-in entries). Anything else — an absolute path, ``..``, a hub name that is not cached — is
an unknown model, and the answer neither names the server's directories nor tells which server
paths exist. Every torch encoder is placed on the process's device (``LSR_DEVICE``).
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from encoders import registry
from encoders.registry import ModelSpec, RegistryError

from .errors import BadRequest

log = logging.getLogger("lsr.service")
ROLES = ("sparse", "dense", "multivector")


class EncoderLoadError(BadRequest):
    """A model name that is not a registered (cached) model, or that fails to load."""


def available_models() -> list[str]:
    """The registered models that encode text (/v1/models; the built-in BM25 is a field)."""
    return sorted(n for n, spec in registry.models().items() if spec.kind != "bm25")


def check_model_name(name) -> ModelSpec:
    """The registered model of that name; EncoderLoadError (400) for anything else."""
    spec = registry.get(name)
    if spec is not None:
        return spec
    raise EncoderLoadError(f"unknown model {name!r}; models on this server: {available_models()}")


_LOAD_LOCK = threading.Lock()


class EncoderCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], Any] = {}   # (variant, name asked) -> encoder
        self._specs: dict[str, ModelSpec] = {}         # name -> its spec when first loaded
        self._by_key: dict[tuple[str, str], Any] = {}  # (variant, spec key) -> encoder
        # process-wide, from Settings: dense documents through the int8 ONNX graph; dense and
        # multivector queries through the float32 ONNX graph (or its int8 graph: query_int8);
        # where torch encoders run
        self.dense_int8 = False
        self.onnx_queries = True
        self.query_int8 = False
        self.device: str | None = None  # None: encoders.device's process default

    def _get(self, role: str, name: str) -> Any:
        variant = self._variant(role)
        key = (variant, name)
        with self._lock:
            if key in self._items:
                return self._items[key]
        # before any state is kept for the name: unknown names must not grow the cache
        spec = check_model_name(name)
        if not spec.serves(role):
            raise EncoderLoadError(f"model {name!r} is a {spec.kind} model; it cannot serve as a {role} "
                                   f"encoder ({self._role_help(role)})")
        # One load at a time in the whole process (which also makes it one per model, whatever
        # name it is asked by): transformers' from_pretrained builds a model on the "meta"
        # device through process-wide patches of torch, so two loads at once (a hybrid search's
        # lists load their encoders in parallel) can leave weights on "meta".
        with _LOAD_LOCK:
            with self._lock:
                enc = self._by_key.get((variant, spec.key()))
            if enc is None:
                try:
                    enc = registry.build(spec, role, progress=False, device=self.device,
                                         dense_int8=self.dense_int8, onnx_queries=self.onnx_queries,
                                         query_int8=self.query_int8)
                except (OSError, ValueError, RegistryError) as exc:  # details name server paths: log only
                    log.error("cannot load %s encoder %r: %s", role, name, exc)
                    raise EncoderLoadError(f"model {name!r} cannot be loaded as a {role} encoder "
                                           "(see the server log)") from exc
            with self._lock:
                self._by_key[(variant, spec.key())] = self._items[key] = enc
                self._specs[name] = spec
            return enc

    def _variant(self, role: str) -> str:
        queries = "-onnx" * self.onnx_queries + "-int8q" * self.query_int8
        if role == "dense":
            return f"dense{'-int8' * self.dense_int8}{queries}"
        if role == "multivector":
            return f"{role}{queries}"
        if role == "sparse":  # (a sparse kind without a query model ignores it; SPLADE's stay float32)
            return f"{role}{'-onnx' * self.onnx_queries}"
        return role

    @staticmethod
    def _role_help(role: str) -> str:
        if role == "sparse":
            return f"a sparse encoder is one of the kinds {list(registry.SPARSE_KINDS)}; BM25 is the bm25 field"
        return f"a {role} encoder is a model of kind {role}"

    def sparse(self, name: str):
        """A collection's learned sparse encoder: any registered model of a sparse kind
        (splade, echo-splade, inference-free, csr)."""
        return self._get("sparse", name)

    def dense(self, name: str):
        return self._get("dense", name)

    def multivector(self, name: str):
        return self._get("multivector", name)

    def spec(self, name: str) -> ModelSpec:
        """The registry entry of a model (as loaded, once it is: a model's kind cannot change
        under a running server)."""
        with self._lock:
            spec = self._specs.get(name)
        return spec if spec is not None else check_model_name(name)

    def loaded_encoder(self, role: str, name: str) -> Any | None:
        """The encoder if it is loaded, else None (never loads)."""
        with self._lock:
            return self._items.get((self._variant(role), name))

    def loaded(self) -> list[str]:
        """kind:name of every loaded model, by the names clients used (not server paths)."""
        with self._lock:
            return [f"{k.removesuffix('-onnx')}:{n}" for k, n in self._items]  # the query runtime is no kind


# Models are large and immutable: every app in the process shares them.
ENCODERS = EncoderCache()
