"""Query hidden states shared by every encoder over the same model.

A collection's dense and multivector encoders are usually the same MiniLM: the dense vector is
the mean of its last hidden states, the multivector the states themselves. A reranked hybrid
search encodes its query for both, at nearly the same time on two threads; without sharing the
model runs twice over the same text (~9 ms of CPU per search on 2 cores, BENCHMARKS.md
"Stored token vectors"). ``QueryStates`` runs it once: the first caller of a text computes its
states and every concurrent or later caller of the same text (until it ages out of a small LRU)
waits for and reuses them. The ONNX query graph is shared too, so it is loaded once per process.

Entries are keyed by (model path, max length, device, runtime): two encoders share states only
when they would compute the same ones. States are unpadded float32 [n_tokens, hidden] tensors,
read-only by convention (callers derive new tensors from them).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

import torch

# Bounded by entries and by tokens: MiniLM states are 1.5 KB per token, so 16k tokens ~ 25 MB.
MAX_ENTRIES = 256
MAX_TOKENS = 16_384


class QueryStates:
    """An LRU of per-text futures of hidden states, with in-flight deduplication."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_tokens: int = MAX_TOKENS):
        self.max_entries = max_entries
        self.max_tokens = max_tokens
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Future] = OrderedDict()
        self._tokens: dict[str, int] = {}  # done entries' token counts
        self._total = 0
        self.model = None  # the shared query model, set by the first TokenStates to load it
        self.model_lock = threading.Lock()
        self.computed = 0  # texts run through the model (tests and metrics read it)
        self.reused = 0

    def get(self, texts: list[str], compute: Callable[[list[str]], list[torch.Tensor]]) -> list[torch.Tensor]:
        """States of each text; ``compute`` runs (once, in this thread) for those that no other
        caller has computed or is computing."""
        futures: list[Future] = []
        mine: dict[str, Future] = {}
        with self._lock:
            for t in texts:
                f = self._entries.get(t)
                if f is None:
                    f = mine.get(t)
                    if f is None:
                        f = mine[t] = Future()
                        self._entries[t] = f
                else:
                    self._entries.move_to_end(t)
                    self.reused += 1
                futures.append(f)
            self.computed += len(mine)
        if mine:
            order = list(mine)
            try:
                states = compute(order)
            except BaseException as exc:
                with self._lock:
                    for t, f in mine.items():
                        if self._entries.get(t) is f:
                            del self._entries[t]
                for f in mine.values():
                    f.set_exception(exc)
                raise
            for t, s in zip(order, states):
                mine[t].set_result(s)
            with self._lock:
                for t, s in zip(order, states):
                    if self._entries.get(t) is mine[t] and t not in self._tokens:
                        self._tokens[t] = int(s.shape[0])
                        self._total += int(s.shape[0])
                self._evict()
        return [f.result() for f in futures]

    def _evict(self) -> None:
        # oldest first; an in-flight entry may go too (its waiters hold its future)
        while self._entries and (len(self._entries) > self.max_entries or self._total > self.max_tokens):
            t, _ = self._entries.popitem(last=False)
            self._total -= self._tokens.pop(t, 0)

    def clear(self) -> None:
        """Forget every entry (benchmarks time cold queries; callers in flight keep theirs)."""
        with self._lock:
            self._entries.clear()
            self._tokens.clear()
            self._total = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


_SHARED: dict[tuple, QueryStates] = {}
_SHARED_LOCK = threading.Lock()


def shared(key: tuple) -> QueryStates:
    """The process's QueryStates for one (path, max length, device, runtime)."""
    with _SHARED_LOCK:
        qs = _SHARED.get(key)
        if qs is None:
            qs = _SHARED[key] = QueryStates()
        return qs
