"""Encoding throughput of every served encoder, as the service builds it (the model registry).

    python -m benchmarks.encoder_throughput ../shared/data/scifact [--docs 160] [--queries 100]
                                            [--models NAME,...] [--device cpu] [--json out.json]

For each registered model (built-in and ``LSR_MODELS_DIR`` entries) and each role it serves —
a sparse kind as the sparse field, a dense model as the dense *and* the multivector encoder,
the built-in BM25 as the bm25 field — through ``encoders.registry.build`` (what
``EncoderCache`` loads; dense and multivector queries through the float32 ONNX graph):

- documents/s: ``encode_documents`` over a seeded sample of the corpus, batch 32, best of
  ``--rounds`` rounds taken in turn over the encoders (so that load changes hit all alike);
- lone query p50 ms: one query per call, as a search with no concurrent requests encodes it
  (inference-free with live IDF: tokenizer + the IDF of a document-frequency table, as
  ``service/models.py`` computes it from the collection's statistics; BM25 the same for its
  hashed terms);
- queries/s in batches of 32, as the service's query batching encodes concurrent requests.

Texts are the corpus's title + text, the queries the split's. The machine's load average is
printed with the table: compare rows of one run.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class Arm:
    """One encoder in one role: documents(texts), query(text), queries(texts)."""

    def __init__(self, name: str, kind: str, role: str, documents, query, queries, reset=None):
        self.name, self.kind, self.role = name, kind, role
        self.documents, self.query, self.queries = documents, query, queries
        # forgets remembered query states (encoders/query_states.py) so that every timed
        # query is computed, not a repeat served from memory
        self.reset = reset or (lambda: None)


def _arms(specs: dict, device: str | None, df_texts: list[str]) -> list[Arm]:
    from encoders import registry
    from service import lexical
    arms = []
    for name, spec in specs.items():
        if spec.kind == "bm25":
            n = len(df_texts)
            df: dict[int, int] = {}
            for ids, _ in lexical.count_rows(df_texts)[0]:
                for t in ids.tolist():
                    df[t] = df.get(t, 0) + 1

            def stats(terms, df=df, n=n):
                return np.array([df.get(int(t), 0) for t in terms], np.int64), n
            arms.append(Arm(name, "bm25", "bm25", lambda texts: lexical.count_rows(texts),
                            lambda q, stats=stats: lexical.encode_query(q, stats),
                            lambda qs, stats=stats: [lexical.encode_query(q, stats) for q in qs]))
            continue
        roles = ["sparse"] if spec.sparse else [r for r in ("dense", "multivector") if spec.serves(r)]
        for role in roles:
            enc = registry.build(spec, role, device=device)
            if getattr(enc, "live_idf", False):
                m = enc.encode_documents(df_texts)  # document frequencies of the sample, as a collection keeps them
                dfs, n = np.bincount(m.indices, minlength=m.shape[1]), m.shape[0]

                def live(q, enc=enc, dfs=dfs, n=n):
                    ids = enc.query_terms([q])[0]
                    seen = dfs[ids] > 0
                    return ids[seen], lexical.idf(dfs[ids][seen].astype(np.float64), n)
                arms.append(Arm(name, spec.kind, role, enc.encode_documents, live,
                                lambda qs, f=live: [f(q) for q in qs]))
                continue
            # CSR encodes through its dense encoder's backbone
            backbone = getattr(enc, "backbone", None) or getattr(getattr(enc, "dense", None), "backbone", None)
            reset = backbone.shared_queries.clear if backbone is not None else None
            arms.append(Arm(name, spec.kind, role, enc.encode_documents, lambda q, enc=enc: enc.encode_queries([q]),
                            enc.encode_queries, reset))
    return arms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.encoder_throughput", description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--docs", type=int, default=160)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--models", help="comma-separated registered names (default: all)")
    ap.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps (default: LSR_DEVICE)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import torch

    from encoders import registry
    from encoders.beir import BeirDataset
    torch.set_num_threads(int(os.environ.get("LSR_TORCH_THREADS", "0")) or torch.get_num_threads())
    ds = BeirDataset.load(args.folder, args.split)
    rng = random.Random(0)
    docs = rng.sample(list(ds.doc_texts), min(args.docs, len(ds.doc_texts)))
    queries = [q or " " for q in ds.query_texts[:args.queries]]
    specs = registry.models()
    if args.models:
        wanted = args.models.split(",")
        unknown = [m for m in wanted if m not in specs]
        if unknown:
            raise SystemExit(f"unknown models {unknown}; registered: {sorted(specs)}")
        specs = {m: specs[m] for m in wanted}
    arms = _arms(specs, args.device, docs)
    for a in arms:  # load lazily built parts (ONNX query graphs), warm caches
        a.documents(docs[:8])
        a.queries(queries[:8])
        a.query(queries[0])
    doc_s: dict[int, list[float]] = {i: [] for i in range(len(arms))}
    for r in range(args.rounds):
        order = range(len(arms)) if r % 2 == 0 else reversed(range(len(arms)))
        for i in order:
            t0 = time.perf_counter()
            arms[i].documents(docs)
            doc_s[i].append(time.perf_counter() - t0)
    rows = []
    for i, a in enumerate(arms):
        lone = []
        for q in queries:
            a.reset()
            t0 = time.perf_counter()
            a.query(q)
            lone.append(time.perf_counter() - t0)
        batch = []
        for _ in range(args.rounds):
            spent = 0.0
            for lo in range(0, len(queries), 32):
                a.reset()
                t0 = time.perf_counter()
                a.queries(queries[lo:lo + 32])
                spent += time.perf_counter() - t0
            batch.append(spent)
        rows.append({"model": a.name, "kind": a.kind, "role": a.role, "docs_per_s": len(docs) / min(doc_s[i]),
                     "lone_query_p50_ms": statistics.median(lone) * 1e3,
                     "batch32_queries_per_s": len(queries) / min(batch)})
    load = os.getloadavg()
    dev = args.device or os.environ.get("LSR_DEVICE", "auto")
    print(f"{len(docs)} {args.folder.name} documents (seeded sample), {len(queries)} {args.split} queries; "
          f"device {dev}, {torch.get_num_threads()} torch threads, {len(os.sched_getaffinity(0))} cores; "
          f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}\n")
    print("| model | kind | role | documents/s | lone query p50 ms | queries/s (batches of 32) |\n"
          "|---|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['kind']} | {r['role']} | {r['docs_per_s']:,.1f} | "
              f"{r['lone_query_p50_ms']:.3f} | {r['batch32_queries_per_s']:,.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "load": load, "docs": len(docs),
                                         "queries": len(queries)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
