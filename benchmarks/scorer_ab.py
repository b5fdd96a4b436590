"""A/B of the native Seismic kernel's document scorers (``lsr_native.set_scorer``: "scalar",
"gather", "insert"; native/common.hpp) on one index in one process, alternating the order of the
modes from pass to pass. The modes return the same floats, so only time is compared.

    taskset -c 1 python -m benchmarks.scorer_ab --dataset synthetic-100k-flat --points 5/0.9,10/0.9

Synthetic queries come from query sample 1 of the generator, never the reported ones (SciFact
has only its test queries). Prints each pass's mean µs a query and each mode's median as a ratio
to the first mode's.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from indexer import SeismicIndex
from indexer.native import native_module

from .index import load_dataset, side_study_sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--passes", type=int, default=6)
    ap.add_argument("--points", default="3/0.9,5/0.9,8/0.9", help="query_cut/heap_factor,...")
    ap.add_argument("--modes", default=None, help="comma-separated; default: every mode this build has")
    args = ap.parse_args()
    module = native_module()
    if module is None or not hasattr(module, "set_scorer"):
        raise SystemExit("the native module is not built (make build)")
    modes = args.modes.split(",") if args.modes else module.scorers()
    points = [(int(a), float(b)) for a, b in (p.split("/") for p in args.points.split(","))]
    docs, queries, params = load_dataset(args.dataset, args.queries, side_study_sample(args.dataset))
    index = SeismicIndex.build(docs, **params)
    qs = [(queries[i].indices.astype(np.int32), queries[i].data.astype(np.float32))
          for i in range(queries.shape[0])]
    print(f"{args.dataset}: {docs.shape[0]} docs, {len(qs)} queries, load {os.getloadavg()[0]:.2f}")
    was = module.scorer()
    try:
        for qc, hf in points:
            times = {m: [] for m in modes}
            for p in range(args.passes):
                for mode in (modes if p % 2 == 0 else modes[::-1]):
                    module.set_scorer(mode)
                    t0 = time.perf_counter()
                    for terms, vals in qs:
                        index.search(terms, vals, k=10, query_cut=qc, heap_factor=hf)
                    times[mode].append((time.perf_counter() - t0) / len(qs) * 1e6)
            base = float(np.median(times[modes[0]]))
            print(f"query_cut {qc} heap_factor {hf}: "
                  + ", ".join(f"{m} {[round(t) for t in times[m]]} µs, median ratio "
                              f"{np.median(times[m]) / base:.3f}" for m in modes), flush=True)
    finally:
        module.set_scorer(was)
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
