"""Concurrent requests' queries are encoded together: one forward pass per encoder and batch.

Under load a search service receives many short queries at once. Encoding each alone costs a
model call per request, and dozens of concurrent calls, each with its own intra-op thread team,
oversubscribe the cores. Flat combining (indexer/combining.py) turns them into one padded batch
per encoder while a lone request still runs at once. A query's vector may differ from its
alone-encoded one in the last float bits (padding changes the summation order), never more.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from indexer.combining import Combiner


class QueryBatcher:
    """``on_batch(encoder, size)`` is told each batch's size, ``on_encode(encoder, "queries",
    size, seconds)`` each forward pass's time (the service feeds histograms)."""

    def __init__(self, max_batch: int = 32,
                 on_batch: Callable[[Any, int], None] | None = None,
                 on_encode: Callable[[Any, str, int, float], None] | None = None):
        self.max_batch = max_batch
        self.on_batch = on_batch
        self.on_encode = on_encode
        self._lock = threading.Lock()
        self._combiners: dict[int, tuple[Any, Combiner]] = {}

    def encode(self, encoder: Any, query: str) -> Any:
        """``encoder.encode_queries([query])[0]``, batched with concurrent calls."""
        return self._combiner(encoder).submit(query)

    def _combiner(self, encoder: Any) -> Combiner:
        key = id(encoder)
        with self._lock:
            entry = self._combiners.get(key)
            if entry is None or entry[0] is not encoder:
                def run(queries: list[str], enc=encoder) -> list:
                    t0 = time.perf_counter()
                    out = enc.encode_queries(queries)
                    if self.on_encode is not None:
                        self.on_encode(enc, "queries", len(queries), time.perf_counter() - t0)
                    return [out[i] for i in range(len(queries))]
                hook = None if self.on_batch is None else (lambda n, enc=encoder: self.on_batch(enc, n))
                entry = (encoder, Combiner(run, self.max_batch, hook))
                self._combiners[key] = entry
            return entry[1]
