"""Encoders are loaded once per process and shared by every collection, request and job."""
from __future__ import annotations

import threading
from typing import Any


class EncoderLoadError(ValueError):
    """A model name that resolves to no loadable model."""


class EncoderCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], Any] = {}
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        # process-wide, from Settings.dense_int8: dense models run in ONNX Runtime (int8 documents)
        self.dense_int8 = False

    def _get(self, kind: str, name: str, factory) -> Any:
        key = (kind, name)
        with self._lock:
            if key in self._items:
                return self._items[key]
            slot = self._loading.setdefault(key, threading.Lock())
        with slot:  # one load per model even when many requests ask at once
            with self._lock:
                if key in self._items:
                    return self._items[key]
            try:
                enc = factory(name)
            except (OSError, ValueError) as exc:
                raise EncoderLoadError(f"cannot load {kind} encoder {name!r}: {exc}") from exc
            with self._lock:
                self._items[key] = enc
            return enc

    def sparse(self, name: str):
        from encoders.splade import SpladeEncoder
        return self._get("sparse", name, lambda n: SpladeEncoder(n, progress=False))

    def dense(self, name: str):
        from encoders.dense import DenseEncoder
        int8 = self.dense_int8
        return self._get("dense-int8" if int8 else "dense", name,
                         lambda n: DenseEncoder(n, progress=False, int8=int8))

    def multivector(self, name: str):
        from encoders.multivector import MultiVectorEncoder
        return self._get("multivector", name, lambda n: MultiVectorEncoder(n, progress=False))

    def loaded(self) -> list[str]:
        with self._lock:
            return [f"{k}:{n}" for k, n in self._items]


# Models are large and immutable: every app in the process shares them.
ENCODERS = EncoderCache()
