"""Dense query encoding, side by side: PyTorch vs the ONNX Runtime graphs of ``DenseEncoder(int8=True)``.

    python -m benchmarks.query_encoding <beir-folder> [--lone 100] [--repeats 3] [--threads 2]

Arms, on the split's judged queries (SciFact test: 300 claims):

- torch: ``DenseEncoder()`` (Hugging Face ``AutoModel`` in eager PyTorch);
- onnx fp32: ``DenseEncoder(int8=True).encode_queries`` — the fused float32 graph;
- onnx int8: the same encoder's int8 graph on queries (what documents use; reference only).

"lone" encodes the first ``--lone`` queries one call each (a search request with no other
queries to batch with: median latency), "batch 32" all of them in batches of 32 (queries/s).
Arms alternate for ``--repeats`` rounds and keep their best, so load hits every arm alike.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from encoders.beir import BeirDataset
from encoders.dense import DenseEncoder
from encoders.models import DEFAULT_DENSE

from .report import machine


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.query_encoding", description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--split", default="test")
    ap.add_argument("--lone", type=int, default=100, help="queries encoded one call each")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    queries = BeirDataset.load(args.folder, args.split).query_texts
    exact = DenseEncoder(DEFAULT_DENSE, progress=False)
    fast = DenseEncoder(DEFAULT_DENSE, progress=False, int8=True)
    arms = {
        "torch": exact.encode_queries,
        "onnx fp32": fast.encode_queries,
        "onnx int8": lambda texts, batch_size=32: fast._encode(texts, batch_size, "queries", True),
    }
    lone_ms = {name: float("inf") for name in arms}
    batch_qps = {name: 0.0 for name in arms}
    vectors = {}
    for _ in range(args.repeats):
        for name, encode in arms.items():
            times = []
            for q in queries[:args.lone]:
                t0 = time.perf_counter()
                encode([q])
                times.append(time.perf_counter() - t0)
            lone_ms[name] = min(lone_ms[name], 1e3 * statistics.median(times))
            t0 = time.perf_counter()
            vectors[name] = encode(queries, 32)
            batch_qps[name] = max(batch_qps[name], len(queries) / (time.perf_counter() - t0))

    print(f"{len(queries)} {args.split} queries, {args.threads} threads, best of {args.repeats} "
          f"alternating rounds; {machine()}.\n")
    print("| arm | lone query, median ms | × torch | batch 32, queries/s | × torch | max abs diff vs torch |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in arms:
        diff = float(np.abs(vectors[name] - vectors["torch"]).max())
        print(f"| {name} | {lone_ms[name]:.1f} | {lone_ms['torch'] / lone_ms[name]:.2f} | "
              f"{batch_qps[name]:.0f} | {batch_qps[name] / batch_qps['torch']:.2f} | {diff:.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
