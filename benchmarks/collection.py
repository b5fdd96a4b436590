"""Collection benchmark: ingest throughput, latency over many segments, filter selectivity.

    python -m benchmarks.collection            # 50k synthetic SPLADE-like documents
    python -m benchmarks.collection --quick    # 10k documents

Vectors are precomputed (SyntheticSplade), so ingest measures the storage layer: WAL append +
fsync, buffering, and flushes that build Seismic segments. Queries run one at a time on one
thread; recall@10 is against exact top-10 over all documents. Results go to
bench-out/collection.json and the section "collection" of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from indexer import ExactIndex
from indexer.collection import Collection

from .report import ROOT, machine, write_section
from .synthetic import SyntheticSplade

PARAMS = dict(n_postings=1000, centroid_fraction=0.1, summary_energy=0.4)
SEARCH = dict(query_cut=10, heap_factor=0.8)


def _fields(dim):
    return {"sparse": {"kind": "sparse", "dim": dim, "params": PARAMS}}


def ingest(data_dir, name, docs, batch, flush_docs, meta=None):
    """(collection, docs/s including flushes)."""
    n = docs.shape[0]
    coll = Collection.create(data_dir, name, _fields(docs.shape[1]), flush_docs=flush_docs,
                             exact_segment_docs=500, max_segments=0)
    t0 = time.perf_counter()
    for a in range(0, n, batch):
        ids = [f"d{i}" for i in range(a, min(n, a + batch))]
        coll.upsert(ids, docs[a:a + batch], texts=ids, metadata=None if meta is None else meta[a:a + batch])
    coll.flush()
    return coll, n / (time.perf_counter() - t0)


def durable_ingest(data_dir, name, docs, batch):
    """docs/s of upserts alone (WAL + fsync + buffer, no flush), then seconds of one flush."""
    n = docs.shape[0]
    coll = Collection.create(data_dir, name, _fields(docs.shape[1]), flush_docs=n + 1)
    t0 = time.perf_counter()
    for a in range(0, n, batch):
        ids = [f"d{i}" for i in range(a, min(n, a + batch))]
        coll.upsert(ids, docs[a:a + batch], texts=ids)
    rate = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    coll.flush()
    flush_s = time.perf_counter() - t0
    coll.close()
    return rate, flush_s


def latency(coll, queries, gt=None, k=10, filter=None):
    lat, rec, full = [], [], 0
    for i in range(min(20, queries.shape[0])):  # warm up
        q = queries[i]
        coll.search(q.indices, q.data, k=k, filter=filter, **SEARCH)
    for i in range(queries.shape[0]):
        q = queries[i]
        t0 = time.perf_counter_ns()
        hits = coll.search(q.indices, q.data, k=k, filter=filter, **SEARCH)
        lat.append((time.perf_counter_ns() - t0) / 1e3)
        full += len(hits) == k
        if gt is not None:
            rec.append(len({int(h.id[1:]) for h in hits} & set(gt[i][gt[i] >= 0].tolist())) / k)
    lat = np.array(lat)
    return {"mean_us": float(lat.mean()), "p99_us": float(np.percentile(lat, 99)),
            "recall": float(np.mean(rec)) if rec else None, "full_k": full / queries.shape[0]}


def index_latency(idx, queries, gt, k=10):
    """The same queries straight on the merged segment's index: the collection's overhead."""
    lat, rec = [], []
    for i in range(queries.shape[0]):
        q = queries[i]
        t0 = time.perf_counter_ns()
        ids, _ = idx.search(q.indices, q.data, k=k, **SEARCH)
        lat.append((time.perf_counter_ns() - t0) / 1e3)
        rec.append(len(set(ids.tolist()) & set(gt[i][gt[i] >= 0].tolist())) / k)
    lat = np.array(lat)
    return {"mean_us": float(lat.mean()), "p99_us": float(np.percentile(lat, 99)),
            "recall": float(np.mean(rec)), "full_k": None}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    n = 10_000 if args.quick else args.docs
    gen = SyntheticSplade()
    docs, queries = gen.documents(n), gen.queries(args.queries)
    meta = [{"bucket": i % 1000} for i in range(n)]
    gt, _ = ExactIndex.build(docs).search_batch(queries, k=10)
    tmp = Path(tempfile.mkdtemp(prefix="coll-bench-"))
    out = {"docs": n, "queries": args.queries, "machine": machine()}
    try:
        # ingest: small batches are fsync-bound, large ones amortise it; includes flushes
        out["ingest_batch1_docs_s"], _ = durable_ingest(tmp, "b1", docs[:2000], 1)
        out["ingest_batch100_docs_s"], out["flush_10k_s"] = durable_ingest(tmp, "b100", docs[:10_000], 100)
        rows = []
        for n_seg in (50, 10, 1):
            flush_docs = -(-n // n_seg)
            coll, rate = ingest(tmp, f"s{n_seg}", docs, min(500, flush_docs), flush_docs, meta)
            assert coll.stats()["segments"] == n_seg, coll.stats()["segments"]
            rows.append({"segments": n_seg, "ingest_docs_s": rate, **latency(coll, queries, gt)})
            if n_seg == 50:
                t0 = time.perf_counter()
                coll.merge(force=True)
                merge_s = time.perf_counter() - t0
                rows.append({"segments": "50 merged into 1", "merge_s": merge_s,
                             **latency(coll, queries, gt)})
                merged = coll
                rows.append({"segments": "its SeismicIndex alone", "merge_s": None,
                             **index_latency(coll._segments[0].indexes["sparse"], queries, gt)})
            else:
                coll.close()
        out["segments"] = rows
        frows = []
        for sel in (0.001, 0.01, 0.1, 0.5, 1.0):
            flt = {"bucket": {"lt": int(sel * 1000)}}
            frows.append({"selectivity": sel, **latency(merged, queries, None, filter=flt)})
        out["filters"] = frows
        merged.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    dest = ROOT / "bench-out"
    dest.mkdir(exist_ok=True)
    (dest / "collection.json").write_text(json.dumps(out, indent=1))
    write_section("collection", render(out))
    print(render(out))


def render(o) -> str:
    lines = ["## Collections (storage layer)\n",
             f"`python -m benchmarks.collection{' --quick' if o['docs'] == 10_000 else ''}` — "
             f"{o['docs']:,} synthetic SPLADE-like documents (precomputed vectors), {o['queries']} "
             f"queries, k=10, query_cut={SEARCH['query_cut']}, heap_factor={SEARCH['heap_factor']}, "
             f"Seismic {PARAMS}; one query at a time. {o['machine']}.\n",
             f"Durable ingest (WAL append + fsync per call, write buffer; no flush): "
             f"{o['ingest_batch1_docs_s']:,.0f} docs/s one document per call, "
             f"{o['ingest_batch100_docs_s']:,.0f} docs/s 100 per call; sealing those 10,000 "
             f"documents into a Seismic segment (flush) took {o['flush_10k_s']:.1f} s, which "
             "dominates the ingest rates with flushes in the table below. End-to-end ingest "
             "with an encoder is not measured here (no encoder on this branch).\n",
             "| segments | ingest docs/s (≤500/call) | mean µs | p99 µs | recall@10 |",
             "|---|---|---|---|---|"]
    for r in o["segments"]:
        ing = (f"{r['ingest_docs_s']:,.0f}" if "ingest_docs_s" in r else
               f"merge {r['merge_s']:.1f} s" if r["merge_s"] is not None else "")
        lines.append(f"| {r['segments']} | {ing} | {r['mean_us']:,.0f} | {r['p99_us']:,.0f} | {r['recall']:.3f} |")
    lines += ["", "Filter selectivity on the merged segment (`{\"bucket\": {\"lt\": ...}}`; at most "
              "5,000 matching rows are scored exactly, more go through the index with over-fetch):", "",
              "| selectivity | mean µs | p99 µs | queries with k results |", "|---|---|---|---|"]
    for r in o["filters"]:
        lines.append(f"| {r['selectivity']:.1%} | {r['mean_us']:,.0f} | {r['p99_us']:,.0f} | {r['full_k']:.0%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
