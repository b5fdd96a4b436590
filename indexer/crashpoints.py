"""Crash-point injection for the crash tests: end the process at the N-th durable step.

Every durable step of the indexer (a write, an fsync, a rename, a removal) calls step(name).
When armed to crash at step N — by LSR_CRASH_AT=N in the environment at import, or by arm(N)
in a forked test child — the N-th call ends the process at once with os._exit(EXIT_CODE): no
cleanup, no finally blocks, no flush of Python buffers. Files already written stay in the page
cache, so this models a process crash (SIGKILL), not a power cut.

Unarmed, step() is one comparison of a global int. A test finds every crash point by arming
N = 1, 2, ... until a run finishes without crashing: that run took count() < N steps.
"""
from __future__ import annotations

import os

EXIT_CODE = 86

_crash_at = int(os.environ.get("LSR_CRASH_AT") or 0)  # 0: unarmed
_count = 0


def arm(at: int) -> None:
    """Crash at the at-th step from now (0 disarms); restarts the count."""
    global _crash_at, _count
    _crash_at, _count = at, 0


def count() -> int:
    """Steps taken since arming (not counted while unarmed)."""
    return _count


def step(name: str) -> None:
    """A durable step has just happened: crash here if this is the armed one. The step's name
    goes to stderr first, so a test can say where a crash left a bad state."""
    global _count
    if _crash_at:
        _count += 1
        if _count == _crash_at:
            os.write(2, f"crash point {_count}: {name}\n".encode())
            os._exit(EXIT_CODE)
