"""Encoders are loaded once per process and shared by every collection, request and job.

Clients name models, never paths: a name is a directory of the models cache
(``LSR_MODELS_DIR``, filled by ``python -m encoders.fetch_models``). Anything else — an
absolute path, ``..``, a hub name that is not cached — is an unknown model, and the answer
neither names the server's directories nor tells which server paths exist.
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Any

from encoders.models import models_dir, resolve

from .errors import BadRequest

log = logging.getLogger("lsr.service")
# one path component, or "org/name" as a hub name that the cache holds flattened
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,127})?$")


class EncoderLoadError(BadRequest):
    """A model name that is not a registered (cached) model, or that fails to load."""


def available_models() -> list[str]:
    root = models_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())


def check_model_name(name) -> str:
    """The cache directory of a registered model; EncoderLoadError (400) for anything else."""
    if isinstance(name, str) and _MODEL_NAME_RE.fullmatch(name) and ".." not in name:
        where = resolve(name)
        # resolve() answers a cache directory, or the name itself when the cache has none
        # (including when the name happens to exist relative to the working directory)
        if where != name:
            return where
    raise EncoderLoadError(f"unknown model {name!r}; models on this server: {available_models()}")


_LOAD_LOCK = threading.Lock()


class EncoderCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], Any] = {}   # (kind, name asked) -> encoder
        self._by_dir: dict[tuple[str, str], Any] = {}  # (kind, model directory) -> encoder
        # process-wide, from Settings: dense documents through the int8 ONNX graph; dense and
        # multivector queries through the float32 ONNX graph
        self.dense_int8 = False
        self.onnx_queries = True

    def _get(self, kind: str, name: str, factory) -> Any:
        key = (kind, name)
        with self._lock:
            if key in self._items:
                return self._items[key]
        # before any state is kept for the name: unknown names must not grow the cache
        where = check_model_name(name)
        # One load at a time in the whole process (which also makes it one per model directory,
        # whatever name it is asked by): transformers' from_pretrained builds a model on the
        # "meta" device through process-wide patches of torch, so two loads at once (a hybrid
        # search's lists load their encoders in parallel) can leave weights on "meta".
        with _LOAD_LOCK:
            with self._lock:
                enc = self._by_dir.get((kind, where))
            if enc is None:
                try:
                    enc = factory(name)
                except (OSError, ValueError) as exc:  # the details name server paths: log them only
                    what = kind.split("-")[0]  # the variant suffixes are not the client's business
                    log.error("cannot load %s encoder %r: %s", kind, name, exc)
                    raise EncoderLoadError(f"model {name!r} cannot be loaded as a {what} encoder "
                                           "(see the server log)") from exc
            with self._lock:
                self._by_dir[(kind, where)] = self._items[key] = enc
            return enc

    def sparse(self, name: str):
        from encoders.splade import SpladeEncoder
        return self._get("sparse", name, lambda n: SpladeEncoder(n, progress=False))

    def dense(self, name: str):
        from encoders.dense import DenseEncoder
        int8, fast = self.dense_int8, self.onnx_queries
        return self._get(f"dense{'-int8' * int8}{'-onnx' * fast}", name,
                         lambda n: DenseEncoder(n, progress=False, int8=int8, fast_queries=fast))

    def multivector(self, name: str):
        from encoders.multivector import MultiVectorEncoder
        fast = self.onnx_queries
        return self._get(f"multivector{'-onnx' * fast}", name,
                         lambda n: MultiVectorEncoder(n, progress=False, fast_queries=fast))

    def loaded(self) -> list[str]:
        """kind:name of every loaded model, by the names clients used (not server paths)."""
        with self._lock:
            return [f"{k.removesuffix('-onnx')}:{n}" for k, n in self._items]  # the query runtime is no kind


# Models are large and immutable: every app in the process shares them.
ENCODERS = EncoderCache()
