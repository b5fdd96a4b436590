"""`lsr`: index, serve, search and evaluate, through the same store and pipeline as the API.

    lsr index <folder|file> --collection NAME [--data-dir DIR] [--format jsonl|parquet|beir]
    lsr serve [--data-dir DIR] [--host 127.0.0.1] [--port 8000] [--workers N] [--preload]
    lsr search "query" --collection NAME [--mode hybrid] [--k 10] [--rerank]
    lsr collections [--data-dir DIR]
    lsr export NAME [--out FILE.jsonl] [--filter JSON] [--data-dir DIR | --url URL]
    lsr eval <beir-folder> [--mode hybrid] [--rerank] [--fusion rrf|convex] [--alpha 0.5]
             [--kappa 50] [--rerank-alpha A] [--rerank-beta B] [--rerank-top T] [--rerank-weight W]
             [--store-tokens fp16|int8 [--token-dim 128]] [--run-file run.trec] [--json out.json]
    lsr eval <beir-folder> --encoder bm25|splade|inference-free|csr|dense [--index exact|seismic]
             [--json out.json]   (one encoder alone; the options of python -m encoders.evaluate)
    lsr train inference-free|csr|multivector <beir-folder> --out DIR [--base MODEL] [--device D]
             (a model directory with its lsr-model.json: in LSR_MODELS_DIR, collections can name it)

index, search, collections and export take --url http://host:port (or LSR_URL in the environment) to
work through a running server's REST API instead of opening the data directory; the key, if
the server wants one, comes from LSR_API_KEY. Remote commands import neither the indexer nor
torch: they start in a fraction of a second.

Local commands take the server's settings (LSR_* variables such as LSR_TORCH_THREADS and
LSR_MODELS_DIR; an unknown LSR_* variable is an error) and open the data directory as its
writer, or — when another process (`lsr serve`) is the writer — read-only: search, collections
and an eval over an indexed collection work beside a running server; writes fail with a message
pointing to --url.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _settings(args):
    from .settings import Settings
    kw = {"data_dir": args.data_dir} if getattr(args, "data_dir", None) else {}
    return Settings(**kw)


@contextmanager
def _local_store(settings):
    """The data directory's store: as its writer if no other process is, else read-only."""
    from indexer.datadir import acquire_writer

    from .store import Store
    settings.apply()  # models dir, LSR_TORCH_THREADS, ONNX paths: as in the server
    from .encoder_cache import ENCODERS
    lock = acquire_writer(settings.data_dir)
    store = Store(settings.data_dir, ENCODERS, batch_size=settings.encode_batch_size,
                  read_only=lock is None)
    try:
        yield store
    finally:
        store.close()
        if lock is not None:
            lock.close()


def _ensure_collection(store, name: str, args) -> None:
    from .errors import NotFound
    try:
        store.get(name)
    except NotFound:
        s = _settings(args)
        index = None
        if getattr(args, "store_tokens", None):
            index = {"store_token_vectors": args.store_tokens, "token_dim": args.token_dim}
        store.create(name, None if args.no_sparse else s.sparse_encoder,
                     None if args.no_dense else s.dense_encoder,
                     None if args.no_dense else s.multivector_encoder, bm25=not args.no_bm25, index=index)


def _remote(args):
    """The server to talk to, or None to open the data directory: --url, else LSR_URL unless
    --data-dir names a directory. The key is read from the environment only (LSR_API_KEY), as
    one on the command line would end up in shell history and `ps`."""
    if args.url and args.data_dir:
        raise ValueError("give --url or --data-dir, not both")
    url = args.url or (None if args.data_dir else os.environ.get("LSR_URL"))
    if not url:
        return None
    from .remote import Remote
    return Remote(url, os.environ.get("LSR_API_KEY") or None)


def _new_collection_options(args) -> dict:
    """--no-sparse / --no-dense / --no-bm25 as POST /collections fields; what is left out
    gets the server's defaults, as the local path gets the local settings'."""
    out: dict = {}
    if args.no_sparse:
        out["sparse_encoder"] = None
    if args.no_dense:
        out["dense_encoder"] = out["multivector_encoder"] = None
    if args.no_bm25:
        out["bm25"] = False
    return out


def _index_sources(source: Path, fmt: str | None) -> list[tuple[Path, str]]:
    """A file, a BEIR folder, or a folder of JSONL / Parquet files (indexed in name order)."""
    from . import sources
    if not source.exists():  # before resolve(), whose message speaks of the server's files
        raise FileNotFoundError(f"{source} does not exist")
    if source.is_dir() and fmt is None and not (source / "corpus.jsonl").is_file():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jsonl", ".parquet", ".pq"))
        if not files:
            raise ValueError(f"{source} has no corpus.jsonl and no .jsonl / .parquet files")
        return [sources.resolve(str(p), None) for p in files]
    return [sources.resolve(str(source), fmt)]


def cmd_index(args) -> int:
    remote = _remote(args)
    if remote is not None:
        with remote:
            return _index_remote(args, remote)
    from . import sources
    from .indexing import index_records
    with _local_store(_settings(args)) as store:
        todo = _index_sources(args.source, args.format)
        _ensure_collection(store, args.collection, args)
        n = 0
        for path, fmt in todo:
            n += index_records(store, args.collection, sources.read(path, fmt), sources.count(path, fmt),
                               chunk=args.chunk, progress=not args.no_progress)
        print(f"indexed {n} documents into {args.collection!r} ({store.stats(args.collection)['documents']} in total)")
    return 0


def _index_remote(args, remote) -> int:
    """Upload each file as a job (the server counts, encodes and writes it) and follow it."""
    todo = _index_sources(args.source, args.format)
    remote.ensure_collection(args.collection, _new_collection_options(args))
    n = 0
    for path, fmt in todo:
        job = remote.upload(args.collection, path, "parquet" if fmt == "parquet" else "jsonl")
        n += _follow_job(remote, job, quiet=args.no_progress)["done"]
    total = remote.collection(args.collection)["documents"]
    print(f"indexed {n} documents into {args.collection!r} ({total} in total)")
    return 0


def _follow_job(remote, job: dict, quiet: bool) -> dict:
    """Wait for a server job with a progress bar; a job that did not finish is an error."""
    from tqdm import tqdm

    from .remote import RemoteError
    with tqdm(total=job["total"], desc=f"indexing {job['source']}", unit="doc", disable=quiet) as bar:
        def update(state: dict) -> None:
            bar.total = state["total"]  # known once the server has counted the file
            bar.n = state["done"]
            bar.refresh()
        job = remote.wait(job["id"], update)
    if job["status"] != "done":
        raise RemoteError(f"job {job['id']} ({job['source']}) {job['status']}: {job['error'] or 'no reason given'}")
    return job


def cmd_serve(args) -> int:
    """One process, or N on one port (uvicorn's workers): whichever gets the data directory's
    writer lock writes, the others follow it and forward writes to it (service/forwarding.py)."""
    import uvicorn
    if args.workers < 1:
        raise ValueError("--workers must be >= 1")
    s = _settings(args)
    s.host, s.port = args.host or s.host, args.port or s.port
    print(f"serving {s.data_dir} on http://{s.host}:{s.port} (docs: http://{s.host}:{s.port}/docs)"
          + (f" with {args.workers} worker processes" if args.workers > 1 else ""))
    if args.workers == 1:
        from .app import create_app
        uvicorn.run(create_app(s, preload=args.preload), host=s.host, port=s.port, log_level="info")
        return 0
    # Each worker builds its app from the environment (uvicorn spawns them by import string);
    # this process only supervises them, so it loads neither the app nor the models.
    os.environ.update({"LSR_DATA_DIR": str(s.data_dir), "LSR_HOST": s.host, "LSR_PORT": str(s.port),
                       "LSR_PRELOAD": "1" if args.preload else "0"})
    uvicorn.run("service.app:app_from_env", factory=True, host=s.host, port=s.port,
                workers=args.workers, log_level="info")
    return 0


def _search_body(args, query: str) -> dict:
    """The search request as JSON: sent as is by a remote search (the server validates it;
    the schemas would load the indexer), validated into a SearchRequest by a local one."""
    body: dict = {"query": query, "k": args.k, "mode": args.mode}
    if args.fusion:
        body["fusion"] = {"method": args.fusion, "alpha": args.alpha}
    if args.rerank:
        body["rerank"] = {"kappa": args.kappa, "alpha": args.rerank_alpha, "beta": args.rerank_beta,
                          "top": args.rerank_top, "first_stage_weight": args.rerank_weight}
    # `lsr search` only (eval scores plain queries): the request's other fields, as the API names them
    if getattr(args, "offset", None):
        body["offset"] = args.offset
    if getattr(args, "depth", None):
        body["depth"] = args.depth
    if getattr(args, "filter", None):
        try:
            body["filter"] = json.loads(args.filter)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--filter: not JSON ({exc.msg}): {args.filter!r}") from None
    if getattr(args, "must_not", None):
        body["must_not"] = args.must_not
    if getattr(args, "negation", False):
        body["negation"] = True
    if getattr(args, "highlight", False):
        body["highlight"] = True
    if getattr(args, "facet", None):
        body["facets"] = [{"key": k} for k in args.facet]
    return body


def _search_request(args, query: str):
    from .schemas import SearchRequest
    return SearchRequest.model_validate(_search_body(args, query))


def _search_local(args) -> dict:
    from .pipeline import SearchPipeline
    s = _settings(args)
    with _local_store(s) as store:
        res = SearchPipeline(store, s.max_k).search(args.collection, _search_request(args, args.query))
    return res.model_dump(mode="json")


def _marked(text: str, matches) -> str:
    """A highlight fragment for a terminal: each matched word in [brackets]."""
    out, pos = [], 0
    for a, b in matches:
        out += [text[pos:a], "[", text[a:b], "]"]
        pos = b
    return "".join(out + [text[pos:]])


def cmd_search(args) -> int:
    remote = _remote(args)
    if remote is None:
        res = _search_local(args)
    else:
        with remote:
            res = remote.search(args.collection, _search_body(args, args.query))
    if args.json:
        print(json.dumps(res, indent=2, ensure_ascii=False))
    else:
        if res.get("exclusions"):
            print("excluded: " + ", ".join(e["text"] for e in res["exclusions"])
                  + f" ({res.get('excluded', 0)} candidates)")
        for i, r in enumerate(res["results"], 1):
            print(f"{i:2d}. {r['score']:9.4f}  {r['id']}  {(r['text'] or '')[:100]}")
            for h in (r.get("highlights") or [])[:2]:
                print(f"      … {_marked(h['text'], h['matches'])} …")
        for f in res.get("facets") or []:
            values = ", ".join(f"{v['value']} ({v['count']})" for v in f["values"])
            print(f"facet {f['key']}: {values}")
    return 0


def cmd_collections(args) -> int:
    remote = _remote(args)
    if remote is None:
        with _local_store(_settings(args)) as store:
            colls = [store.describe(n) for n in store.names()]
    else:
        with remote:
            colls = remote.collections()
    if args.json:
        print(json.dumps(colls, indent=2, ensure_ascii=False))
        return 0
    for c in colls:
        ready = c.get("state", "ready") == "ready"
        print(f"{c['name']}  " + (f"{c['documents']} documents" if ready else f"damaged: {c['damage']['message']}"))
    return 0


def _export_local(args):
    """The documents of a local collection, in id order (service/scroll.py)."""
    from . import scroll
    with _local_store(_settings(args)) as store:
        coll = store.get(args.collection)
        yield from scroll.iterate(coll, scroll.parse_filter(args.filter))


def cmd_export(args) -> int:
    """Every document (or those matching --filter) as JSONL lines {"id", "text", "metadata"}:
    what `lsr index` reads back. Written to --out (replaced only once complete) or stdout."""
    remote = _remote(args)
    out_path = Path(args.out) if args.out and args.out != "-" else None
    tmp = out_path.with_name(f".{out_path.name}.tmp") if out_path is not None else None
    n = 0
    try:
        with (open(tmp, "w", encoding="utf-8") if tmp is not None else _stdout()) as out:
            if remote is not None:
                with remote:
                    docs = remote.documents(args.collection, args.filter)
                    n = _write_jsonl(out, docs)
            else:
                n = _write_jsonl(out, _export_local(args))
        if tmp is not None:
            os.replace(tmp, out_path)
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
    print(f"exported {n} documents from {args.collection!r}" + (f" to {out_path}" if out_path else ""),
          file=sys.stderr)
    return 0


@contextmanager
def _stdout():
    yield sys.stdout
    sys.stdout.flush()


def _write_jsonl(out, docs) -> int:
    n = 0
    for d in docs:
        out.write(json.dumps({"id": d["id"], "text": d["text"], "metadata": d["metadata"]},
                             ensure_ascii=False) + "\n")
        n += 1
    return n


def seismic_search(query_cut: int, heap_factor: float):
    """A ``search`` for ``encoders.evaluate.run_eval``: build a Seismic index over the corpus
    vectors, answer the queries with it (approximate top-k)."""
    def search(queries, docs, k):
        import scipy.sparse as sp

        from indexer import SeismicIndex
        if not sp.issparse(docs):
            raise ValueError("--index seismic indexes sparse vectors; the dense encoder has none "
                             "(use --index exact)")
        t0 = time.perf_counter()
        index = SeismicIndex.build(docs)
        print(f"Seismic index over {docs.shape[0]} documents built in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
        return index.search_batch(queries, k=k, query_cut=query_cut, heap_factor=heap_factor)
    return search


def cmd_eval(args) -> int:
    if args.encoder is not None:
        return _eval_encoder(args)
    from encoders.beir import BeirDataset
    from encoders.metrics import evaluate

    from .indexing import index_records
    from .pipeline import SearchPipeline
    ds = BeirDataset.load(args.folder, args.split)
    s = _settings(args)
    name = args.collection or f"beir-{ds.name}"[:64]
    with _local_store(s) as store:
        _ensure_collection(store, name, args)
        if store.stats(name)["documents"] != len(ds.doc_ids):  # index once, reuse afterwards
            index_records(store, name, ((i, t, None) for i, t in zip(ds.doc_ids, ds.doc_texts)),
                          len(ds.doc_ids), progress=not args.no_progress)
        pipe = SearchPipeline(store, s.max_k)
        run, reranks, t0 = {}, [], time.perf_counter()
        for qid, text in zip(ds.query_ids, ds.query_texts):
            res = pipe.search(name, _search_request(args, text or " "))
            # scores by rank: the pipeline's order exactly (a reranked head's MaxSim and the
            # first-stage scores after it are not on one scale)
            run[qid] = {r.id: float(len(res.results) - i) for i, r in enumerate(res.results)}
            if res.rerank_stats is not None:
                reranks.append(res.rerank_stats)
        elapsed = time.perf_counter() - t0
    metrics = evaluate(run, ds.qrels, 10, args.k)
    for m, v in metrics.items():
        print(f"{m} {v:.4f}")
    rerank = _rerank_summary(reranks)
    if rerank:
        print(f"rerank per query: {rerank['candidates']:.1f} candidates, {rerank['pruned']:.1f} pruned, "
              f"{rerank['scored']:.1f} scored (mean; scored min {rerank['scored_min']}, max "
              f"{rerank['scored_max']})")
    print(f"{len(run)} queries in {elapsed:.1f} s ({len(run) / elapsed:.1f} q/s)", file=sys.stderr)
    if args.run_file:
        from encoders.metrics import write_trec_run
        n = write_trec_run(args.run_file, run, tag=f"lsr-{args.mode}{'-rerank' if args.rerank else ''}")
        print(f"TREC run: {n} lines to {args.run_file}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"dataset": ds.name, "mode": args.mode, "rerank": args.rerank,
                                               "fusion": args.fusion, **metrics,
                                               "rerank_per_query": rerank or None}, indent=2) + "\n")
    return 0


def _rerank_summary(stats: list[dict]) -> dict:
    """Means over the queries of the rerank counts (candidates, pruned by alpha, scored)."""
    if not stats:
        return {}
    out = {k: sum(s[k] for s in stats) / len(stats) for k in ("candidates", "pruned", "scored")}
    scored = [s["scored"] for s in stats]
    return {**out, "scored_min": min(scored), "scored_max": max(scored), "queries": len(stats)}


def _search_options(p) -> None:
    p.add_argument("--mode", choices=["sparse", "bm25", "dense", "hybrid"], default="hybrid")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--fusion", choices=["rrf", "convex"])
    p.add_argument("--alpha", type=float, default=0.5, help="convex fusion: weight of the dense list")
    p.add_argument("--rerank", action="store_true", help="multivector MaxSim rerank")
    p.add_argument("--kappa", type=int, default=50)
    p.add_argument("--rerank-alpha", type=float, default=0.0)
    p.add_argument("--rerank-beta", type=int, default=None)
    p.add_argument("--rerank-top", type=int, default=None,
                   help="top-k the early exit tracks (default: --k; `lsr eval` retrieves k=100)")
    p.add_argument("--rerank-weight", type=float, default=None,
                   help="interpolate: weight of the normalised first-stage score (default: MaxSim only)")


def cmd_train(args) -> int:
    """Train a model and write its registry entry (training/cli.py)."""
    _settings(args).apply()  # LSR_DEVICE, LSR_TORCH_THREADS, the models dir: as for the server
    from training.cli import run
    return run(args)


def _train_options(p) -> None:
    from training.cli import add_arguments
    add_arguments(p)


def _eval_encoder(args) -> int:
    from encoders.evaluate import run_from_args
    _settings(args).apply()  # LSR_TORCH_THREADS, the models dir: as for the other local commands
    if args.index == "exact":
        return run_from_args(args)
    from indexer.query import DEFAULTS  # imported late: it loads the indexer (seconds)
    cut = DEFAULTS.query_cut if args.query_cut is None else args.query_cut
    heap = DEFAULTS.heap_factor if args.heap_factor is None else args.heap_factor
    return run_from_args(args, seismic_search(cut, heap), "seismic")


def _encoder_options(p) -> None:
    p.add_argument("--no-sparse", action="store_true", help="new collection without SPLADE")
    p.add_argument("--no-dense", action="store_true", help="new collection without dense/multivector")
    p.add_argument("--no-bm25", action="store_true", help="new collection without BM25")
    p.add_argument("--store-tokens", choices=["fp16", "int8"], help="new collection: store the "
                   "documents' token vectors for reranking (else encoded from the text per query)")
    p.add_argument("--token-dim", type=int, help="with --store-tokens: project them to this many "
                   "dimensions (a fixed projection; default: the multivector encoder's)")


def _location_options(p) -> None:
    """Where the collections are: a data directory opened here, or a server's REST API."""
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--url", help="a running server (default: $LSR_URL); its key comes from $LSR_API_KEY")


class _Parser(argparse.ArgumentParser):
    """A sub-command parser that can add arguments only once it parses: `lsr eval`'s encoder
    options come from encoders.evaluate, which imports numpy and scipy (0.2 s) that
    `lsr --help` and the other commands have no use for."""

    def __init__(self, *args, deferred=None, **kw):
        super().__init__(*args, **kw)
        self._deferred = deferred

    def parse_known_args(self, args=None, namespace=None):
        if self._deferred is not None:
            add, self._deferred = self._deferred, None
            add(self)
        return super().parse_known_args(args, namespace)


def _eval_encoder_options(p) -> None:
    from encoders.evaluate import add_encoder_arguments
    g = p.add_argument_group("one encoder alone (--encoder)")
    add_encoder_arguments(g, required=False)
    g.add_argument("--index", choices=["exact", "seismic"], default="exact",
                   help="--encoder: brute-force search, or a Seismic index over the corpus vectors")
    g.add_argument("--query-cut", type=int, help="--index seismic: query terms used "
                   "(default: the search API's)")
    g.add_argument("--heap-factor", type=float, help="--index seismic: block pruning "
                   "(default: the search API's)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lsr", description="lsr-search: learned sparse retrieval service")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("index", help="index a JSONL / Parquet file or a BEIR folder")
    p.add_argument("source", type=Path)
    p.add_argument("--collection", required=True)
    _location_options(p)
    p.add_argument("--format", choices=["jsonl", "parquet", "beir"])
    p.add_argument("--chunk", type=int, default=64, help="documents per write (local; a server uses its own)")
    p.add_argument("--no-progress", action="store_true")
    _encoder_options(p)
    p.set_defaults(func=cmd_index)
    p = sub.add_parser("serve", help="serve every collection under the data dir")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--preload", action="store_true", help="load the default models before /readyz")
    p.add_argument("--workers", type=int, default=1, help="processes serving the port: one writes, "
                   "the others read and forward writes to it")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("search", help="search a collection")
    p.add_argument("query")
    p.add_argument("--collection", required=True)
    _location_options(p)
    p.add_argument("--json", action="store_true")
    _search_options(p)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--depth", type=int, help="first-stage candidates per list (default: the server's, 100)")
    p.add_argument("--filter", help='metadata filter as JSON, e.g. \'{"topic": "energy"}\'')
    p.add_argument("--must-not", action="append", metavar="TEXT",
                   help="leave out documents containing this word or phrase (repeatable)")
    p.add_argument("--negation", action="store_true", help='read "..., but not X" / "without X" in the query')
    p.add_argument("--highlight", action="store_true", help="the passages that match, per result")
    p.add_argument("--facet", action="append", metavar="KEY", help="value counts of a metadata key (repeatable)")
    p.set_defaults(func=cmd_search)
    p = sub.add_parser("collections", help="list the collections and their sizes")
    _location_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_collections)
    p = sub.add_parser("export", help="write every document of a collection as JSONL (id order)")
    p.add_argument("collection")
    p.add_argument("--out", help="output file (default: stdout); written whole or not at all")
    p.add_argument("--filter", help='only documents whose metadata match, e.g. \'{"topic": "energy"}\'')
    _location_options(p)
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("eval", help="nDCG@10 / recall on a BEIR folder: of the full pipeline, or "
                       "with --encoder of one encoder alone", deferred=_eval_encoder_options)
    p.add_argument("folder", type=Path)
    p.add_argument("--split", default="test")
    p.add_argument("--collection", help="default: beir-<folder name>")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--run-file", type=Path, help="write the results as a TREC run file (qid Q0 doc "
                   "rank score tag) for pytrec_eval, ir-measures, ranx or trec_eval")
    p.add_argument("--no-progress", action="store_true")
    _search_options(p)
    _encoder_options(p)
    p.set_defaults(func=cmd_eval, k=100)  # deep enough for R@100
    p = sub.add_parser("train", help="train an inference-free, CSR or multivector model from a BEIR "
                       "folder into a model directory a collection can name", deferred=_train_options)
    p.set_defaults(func=cmd_train)
    from .cluster.cli import add_commands  # argparse only: Ray loads when a cluster command runs
    add_commands(sub)
    return ap


def _is_lsr_error(exc: Exception) -> bool:
    """The indexer's LsrError (bad input, not found, locked, damaged: the message says which).
    Looked up rather than imported: importing indexer loads numpy and numba, and a command that
    never loaded it (a remote one) cannot have raised it."""
    errors = sys.modules.get("indexer.errors")
    return errors is not None and isinstance(exc, errors.LsrError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "k", 10) < 1:
        print("lsr: --k must be >= 1", file=sys.stderr)
        return 2
    from .remote import RemoteError  # light: httpx only
    try:
        return args.func(args)
    except Exception as exc:
        if not (isinstance(exc, (RemoteError, FileNotFoundError, ValueError)) or _is_lsr_error(exc)):
            raise
        print(f"lsr: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
