"""Where a request's time goes: wall time per pipeline stage, sent back as a Server-Timing
header (https://www.w3.org/TR/server-timing/) so that a client or a load test can split a
latency into query encoding, index search, fusion, reranking and result fetching."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager


class Timings:
    """Seconds per stage; a stage entered several times (one per list, lists possibly in
    parallel threads) adds up."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            with self._lock:
                self.stages[name] = self.stages.get(name, 0.0) + dt

    def header(self) -> str:
        return ", ".join(f"{name};dur={seconds * 1e3:.3f}" for name, seconds in self.stages.items())


class NoTimings(Timings):
    """For callers that do not ask (the CLI, evaluation): no clock reads."""

    @contextmanager
    def stage(self, name: str):
        yield


NO_TIMINGS = NoTimings()
