"""Rewrite one marked section of BENCHMARKS.md, leaving the others untouched."""
from __future__ import annotations

import platform
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


def machine() -> str:
    import os
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores available, Python {platform.python_version()}, {platform.system()}"


def write_section(name: str, body: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(text)


def interpolate_latency(points: list[tuple[float, float]], target: float) -> float | None:
    """Latency at `target` recall on the lower-left Pareto frontier of (recall, latency) points,
    linear between the two frontier points that bracket it; None if the target is not reached."""
    pts = sorted(points, key=lambda p: (p[1], -p[0]))
    frontier, best = [], -1.0
    for r, lat in pts:  # by latency: keep points that improve recall
        if r > best:
            frontier.append((r, lat))
            best = r
    for (r0, l0), (r1, l1) in zip(frontier, frontier[1:]):
        if r0 <= target <= r1:
            return l0 if r1 == r0 else l0 + (l1 - l0) * (target - r0) / (r1 - r0)
    if frontier and frontier[0][0] >= target:
        return frontier[0][1]
    return None


def fmt(x, spec=".1f", none="n/a") -> str:
    return none if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)
