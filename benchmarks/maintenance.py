"""Upsert latency while a large merge runs: maintenance in the background vs. inline.

    python -m benchmarks.maintenance [--docs 50000] [--writes 300]

Both arms start from the same collection (five segments of docs/5 synthetic SPLADE-like
documents, precomputed vectors) and then write single documents, each durable (WAL fsync), one
after another, and time every call:
- background (today's default): a merge of every segment into one runs in the maintainer's
  thread meanwhile;
- inline (maintenance=False, the behaviour before the maintainer): the write that crosses
  flush_docs seals the buffer and, since that makes one segment too many, merges all of them
  inside the upsert call.
Results: the section "maintenance" of BENCHMARKS.md and bench-out/maintenance.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from indexer.collection import Collection

from .report import ROOT, machine, write_section
from .synthetic import SyntheticSplade

PARAMS = dict(n_postings=1000, centroid_fraction=0.1, summary_energy=0.4)


def build(data_dir: Path, docs, flush_docs: int) -> None:
    """Five segments; a sixth (the next flush) is one more than max_segments: a merge of all."""
    n = docs.shape[0]
    fields = {"sparse": {"kind": "sparse", "dim": docs.shape[1], "params": PARAMS}}
    with Collection.create(data_dir, "c", fields, flush_docs=flush_docs, max_segments=5,
                           merge_small_docs=10**9, maintenance=False) as c:
        for a in range(0, n, n // 5):
            rows = range(a, min(n, a + n // 5))
            c.upsert([f"d{i}" for i in rows], docs[a:a + len(rows)])  # flushes: one segment each


def timed_writes(coll, extra, writes: int, until=None) -> list[float]:
    """Seconds per single-document upsert; at least `writes` of them, and while until() holds."""
    out, i = [], 0
    while i < writes or (until is not None and until()):
        t0 = time.perf_counter()
        coll.upsert([f"new-{i}"], extra[i % extra.shape[0]])
        out.append(time.perf_counter() - t0)
        i += 1
    return out


def background(data_dir: Path, extra, writes: int) -> tuple[list[float], float]:
    with Collection.open(data_dir, "c") as coll:
        merging = threading.Thread(target=coll.merge, kwargs={"force": True})
        t0 = time.perf_counter()
        merging.start()
        lat = timed_writes(coll, extra, writes, until=merging.is_alive)
        merging.join()
        return lat, time.perf_counter() - t0


def inline(data_dir: Path, extra, writes: int) -> tuple[list[float], float]:
    # the write half-way through (flush_docs) seals a sixth segment and merges all six inside
    # that upsert call
    with Collection.open(data_dir, "c", maintenance=False) as coll:
        t0 = time.perf_counter()
        lat = timed_writes(coll, extra, writes)
        return lat, time.perf_counter() - t0


def summary(lat: list[float]) -> dict:
    ms = np.asarray(lat) * 1e3
    return {"writes": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=50_000)
    ap.add_argument("--writes", type=int, default=300)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    gen = SyntheticSplade(seed=7)
    docs, extra = gen.documents(args.docs, mean_nnz=60), gen.documents(64, mean_nnz=60)
    tmp = Path(tempfile.mkdtemp(prefix="lsr-maint-"))
    try:
        build(tmp / "base", docs, flush_docs=args.writes // 2)
        arms = {}
        for name, run in (("background", background), ("inline", inline)):
            d = tmp / name
            shutil.copytree(tmp / "base", d)
            lat, elapsed = run(d, extra, args.writes)
            arms[name] = {**summary(lat), "seconds": elapsed}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0]
    out = ROOT / "bench-out"
    out.mkdir(exist_ok=True)
    (out / "maintenance.json").write_text(json.dumps({"docs": args.docs, "arms": arms, "load": load}, indent=1))
    rows = "\n".join(f"| {k} | {a['writes']} | {a['p50_ms']:.1f} | {a['p99_ms']:.1f} | {a['max_ms']:,.0f} | "
                     f"{a['seconds']:.1f} |" for k, a in arms.items())
    body = f"""## Upserts during a merge (maintenance off the request path)

`python -m benchmarks.maintenance --docs {args.docs} --writes {args.writes}` — {machine()}; load
average {load:.2f} at the end. Five segments of {args.docs // 5:,} synthetic SPLADE-like documents are
merged into one Seismic segment while single documents are upserted one after another (each
durable: WAL fsync). *background*: the merge runs in the maintainer's thread (the default
since the serving-engine change); *inline*: `maintenance=False`, the write that seals a sixth
segment merges all of them inside its own call, as every upsert could before.

| arm | writes | p50 ms | p99 ms | max ms | seconds |
|---|---:|---:|---:|---:|---:|
{rows}
"""
    print(body)
    if not args.no_write:
        write_section("maintenance", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
