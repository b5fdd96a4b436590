"""Hybrid search with inference-free sparse queries against today's hybrid (SPLADE queries).

    python -m benchmarks.hybrid_inference_free [--data ../shared/data/scifact] [--cache .cache/rerank]
                                              [--threads 32] [--json out.json]

Over the SciFact collection that ``python -m benchmarks.rerank`` builds (``--cache``/collections:
splade-tiny documents, hashed BM25, MiniLM dense), through ``SearchPipeline``:

- today's hybrid: the SPLADE query encoder for the sparse list, BM25, MiniLM;
- inference-free hybrid: the sparse list's query is the query's tokens weighted by the
  collection's live IDF (document frequencies of its sparse field) — what a collection whose
  sparse model is ``splade-tiny-inference-free`` computes (its documents are splade-tiny's, the
  same vectors), sent as ``vector.sparse``; BM25 and MiniLM as above.

Each with RRF (k=60) and convex fusion (dense weight 0.3, chosen on train in BENCHMARKS.md).
Per arm: nDCG@10 and R@100 over the test queries, the lone in-process p50, and the throughput
of ``--threads`` concurrent searchers over the same queries (each query once per arm; the
query encoders' shared states are forgotten between arms). The load average is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hybrid_inference_free",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "rerank")
    ap.add_argument("--collection", default="beir-scifact")
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from encoders.beir import BeirDataset
    from encoders.inference_free import InferenceFreeEncoder
    from encoders.metrics import evaluate
    from service import models
    from service.encoder_cache import ENCODERS
    from service.pipeline import SearchPipeline
    from service.schemas import SearchRequest
    from service.store import Store

    ds = BeirDataset.load(args.data, "test")
    store = Store(args.cache / "collections", ENCODERS)
    if args.collection not in store.names():
        raise SystemExit(f"no collection {args.collection!r} under {args.cache}/collections: "
                         "run python -m benchmarks.rerank --encode, then --pipeline, first")
    coll = store.get(args.collection)
    enc = store.encoder_set(coll)
    ifree = InferenceFreeEncoder(coll.config.encoders["sparse"], doc_model=None)
    pipe = SearchPipeline(store)
    queries = [(q, t or " ") for q, t in zip(ds.query_ids, ds.query_texts)]

    ifree.live_idf = True  # as the registry builds an inference-free model without an IDF file

    def idf_query(text: str) -> dict:
        ids, w = models.sparse_query(ifree, text, coll, None)  # the service's own query side
        return {"sparse": {"indices": ids.tolist(), "values": w.tolist()}}

    fusions = {"RRF k=60": None, "convex α=0.3": {"method": "convex", "alpha": 0.3}}
    arms = {}
    for fname, fusion in fusions.items():
        extra = {"fusion": fusion} if fusion else {}
        arms[f"today: SPLADE queries + BM25 + MiniLM, {fname}"] = (extra, None)
        arms[f"inference-free queries + BM25 + MiniLM, {fname}"] = (extra, idf_query)

    def request(body, vector, text):
        req = {"k": 100, "mode": "hybrid", "query": text, **body}
        if vector is not None:
            req["vector"] = vector(text)
        return SearchRequest.model_validate(req)

    def forget():
        for e in (enc.dense, enc.multivector):
            if e is not None and hasattr(e, "backbone"):
                e.backbone.shared_queries.clear()

    for body, vector in arms.values():  # load models and graphs, touch the files
        pipe.search(args.collection, request(body, vector, "warm up"))
    rows = []
    for arm, (body, vector) in arms.items():
        forget()
        run, lat = {}, []
        for qid, text in queries:
            t0 = time.perf_counter()
            res = pipe.search(args.collection, request(body, vector, text))
            lat.append(time.perf_counter() - t0)
            run[qid] = {r.id: float(len(res.results) - i) for i, r in enumerate(res.results)}
        m = evaluate(run, ds.qrels, 10, 100)
        forget()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(lambda qt: pipe.search(args.collection, request(body, vector, qt[1])), queries))
        qps = len(queries) / (time.perf_counter() - t0)
        row = {"arm": arm, **m, "lone_p50_ms": statistics.median(lat) * 1e3, "qps": qps}
        rows.append(row)
        print(f"{arm:60s} nDCG@10 {m['nDCG@10']:.4f}  R@100 {m['R@100']:.4f}  "
              f"lone p50 {row['lone_p50_ms']:.1f} ms  {qps:.1f} searches/s", flush=True)
    load = os.getloadavg()
    print(f"\nSciFact test ({len(queries)} queries), k=100, depth 100; {args.threads} concurrent searchers "
          f"in-process; {len(os.sched_getaffinity(0))} cores; load average at the end "
          f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}\n")
    print("| hybrid | nDCG@10 | R@100 | lone p50 ms | searches/s |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['arm']} | {r['nDCG@10']:.4f} | {r['R@100']:.4f} | {r['lone_p50_ms']:.1f} | {r['qps']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "load": load}, indent=2) + "\n")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
