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
    head = "| passages | " + " | ".join(f"{m} p50 / p99 ms" for m in MODES) + " | server RSS MiB | on disk MiB |"
    lines = [head, "|---:|" + "---:|" * (len(MODES) + 2)]
    for s in sizes:
        r = results[str(s)]
        cells = [f"{r['modes'][m]['p50_ms']:.2f} / {r['modes'][m]['p99_ms']:.2f}" for m in MODES]
        label = f"{s:,}" + (" (derived)" if s in derived else "")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {r['rss_mib']:.0f} | {r['disk_bytes'] / 2**20:.0f} |")
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
