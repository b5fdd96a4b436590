"""Seismic build with 1 and with 2 threads: wall and CPU seconds, peak RSS, same index.

    python -m benchmarks.build_threads --dataset synthetic-100k --threads 1,2

Each build runs in a fresh process (benchmarks.index.in_subprocess, so its peak RSS is its own)
with Numba's thread count set before it starts; the parameters are benchmarks.index's. The
builds of one dataset must produce the same arrays whatever the thread count (the build is
deterministic): the script compares them and fails if they differ. Run it on an otherwise idle
machine with as many cores as the largest thread count.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from .index import build_lsr, in_subprocess, load_dataset


def build_with_threads(docs, spec, path, out):
    import numba
    threads, params = spec
    numba.set_num_threads(threads)
    build_lsr(docs, params, path, out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="synthetic-100k")
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args(argv)
    from indexer import SeismicIndex
    docs, _, params = load_dataset(args.dataset, 1)
    counts = [int(x) for x in args.threads.split(",")]
    if max(counts) > len(os.sched_getaffinity(0)):
        raise SystemExit(f"--threads {max(counts)} needs that many cores; this process may use "
                         f"{len(os.sched_getaffinity(0))}")
    with tempfile.TemporaryDirectory(prefix="lsr-build-threads-") as tmp:
        rows, first = [], None
        for n in counts:
            path = Path(tmp) / f"t{n}"
            out = in_subprocess(build_with_threads, docs, (n, params), path)
            idx = SeismicIndex.load(path, mmap=True)
            if first is None:
                first = idx
            else:
                for name, arr in first.arrays.items():
                    if not np.array_equal(np.asarray(idx.arrays[name]), np.asarray(arr)):
                        raise SystemExit(f"{n} threads built a different {name!r} than {counts[0]}")
            rows.append((n, out["build_s"], out["build_cpu_s"], out["peak_rss_mb"]))
    print(f"{args.dataset}: {docs.shape[0]} documents, params {params}, load {os.getloadavg()[0]:.1f}")
    print("| threads | build wall s | build CPU s | peak RSS MB | wall vs 1 thread |")
    print("|---:|---:|---:|---:|---:|")
    for n, wall, cpu, rss in rows:
        print(f"| {n} | {wall:.1f} | {cpu:.1f} | {rss:.0f} | {wall / rows[0][1]:.2f} |")


if __name__ == "__main__":
    main()
