"""Sparse encoder kinds through the service pipeline on a BEIR folder (nDCG@10, R@100, latency).

    python -m benchmarks.encoder_kinds ../shared/data/scifact [--data-dir DIR] [--no-dense] [--model NAME]
                                       [--json out.json]

One collection whose sparse field is the built-in inference-free model
(``splade-tiny-inference-free``: splade-tiny document vectors), with the BM25 field and (unless
``--no-dense``) MiniLM dense, indexed once through the service's indexing path (what
``LSR_SPARSE_ENCODER=splade-tiny-inference-free lsr eval`` builds). Its sparse list is then
searched through the pipeline with three query sides over the *same* document vectors:

- inference-free, live IDF: the collection's own (the query text; no model at query time);
- inference-free, IDF file: Lucene IDF of the corpus's tokens (``IdfTable.fit``), sent as the
  query vector (``vector.sparse``), as a model with ``files.idf`` would weigh it;
- SPLADE: the splade-tiny query encoder (a ``splade`` collection over the same documents);

and bm25 and hybrid (RRF k=60; with dense also convex min-max with the dense weight 0.3 chosen
on train in BENCHMARKS.md; ``--no-dense``: RRF of the sparse list, inference-free or SPLADE
queries, with BM25). Per arm: nDCG@10, R@100 over the split's queries
and the in-process p50 of a search (query encoding included).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODEL = "splade-tiny-inference-free"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.encoder_kinds", description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp/lsr-encoder-kinds"))
    ap.add_argument("--collection", default="kinds")
    ap.add_argument("--no-dense", action="store_true")
    ap.add_argument("--model", default=MODEL, help="the collection's inference-free model (registered)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from encoders.beir import BeirDataset
    from encoders.inference_free import IdfTable
    from encoders.metrics import evaluate
    from indexer.datadir import acquire_writer
    from service.encoder_cache import ENCODERS
    from service.errors import NotFound
    from service.indexing import index_records
    from service.pipeline import SearchPipeline
    from service.schemas import SearchRequest
    from service.settings import Settings
    from service.store import Store

    settings = Settings(data_dir=args.data_dir)
    settings.apply()
    ds = BeirDataset.load(args.folder, args.split)
    lock = acquire_writer(args.data_dir)
    store = Store(args.data_dir, ENCODERS, batch_size=settings.encode_batch_size, read_only=lock is None)
    name = args.collection
    try:
        try:
            store.get(name)
        except NotFound:
            store.create(name, args.model, None if args.no_dense else settings.dense_encoder, None)
        t0 = time.perf_counter()
        if store.stats(name)["documents"] != len(ds.doc_ids):
            index_records(store, name, ((i, t, None) for i, t in zip(ds.doc_ids, ds.doc_texts)), len(ds.doc_ids))
        build_s = time.perf_counter() - t0
        pipe = SearchPipeline(store, settings.max_k)
        enc = ENCODERS.sparse(args.model)
        table = IdfTable.fit(enc.tokenizer, ds.doc_texts, progress_bar=False)
        splade = ENCODERS.sparse("splade-tiny")

        def file_idf(text):
            ids = enc.query_terms([text])[0]
            w = table.idf[ids]
            return {"sparse": {"indices": ids[w > 0].tolist(), "values": w[w > 0].tolist()}}

        def splade_query(text):
            row = splade.encode_queries([text])[0]
            return {"sparse": {"indices": row.indices.tolist(), "values": row.data.tolist()}}

        arms = {
            "sparse: inference-free, live IDF (collection)": ({"mode": "sparse"}, None),
            "sparse: inference-free, IDF file (corpus tokens)": ({"mode": "sparse"}, file_idf),
            "sparse: SPLADE queries (splade-tiny), same documents": ({"mode": "sparse"}, splade_query),
            "bm25": ({"mode": "bm25"}, None),
        }
        if args.no_dense:
            arms["hybrid RRF: inference-free + BM25"] = ({"mode": "hybrid"}, None)
            arms["hybrid RRF: SPLADE queries + BM25 (same documents)"] = ({"mode": "hybrid"}, splade_query)
        else:
            arms["hybrid RRF: inference-free + BM25 + dense"] = ({"mode": "hybrid"}, None)
            arms["hybrid convex α=0.3: inference-free + BM25 + dense"] = (
                {"mode": "hybrid", "fusion": {"method": "convex", "alpha": 0.3}}, None)
        rows = []
        for arm, (body, vector) in arms.items():
            run, lat = {}, []
            for qid, text in zip(ds.query_ids, ds.query_texts):
                t0 = time.perf_counter()
                req = {"k": 100, **body}
                if vector is None or body["mode"] == "hybrid":
                    req["query"] = text or " "  # the lists without a vector encode the text
                if vector is not None:
                    req["vector"] = vector(text or " ")
                res = pipe.search(name, SearchRequest.model_validate(req))
                lat.append(time.perf_counter() - t0)
                run[qid] = {r.id: float(len(res.results) - i) for i, r in enumerate(res.results)}
            m = evaluate(run, ds.qrels, 10, 100)
            row = {"arm": arm, **m, "p50_ms": float(np.percentile(np.array(lat) * 1000, 50))}
            rows.append(row)
            print(f"{arm:55s} nDCG@10 {m['nDCG@10']:.4f}  R@100 {m['R@100']:.4f}  p50 {row['p50_ms']:.2f} ms",
                  flush=True)
    finally:
        store.close()
        if lock is not None:
            lock.close()
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; indexing {build_s:.0f} s", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"dataset": ds.name, "split": args.split, "rows": rows,
                                         "load": load, "index_seconds": build_s}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
