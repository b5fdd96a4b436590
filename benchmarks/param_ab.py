"""A/B of one Seismic build parameter in one process.

    python -m benchmarks.param_ab --dataset synthetic-100k --param forward_layout --values records,arrays
    python -m benchmarks.param_ab --dataset synthetic-100k-flat --param cluster_rounds --values 0,1,2 --seed 7

Builds one index a value from the same vectors and parameters (benchmarks.index), then times
them grid point by grid point, alternating (benchmarks.index.interleaved_grid), and prints per
value the build CPU, the bytes by part and the mean latency at recall 0.90 / 0.95 / 0.98 /
0.99 and p99 at 0.95 on each one's frontier. Synthetic queries come from query sample 1, never
the reported sample 0: this is how defaults are chosen. Run it pinned to one core
(`taskset -c 1`); ratios, not absolute times, carry from one run to another.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from .index import interleaved_grid, load_dataset, side_study_sample
from .report import interpolate_latency


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def main(argv=None, param: str | None = None, values: str | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="synthetic-100k")
    ap.add_argument("--param", default=param, required=param is None, help="a SeismicParams field")
    ap.add_argument("--values", default=values, required=values is None, help="its values, comma-separated")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42, help="centroid sampling seed of every build")
    args = ap.parse_args(argv)
    from indexer import ExactIndex, SeismicIndex

    settings = [_value(v) for v in args.values.split(",")]
    docs, queries, params = load_dataset(args.dataset, args.queries, side_study_sample(args.dataset))
    for v in settings:  # compile the build's Numba functions outside the timed builds
        SeismicIndex.build(docs[:2000], **{**params, args.param: v})
    exact = ExactIndex.build(docs)
    gt = [set(exact.search(q.indices.astype(np.int32), q.data.astype(np.float32), k=10)[0].tolist())
          for q in queries]
    qs = [(q.indices.astype(np.int32), q.data.astype(np.float32)) for q in queries]
    systems = {}
    for v in settings:
        c0 = time.process_time()
        idx = SeismicIndex.build(docs, **{**params, "seed": args.seed, args.param: v})
        space = {k: round(x / 1e6, 1) for k, x in idx.space_usage().items()}
        print(f"{args.param}={v}: build {time.process_time() - c0:.1f} CPU s, MB {space}", flush=True)
        systems[f"{args.param}={v}"] = (
            lambda qi, qv, k, qc, hf, idx=idx: idx.search(qi, qv, k=k, query_cut=qc, heap_factor=hf)[0].tolist(),
            qs)
    rows = interleaved_grid(systems, gt, args.repeats, grid_qc=(2, 3, 5, 8, 10, 15), grid_hf=(0.7, 0.8, 0.9, 1.0))
    for name, rs in rows.items():
        mean = [(x["recall"], x["mean_us"]) for x in rs]
        p99 = interpolate_latency([(x["recall"], x["p99_us"]) for x in rs], 0.95)
        lat = " ".join(f"R{t}: {interpolate_latency(mean, t) or float('nan'):.0f}" for t in (0.90, 0.95, 0.98, 0.99))
        print(f"{name}: mean µs {lat}; p99 @R0.95 {p99 or float('nan'):.0f}; max recall "
              f"{max(x['recall'] for x in rs):.4f}", flush=True)


if __name__ == "__main__":
    main()
