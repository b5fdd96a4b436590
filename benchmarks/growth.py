"""The serving engine's growth curve: one service at 10k, 100k and 1M passages.

    python -m benchmarks.growth --beir ../shared/data/scifact [--sizes 10000 100000 1000000]
                                [--data-root DIR] [--seconds 10] [--write]

10k and 100k: passages of the BEIR folder (benchmarks.service.passages), indexed through the
service's own path with the default encoders (SPLADE-tiny, BM25, MiniLM dense + multivector).
A larger size cannot come that way here: SciFact yields ~150k passages, and encoding a million
with three models on 2 cores takes hours. So a size above the largest real one is *derived*
from it: every passage k times, copy 0 as stored and copies 1..k-1 with 10 % of their SPLADE
and BM25 terms dropped, the other weights jittered by up to ±10 %, and the dense vector moved
by Gaussian noise (sigma 0.02 per coordinate) and renormalised; same texts, same lengths. Near
duplicates are a pessimistic case for Seismic's pruning (many blocks score alike). The derived
collection is written through Collection.upsert and sealed by one flush, like any other.

For each size one ``lsr serve`` process serves the collection; per mode a lone wrk client
(``--seconds``) gives p50 / p99, and the server's resident memory after the runs and the
collection's bytes on disk are recorded. Writes benchmarks/growth.json and growth.png; with
``--write`` the "growth" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .report import ROOT, machine, write_section
from .service import (build_passage_collection, free_port, rss_mib, start_server, wrk_load)

NAME = "passages"
MODES = ["bm25", "sparse", "dense", "hybrid"]


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def derive(src_dir: Path, dst_dir: Path, copies: int, batch: int = 20_000, seed: int = 0) -> int:
    """Collection NAME of dst_dir: each document of src_dir's NAME ``copies`` times (module
    docstring). Returns the number of documents."""
    import scipy.sparse as sp

    from indexer import Collection
    src = Collection.open(src_dir, NAME, read_only=True, maintenance=False)
    try:
        containers = [(c, np.flatnonzero(alive)) for c, alive in src._snapshot() if alive.any()]
        cfg = src.config.to_dict()
        fields = cfg.pop("fields")
        cfg["flush_docs"] = cfg["max_buffer_docs"] = 10 ** 9  # sealed once, by the flush below
        dst = Collection.create(dst_dir, NAME, fields, maintenance=False, **cfg)
        rng = np.random.default_rng(seed)
        n = 0
        for c, rows in containers:
            texts, metas = c.all_texts(), c.all_metadata()
            for start in range(0, len(rows), batch):
                r = rows[start:start + batch]
                base = {f: (c.sparse_rows(f, r) if spec["kind"] == "sparse" else np.asarray(c.dense(f))[r])
                        for f, spec in fields.items()}
                for copy in range(copies):
                    vecs = {}
                    for f, m in base.items():
                        if fields[f]["kind"] == "dense":
                            v = m if copy == 0 else m + rng.normal(0, 0.02, m.shape).astype(np.float32)
                            vecs[f] = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
                            continue
                        m = sp.csr_matrix(m, copy=True)
                        if copy:
                            m.data *= rng.uniform(0.9, 1.1, m.nnz).astype(m.data.dtype)
                            m.data[rng.random(m.nnz) < 0.1] = 0
                            m.eliminate_zeros()
                        vecs[f] = m
                    ids = [f"{c.ids[i]}~{copy}" for i in r]
                    dst.upsert(ids, vecs, texts=[texts[i] for i in r], metadata=[metas[i] for i in r],
                               lengths=np.asarray(c.lengths)[r])
                    n += len(r)
                print(f"  derived {n:,} documents", flush=True)
        dst.flush()
        dst.close()
        return n
    finally:
        src.close()


def sparse_recall(data_dir: Path, queries: list[str]) -> dict:
    """Recall@10 and @100 of the SPLADE list as the service searches it (k=100, the default
    query_cut and heap_factor) against an exact scan of the same vectors."""

    from encoders.splade import SpladeEncoder
    from indexer import Collection
    from indexer.query import DEFAULTS
    coll = Collection.open(data_dir, NAME, read_only=True, maintenance=False)
    try:
        q = SpladeEncoder(coll.config.encoders.get("sparse") or "splade-tiny").encode_queries(queries)
        hits10, hits100 = [], []
        for i in range(q.shape[0]):
            row = q[i]
            got = [h.id for h in coll.search(row.indices, row.data, k=100, field="sparse")]
            truth = []
            for c, alive in coll._snapshot():  # exact: every live row's dot product
                if not alive.any():
                    continue
                m = c.sparse_rows("sparse", np.arange(len(alive)))  # rows in the segment's numbering
                scores = (m @ row.T).toarray().ravel()[: len(alive)]
                scores[~alive] = -np.inf
                top = np.argsort(-scores)[:100]
                truth += [(scores[r], c.ids[r]) for r in top]
            truth = [d for _, d in sorted(truth, key=lambda x: -x[0])[:100]]
            hits10.append(len(set(got[:10]) & set(truth[:10])) / 10)
            hits100.append(len(set(got) & set(truth)) / 100)
        return {"recall@10": float(np.mean(hits10)), "recall@100": float(np.mean(hits100)),
                "queries": len(queries), "query_cut": DEFAULTS.query_cut, "heap_factor": DEFAULTS.heap_factor}
    finally:
        coll.close()


def measure(data_dir: Path, queries: list[str], seconds: int, tmp: Path) -> dict:
    port = free_port()
    proc = start_server(data_dir, port, demo=False)
    try:
        url = f"http://127.0.0.1:{port}/collections/{NAME}/search"
        rows = {}
        for mode in MODES:
            wrk_load(url, mode, 2, 1, queries, tmp)  # warm-up: page cache, encoders
            rows[mode] = wrk_load(url, mode, seconds, 1, queries, tmp)
            print(f"  {mode:7s} p50 {rows[mode]['p50_ms']:7.2f} ms  p99 {rows[mode]['p99_ms']:7.2f} ms "
                  f"({rows[mode]['requests']} requests, {rows[mode]['errors']} errors)", flush=True)
        rss = sum(rss_mib(proc.pid).values())
    finally:
        proc.terminate()
        proc.wait(60)
    return {"modes": rows, "rss_mib": rss, "disk_bytes": disk_bytes(data_dir / NAME)}


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sizes = sorted(int(s) for s in results)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode, color in zip(MODES, ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        p50 = [results[str(s)]["modes"][mode]["p50_ms"] for s in sizes]
        p99 = [results[str(s)]["modes"][mode]["p99_ms"] for s in sizes]
        ax1.plot(sizes, p50, "o-", color=color, label=f"{mode} p50")
        ax1.plot(sizes, p99, "o--", color=color, alpha=0.6, label=f"{mode} p99")
    ax1.set(xscale="log", yscale="log", xlabel="passages", ylabel="lone-client latency (ms)",
            title="search latency per mode")
    ax1.legend(fontsize=7, ncol=2)
    ax2.plot(sizes, [results[str(s)]["rss_mib"] for s in sizes], "o-", label="server RSS (MiB)")
    ax2.plot(sizes, [results[str(s)]["disk_bytes"] / 2**20 for s in sizes], "s-", label="collection on disk (MiB)")
    ax2.set(xscale="log", yscale="log", xlabel="passages", title="memory and disk")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(results: dict, derived: set, seconds: int, load: float) -> str:
    sizes = sorted(int(s) for s in results)
    head = ("| passages | " + " | ".join(f"{m} p50 / p99 ms" for m in MODES) +
            " | server RSS MiB | on disk MiB | SPLADE list recall@10 / @100 vs exact |")
    lines = [head, "|---:|" + "---:|" * (len(MODES) + 3)]
    for s in sizes:
        r = results[str(s)]
        cells = [f"{r['modes'][m]['p50_ms']:.2f} / {r['modes'][m]['p99_ms']:.2f}" for m in MODES]
        label = f"{s:,}" + (" (derived)" if s in derived else "")
        rec = r.get("sparse_recall") or {}
        recall = f"{rec['recall@10']:.3f} / {rec['recall@100']:.3f}" if rec else "n/a"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {r['rss_mib']:.0f} | {r['disk_bytes'] / 2**20:.0f} "
                     f"| {recall} |")
    return ("## Growth curve\n\n"
            f"`python -m benchmarks.growth {' '.join(sys.argv[1:])}` ({machine()}; load average "
            f"{load:.2f} at the end): one `lsr serve` process per size, a lone wrk client per mode for "
            f"{seconds} s (k=10, the BEIR folder's queries). Sizes marked derived are built from the "
            "largest real one (near-duplicate copies: see benchmarks/growth.py).\n\n"
            + "\n".join(lines) + "\n\n![growth](benchmarks/growth.png)\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beir", type=Path, required=True)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--real-limit", type=int, default=100_000, help="largest size indexed from text")
    ap.add_argument("--data-root", type=Path, help="keeps each size's data dir (default: temporary)")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    queries = [json.loads(line)["text"] for line in open(args.beir / "queries.jsonl")]
    # recall is checked on the train queries (where the search defaults were chosen), 100 of them
    train_ids = {line.split("\t")[0] for line in open(args.beir / "qrels" / "train.tsv").read().splitlines()[1:]}
    train_queries = [q["text"] for q in map(json.loads, open(args.beir / "queries.jsonl"))
                     if q["_id"] in train_ids][:100]
    results, derived = {}, set()
    with tempfile.TemporaryDirectory(prefix="lsr-growth-") as tmp:
        root = args.data_root or Path(tmp)
        real = [s for s in args.sizes if s <= args.real_limit]
        largest = max(real) if real else None
        for size in sorted(args.sizes):
            data = root / f"growth-{size}"
            print(f"{size:,} passages in {data}", flush=True)
            if size <= args.real_limit:
                build_passage_collection(args.beir, size, data, NAME)
            else:
                if largest is None or size % largest:
                    ap.error(f"a derived size must be a multiple of the largest real one ({largest})")
                if not (data / NAME).is_dir():
                    derive(root / f"growth-{largest}", data, size // largest)
                derived.add(size)
            results[str(size)] = measure(data, queries, args.seconds, Path(tmp))
            results[str(size)]["sparse_recall"] = sparse_recall(data, train_queries)
            print(f"  sparse list vs exact: {results[str(size)]['sparse_recall']}", flush=True)
    load = os.getloadavg()[0]
    out = ROOT / "benchmarks"
    (out / "growth.json").write_text(json.dumps({"results": results, "derived": sorted(derived),
                                                 "load": load, "machine": machine()}, indent=2) + "\n")
    plot(results, out / "growth.png")
    if args.write:
        write_section("growth", report(results, derived, args.seconds, load))
    print(f"wrote {out / 'growth.json'} and growth.png; load average {load:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
