"""Flat combining: concurrent callers' requests run together as one batch.

A caller queues its request, then whoever holds the run lock executes every queued request in
one ``run_batch`` call and hands each caller its own result. A lone caller runs its request at
once (no timer, no extra thread); under load, requests that arrive while a batch runs are served
by the next batch. When a batch fails, its requests are rerun one at a time, so only the
caller of a bad request sees an error. Used for flat dense scans, where one
[batch × dim] @ [dim × rows] product reads the vectors once for every query instead of once per
query — and where many concurrent multithreaded BLAS calls would otherwise fight over the
cores — and for query encoding in the service (one forward pass per batch).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class _Slot:
    __slots__ = ("request", "result", "error", "done")

    def __init__(self, request: Any):
        self.request = request
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False


class Combiner:
    """``submit(request)`` returns ``run_batch([..., request, ...])[its position]``."""

    def __init__(self, run_batch: Callable[[list], list], max_batch: int = 64,
                 on_batch: Callable[[int], None] | None = None):
        """``on_batch(size)`` is called before each batch runs (e.g. to record batch sizes)."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._run_batch = run_batch
        self.max_batch = max_batch
        self._on_batch = on_batch
        self._queue: list[_Slot] = []
        self._queue_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self.batches = 0  # batches run so far (a statistic, for tests and metrics)

    def submit(self, request: Any) -> Any:
        slot = _Slot(request)
        with self._queue_lock:
            self._queue.append(slot)
        while not slot.done:
            with self._run_lock:
                if not slot.done:
                    self._run_queued()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _run_queued(self) -> None:
        with self._queue_lock:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
        if not batch:
            return
        self.batches += 1
        try:
            if self._on_batch is not None:
                self._on_batch(len(batch))
            self._settle(batch, isolate=len(batch) > 1)
        except BaseException as exc:  # KeyboardInterrupt and the like: every waiting caller sees it
            for s in batch:
                if not s.done:
                    s.error, s.done = exc, True
            raise

    def _settle(self, batch: list[_Slot], isolate: bool) -> None:
        """Run ``batch``; record each result, or the exception in every slot. With ``isolate``
        a failed batch is rerun one request at a time, so that one bad request does not fail
        the others that happened to share its batch."""
        try:
            results = self._run_batch([s.request for s in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} requests")
        except Exception as exc:
            if isolate:
                for s in batch:
                    self._settle([s], isolate=False)
                return
            for s in batch:
                s.error, s.done = exc, True
            return
        for s, r in zip(batch, results):
            s.result, s.done = r, True
