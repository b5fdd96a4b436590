"""Evaluate an encoder on a BEIR-layout folder with exact retrieval.

    python -m encoders.evaluate <beir-folder> --encoder bm25|splade|inference-free|csr|dense [--json out.json]

Encodes the corpus (cached as .npz keyed by encoder, model, options and corpus SHA-256, so a
second run does not re-encode) and the judged queries of the split, scores every document
exactly (sparse: q @ D^T; dense: cosine), keeps the top 100 and prints one line per metric:
``nDCG@10 0.6712`` and ``R@100 0.9100``. Progress and timings go to stderr.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from encoders.base import canonical
from encoders.beir import BeirDataset, file_hash
from encoders.metrics import Run, evaluate, write_trec_run
from encoders.models import REPO_ROOT
from encoders.profiling import peak_rss_mb

ENCODERS = ("bm25", "splade", "inference-free", "csr", "dense")
DEFAULT_CACHE = REPO_ROOT / ".cache" / "encoded"


def build_encoder(name: str, model: str | None, top_k_documents: int | None,
                  progress: bool | None, vocabulary: Path | None = None, int8: bool = False) -> Any:
    if vocabulary is not None and name != "splade":
        raise ValueError("--vocabulary (a restricted LM head) applies to the splade encoder only")
    if int8 and name != "dense":
        raise ValueError("--int8 (the fused int8 ONNX Runtime graph) applies to the dense encoder only")
    if name == "bm25":
        from encoders.bm25 import BM25Encoder
        return BM25Encoder(progress=progress)
    if name == "splade":
        from encoders.models import DEFAULT_SPLADE
        from encoders.splade import SpladeEncoder
        return SpladeEncoder(model or DEFAULT_SPLADE, top_k_documents=top_k_documents, progress=progress,
                             vocabulary=None if vocabulary is None else str(vocabulary))
    if name == "inference-free":
        from encoders.inference_free import InferenceFreeEncoder
        from encoders.models import DEFAULT_SPLADE
        return InferenceFreeEncoder(model or DEFAULT_SPLADE, doc_model=model or DEFAULT_SPLADE,
                                    top_k_documents=top_k_documents, progress=progress)
    if name == "csr":
        from encoders.csr import CSREncoder
        from encoders.models import models_dir
        path = Path(model) if model else models_dir() / "csr" / "csr-minilm-k8-anneal.pt"
        if not path.is_file():
            raise FileNotFoundError(f"no CSR checkpoint at {path}: train one with "
                                    "`lsr train csr <beir-folder> --out DIR` or pass --model")
        return CSREncoder.load(path, top_k_documents, progress=progress)
    if name == "dense":
        from encoders.dense import DenseEncoder
        from encoders.models import DEFAULT_DENSE
        return DenseEncoder(model or DEFAULT_DENSE, progress=progress, int8=int8)
    raise ValueError(f"unknown encoder {name!r}; choose from {ENCODERS}")


def cache_path(cache_dir: Path, encoder: str, model: str | None, top_k: int | None, corpus_sha: str) -> Path:
    tag = "-".join(p for p in (encoder, model and re.sub(r"[^\w.-]+", "_", model),
                               top_k and f"top{top_k}", corpus_sha[:16]) if p)
    return cache_dir / f"{tag}.npz"


def save_vectors(path: Path, vectors: sp.csr_matrix | np.ndarray, extra: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    if sp.issparse(vectors):
        np.savez(tmp, indptr=vectors.indptr, indices=vectors.indices, data=vectors.data,
                 shape=np.array(vectors.shape), **extra)
    else:
        np.savez(tmp, dense=vectors, **extra)
    tmp.replace(path)  # atomic: a killed run never leaves a truncated cache entry


def load_vectors(path: Path) -> tuple[sp.csr_matrix | np.ndarray, dict[str, Any]]:
    with np.load(path) as z:
        extra = {k: z[k] for k in z.files if k not in ("indptr", "indices", "data", "shape", "dense")}
        if "dense" in z.files:
            return z["dense"], extra
        m = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
        return canonical(m), extra


def exact_search(queries: sp.csr_matrix | np.ndarray, docs: sp.csr_matrix | np.ndarray,
                 k: int, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Top-k document positions and scores per query by brute force, in query blocks."""
    k = min(k, docs.shape[0])
    all_idx, all_scores = [], []
    for lo in range(0, queries.shape[0], block):
        s = queries[lo:lo + block] @ docs.T
        s = s.toarray() if sp.issparse(s) else np.asarray(s)
        idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(s, idx, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        all_idx.append(np.take_along_axis(idx, order, axis=1))
        all_scores.append(np.take_along_axis(top, order, axis=1))
    return np.vstack(all_idx), np.vstack(all_scores)


def to_run(query_ids: list[str], doc_ids: list[str], idx: np.ndarray, scores: np.ndarray,
           sparse: bool = True) -> Run:
    """Results as a trec-style run. For sparse vectors a zero score means no shared term, so
    the document was not retrieved; dense scores (cosines) are all kept, negatives included."""
    return {q: {doc_ids[d]: float(s) for d, s in zip(idx[i], scores[i]) if s > 0 or not sparse}
            for i, q in enumerate(query_ids)}


def export_npz(path: Path, ds: BeirDataset, docs: sp.csr_matrix, queries: sp.csr_matrix) -> None:
    """Document and query CSR arrays plus ids, for the index benchmarks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, doc_indptr=docs.indptr, doc_indices=docs.indices, doc_data=docs.data,
             q_indptr=queries.indptr, q_indices=queries.indices, q_data=queries.data,
             doc_ids=np.array(ds.doc_ids), query_ids=np.array(ds.query_ids),
             dim=np.int64(docs.shape[1]))


def run_eval(folder: str | Path, encoder: str, *, model: str | None = None, split: str = "test",
             k: int = 100, batch_size: int = 32, top_k_documents: int | None = None,
             cache_dir: Path | None = DEFAULT_CACHE, progress: bool | None = None,
             export: Path | None = None, vocabulary: Path | None = None, int8: bool = False,
             search: Callable | None = None, index: str = "exact",
             run_file: Path | None = None) -> dict[str, Any]:
    """Encode the corpus (cached) and the split's queries, retrieve the top k, score the run.

    ``search(queries, docs, k) -> (doc positions [nq, k], scores [nq, k])`` replaces the exact
    brute-force search (``lsr eval --index seismic`` passes a Seismic index; encoders cannot
    import the indexer), ``index`` names it in the result."""
    ds = BeirDataset.load(folder, split)
    enc = build_encoder(encoder, model, top_k_documents, progress, vocabulary, int8)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if encoder in ("bm25", "inference-free"):
        # Corpus statistics (BM25 vocabulary, IDF) are cheap and deterministic to refit.
        enc.fit(ds.doc_texts)
    # A local checkpoint file can be retrained in place: key the cache by its content too.
    model_tag = model
    if model and Path(model).is_file():
        model_tag = f"{Path(model).stem}-{file_hash(model)[:12]}"
    if vocabulary is not None:
        model_tag = f"{model_tag or 'default'}-vocab{file_hash(vocabulary)[:12]}"
    if int8:  # keyed by the converted model, so a new conversion recipe re-encodes
        model_tag = f"{model_tag or 'default'}-int8-{enc.backbone.int8_model.key}"
    # Inference-free documents are plain SPLADE vectors of the same model: share the entry.
    doc_key = "splade" if encoder == "inference-free" else encoder
    path = cache_path(cache_dir, doc_key, model_tag, top_k_documents, ds.corpus_sha256) if cache_dir else None
    cached = path is not None and path.is_file()
    if cached:
        docs, extra = load_vectors(path)
        encode_s = float(extra["encode_seconds"])
        log(f"loaded cached {encoder} corpus vectors from {path}")
    else:
        t0 = time.perf_counter()
        docs = enc.encode_documents(ds.doc_texts, batch_size=batch_size)
        encode_s = time.perf_counter() - t0
        if path is not None:
            save_vectors(path, docs, {"encode_seconds": np.float64(encode_s)})
    docs_per_s = len(ds.doc_ids) / encode_s
    log(f"corpus: {len(ds.doc_ids)} docs encoded in {encode_s:.1f} s ({docs_per_s:.1f} docs/s)"
        + (" [from cache]" if cached else ""))
    t0 = time.perf_counter()
    queries = enc.encode_queries(ds.query_texts)
    query_s = time.perf_counter() - t0
    if export is not None:
        if not sp.issparse(docs):
            raise ValueError("--export needs a sparse encoder")
        export_npz(export, ds, docs, queries)
        log(f"exported vectors to {export}")
    t0 = time.perf_counter()
    idx, scores = (search or exact_search)(queries, docs, k)
    search_s = time.perf_counter() - t0
    run = to_run(ds.query_ids, ds.doc_ids, idx, scores, sparse=sp.issparse(docs))
    if run_file is not None:  # for outside tools: pytrec_eval, ir-measures, ranx, trec_eval
        write_trec_run(run_file, run, tag=f"{encoder}-{index}")
        log(f"TREC run written to {run_file}")
    metrics = evaluate(run, ds.qrels, 10, k)
    return {"dataset": ds.name, "split": split, "encoder": encoder, "model": getattr(enc, "name", encoder),
            "index": index, "n_docs": len(ds.doc_ids), "n_queries": len(ds.query_ids), **metrics,
            "search_seconds": search_s,
            "encode_seconds": encode_s, "docs_per_s": docs_per_s, "cached": cached,
            "queries_per_s": len(ds.query_ids) / query_s, "peak_rss_mb": peak_rss_mb()}


def add_encoder_arguments(ap: argparse.ArgumentParser, required: bool = True) -> None:
    """The encoder options, shared by ``python -m encoders.evaluate`` and ``lsr eval --encoder``."""
    ap.add_argument("--encoder", choices=ENCODERS, required=required,
                    help="evaluate this encoder alone, retrieving over its own vectors")
    ap.add_argument("--model", help="model name or path (default: the encoder's default)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--top-k-documents", type=int, help="SPLADE: keep this many terms per document; CSR: override k")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--vocabulary", type=Path,
                    help="splade: restrict the LM head to these term ids (.npy; approximate, faster)")
    ap.add_argument("--int8", action="store_true",
                    help="dense: ONNX Runtime, documents through the fused int8 graph (approximate, faster), queries float32")
    ap.add_argument("--export", type=Path, help="sparse encoders: save doc + query CSR arrays here")


def run_from_args(args: argparse.Namespace, search: Callable | None = None, index: str = "exact") -> int:
    """Run ``run_eval`` with parsed options, print one line per metric, write ``--json``."""
    res = run_eval(args.folder, args.encoder, model=args.model, split=args.split, k=args.k,
                   batch_size=args.batch_size, top_k_documents=args.top_k_documents,
                   cache_dir=None if args.no_cache else args.cache_dir,
                   progress=False if args.no_progress else None, export=args.export,
                   vocabulary=args.vocabulary, int8=args.int8, search=search, index=index,
                   run_file=getattr(args, "run_file", None))
    print(f"nDCG@10 {res['nDCG@10']:.4f}")
    print(f"R@{args.k} {res[f'R@{args.k}']:.4f}")
    print(f"encoding: {res['docs_per_s']:.1f} docs/s, peak RSS {res['peak_rss_mb']:.0f} MiB; {index} "
          f"retrieval for {res['n_queries']} queries (index build included): {res['search_seconds']:.2f} s",
          file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m encoders.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--k", type=int, default=100, help="retrieval depth and recall cut-off")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--json", type=Path, help="write all results here")
    ap.add_argument("--run-file", type=Path, help="write the run as a TREC run file")
    add_encoder_arguments(ap)
    return run_from_args(ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
