"""Peak memory of a call, for benchmarks and the chunked-pooling test (Linux /proc)."""

from __future__ import annotations

import resource
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_peak(fn: Callable[[], T]) -> tuple[T, float]:
    """Run ``fn``; return its result and how far RSS rose above the level before the call (MiB).

    Resets the kernel's high-water mark (``clear_refs`` 5, Linux >= 4.0) so earlier peaks do
    not hide this call's.
    """
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_mb("VmRSS")
    result = fn()
    return result, _status_mb("VmHWM") - before
