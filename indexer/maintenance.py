"""When a collection flushes and merges (the policy), and the thread that does it off the
request path (the maintainer).

A write returns once its WAL record is durable; sealing the write buffer into a segment (a
Seismic build) and merging segments take seconds to minutes, so they run in a background
thread per writable collection. Writes wait only for room: when the buffer already holds
`max_buffer_docs` rows — the maintainer is behind, typically inside a long merge while a flush
is also due — an upsert blocks until a flush has taken the buffer (back-pressure), and if
maintenance keeps failing (a full disk), it gets that error instead of waiting forever.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("lsr.indexer")

# Timing hooks: ``hook(event, collection, seconds)`` after each flush ("flush") and merge
# ("merge"), from the thread that did it. The service registers one that feeds Prometheus
# histograms (indexer/ never imports from service/); a failing hook is logged, never raised.
_timing_hooks: list = []
_hooks_lock = threading.Lock()


def add_timing_hook(hook) -> None:
    with _hooks_lock:
        _timing_hooks.append(hook)


def remove_timing_hook(hook) -> None:
    with _hooks_lock:
        if hook in _timing_hooks:
            _timing_hooks.remove(hook)


def report_timing(event: str, collection, seconds: float) -> None:
    with _hooks_lock:
        hooks = list(_timing_hooks)
    for hook in hooks:
        try:
            hook(event, collection, seconds)
        except Exception:  # noqa: BLE001 - metrics must not fail a flush or merge
            log.exception("timing hook %r failed on %s of %r", hook, event, getattr(collection, "name", "?"))


@dataclass(frozen=True)
class MaintenancePolicy:
    """flush_docs: seal the buffer at this many rows. max_buffer_docs: writes wait above it.
    max_segments, merge_small_docs, merge_deleted_fraction: see CollectionConfig."""
    flush_docs: int
    max_buffer_docs: int
    max_segments: int
    merge_small_docs: int
    merge_deleted_fraction: float

    @classmethod
    def from_config(cls, cfg) -> "MaintenancePolicy":
        return cls(cfg.flush_docs, cfg.max_buffer_docs, cfg.max_segments, cfg.merge_small_docs,
                   cfg.merge_deleted_fraction)

    def flush_due(self, buffered: int) -> bool:
        return buffered >= self.flush_docs

    def full(self, buffered: int) -> bool:
        return buffered >= self.max_buffer_docs

    def merge_due(self, live: list[int]) -> bool:
        """Merge when there are too many segments, or as soon as the small segments together
        hold merge_small_docs live documents — a 100k-document collection then searches a few
        large Seismic segments instead of many small exact ones."""
        if not self.max_segments:
            return False
        small = [n for n in live if n < self.merge_small_docs]
        return len(live) > self.max_segments or (len(small) >= 2 and sum(small) >= self.merge_small_docs)

    def merge_candidates(self, segments: list, force: bool) -> list:
        """The segments one merge rewrites: the small ones (when two or more) and those with
        many deleted rows, and, while that would still leave more than max_segments, the
        segments with the fewest live documents besides (the cheapest merge that brings the
        count back: without it, segments that each hold merge_small_docs left merge_due() true
        and nothing to merge); force: all of them (unless one clean segment is all there is)."""
        live = {s: int(np.count_nonzero(s.alive)) for s in segments}
        if force:
            if len(segments) == 1 and live[segments[0]] == segments[0].n_rows:
                return []
            return list(segments)
        dirty = {s for s in segments if s.n_rows and
                 (s.n_rows - live[s]) / s.n_rows >= self.merge_deleted_fraction}
        small = [s for s in segments if live[s] < self.merge_small_docs]
        chosen = {s for s in segments if s in dirty or (len(small) >= 2 and s in small)}
        if self.max_segments and len(segments) > self.max_segments:
            # merging m segments into one leaves len - m + 1
            missing = len(segments) - self.max_segments + 1 - len(chosen)
            if missing > 0:
                rest = sorted((s for s in segments if s not in chosen), key=lambda s: live[s])
                chosen.update(rest[:missing])
        return [s for s in segments if s in chosen]


class _Worker:
    """One background loop: wakes on notify() (or after a pause), runs `job(collection)`, keeps
    its last failure (logged once) until a run succeeds."""

    RETRY_SECONDS = 1.0
    IDLE_SECONDS = 5.0  # how often an idle thread checks whether its collection still exists

    def __init__(self, maintainer: "Maintainer", what: str, job):
        self.m, self.what, self.job = maintainer, what, job
        self.failure: BaseException | None = None
        self.busy = False
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"lsr-{what}-{maintainer.name}", daemon=True)

    def _run(self) -> None:
        while not self.m.stopped:
            self.wake.wait(self.RETRY_SECONDS if self.failure else self.IDLE_SECONDS)
            self.wake.clear()
            coll = self.m.collection()
            if self.m.stopped or coll is None:
                return
            self.busy = True
            try:
                self.job(coll)
                self.failure = None
            except Exception as exc:  # noqa: BLE001 - kept, logged and retried; writes report it
                if self.m.stopped:
                    return
                if self.failure is None:
                    log.error("collection %r: background %s failed (retrying every %.0f s): %s",
                              self.m.name, self.what, self.RETRY_SECONDS, exc)
                self.failure = exc
            finally:
                self.busy = False
                del coll


class Maintainer:
    """A collection's flushes and merges, in two background threads: a merge can take minutes,
    and flushes must go on meanwhile, or the buffer would fill and writes stall behind it.

    The collection calls notify() after each write; the flusher seals the buffer when the
    policy says so and then wakes the merger, which merges while a merge is due. Failures (a
    full disk, say) are logged, kept — the flusher's for wait_for_room() to report — and
    retried after a pause. Threads hold only a weak reference to the collection: one dropped
    without close() does not live on in them."""

    def __init__(self, coll, policy: MaintenancePolicy):
        self.collection = weakref.ref(coll)
        self.name = coll.name
        self.policy = policy
        self.stopped = False
        self._flusher = _Worker(self, "flush", self._flush)
        self._merger = _Worker(self, "merge", self._merge)
        for w in (self._flusher, self._merger):
            w.thread.start()

    @property
    def failure(self) -> BaseException | None:
        """The flusher's last error: what keeps the buffer full (a merge failing does not)."""
        return self._flusher.failure

    def notify(self) -> None:
        self._flusher.wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the flush in progress; a merge in progress is abandoned at its next
        field (the segments it would have replaced stay). The caller must not hold the locks."""
        self.stopped = True
        for w in (self._flusher, self._merger):
            w.wake.set()
            if threading.current_thread() is not w.thread:
                w.thread.join(timeout)

    def _flush(self, coll) -> None:
        if self.policy.flush_due(coll.buffered_rows()) or coll.sealing_pending():
            coll.flush()
        if self.policy.merge_due(coll.live_per_segment()):
            self._merger.wake.set()

    def _merge(self, coll) -> None:
        while not self.stopped and self.policy.merge_due(coll.live_per_segment()):
            if not coll.merge(cancelled=lambda: self.stopped):
                break

    def due(self) -> bool:
        """Whether a flush or merge is due or running."""
        coll = self.collection()
        return coll is not None and (
            self._flusher.busy or self._merger.busy or self.policy.flush_due(coll.buffered_rows())
            or coll.sealing_pending() or self.policy.merge_due(coll.live_per_segment()))

    def wait_idle(self, timeout: float) -> None:
        """Block until nothing is due (bulk loads, tests, benchmarks). After timeout: the
        maintenance error if it is still failing, else TimeoutError."""
        deadline = time.monotonic() + timeout
        while self.due():
            failure = self._flusher.failure or self._merger.failure
            if time.monotonic() > deadline:
                if failure is not None:
                    raise failure
                raise TimeoutError(f"collection {self.name!r}: maintenance still busy after {timeout} s")
            if failure is None:
                self.notify()  # (a failing one retries on its own schedule)
                self._merger.wake.set()
            time.sleep(0.01)
