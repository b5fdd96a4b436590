"""MaxSim rerank on SciFact: nDCG@10 and per-query latency with and without alpha / beta pruning.

    python -m benchmarks.rerank [--data ../shared/data/scifact] [--fusion convex --fusion-alpha 0.3]
        [--kappa 50] [--weight W] [--multivector MODEL_OR_PROJECTION] [--alpha A --beta B]
        [--on-demand-queries 20] [--json out.json] [--plot benchmarks/rerank.png]
        [--select-queries dev.json --tolerance 0.002 --alphas 0,0.05,0.1 --betas none,5,10] [--select-only]
    python -m benchmarks.rerank --grid [--split train]       # choose fusion / weight / kappa
    python -m benchmarks.rerank --pipeline [--variants int8-128,int8,fp16] [--on-demand-queries 10]
                                                             # stored token vectors, end to end

First stage: the service pipeline's own stages (query encoders, per-list collection search to
depth 100, fusion) over a collection of the SciFact corpus built once under ``--cache``. The
dense document vectors and the multivector token states come from one MiniLM pass over the
corpus (``--cache``/doc_states.npy, float16, written by ``--encode``); the token vectors the
reranker sees are those states through the projection (if any) and L2-normalised, exactly as
``MultiVectorEncoder`` computes them.

Unless --alpha / --beta are given, they are chosen on the train queries (qrels/train.tsv):
the pair that scores the fewest candidates with a train nDCG@10 no lower than exhaustive
reranking minus ``--tolerance`` (``--select-queries``: on those train queries only;
``--alphas`` / ``--betas``: the grid; ``--select-only``: print the grid and stop). Then, on the test queries, every query is reranked exhaustively (alpha=0,
beta=None) and with the chosen alpha / beta in the same run, alternating which goes first,
three times each (the median counts); token vectors come from memory (the steady state of a
service whose token cache holds the collection). ``--on-demand-queries N`` also times both
arms on N test queries encoding the candidates' token vectors from text on each call (cold
token cache). Prints a markdown table; ``--json`` writes the numbers, ``--plot`` a figure.
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
# numpy's BLAS must run on one thread too: MaxSim's matrix products are timed single-threaded.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, os.environ.get("LSR_TORCH_THREADS", "1"))

ROOT = Path(__file__).resolve().parent.parent
DEPTH = 100
ALPHAS = (0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
BETAS = (None, 2, 3, 4, 5, 6, 8, 10, 15, 20)


# ---------------------------------------------------------------------------- caches
def encode_corpus_states(ds, cache: Path, model: str, shard: int = 0, shards: int = 1) -> None:
    """One MiniLM pass: raw token states (float16, padded) and dense vectors of the corpus."""
    import torch

    from encoders.dense import mean_pool
    from encoders.transformer import TokenStates
    ts = TokenStates(model, None, True)
    n = len(ds.doc_texts)
    path = cache / "doc_states.npy"
    if not path.exists():
        np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, ts.max_length, ts.hidden_size))
    states = np.lib.format.open_memmap(path, mode="r+")
    rows = list(range(shard, n, shards))
    lens = np.zeros(n, np.int32)
    dense = np.zeros((n, ts.hidden_size), np.float32)
    for idx, st, m in ts.batches([ds.doc_texts[r] for r in rows], 32, "corpus token states"):
        pooled = torch.nn.functional.normalize(mean_pool(st, m), dim=-1).numpy()
        for b, (j, length) in enumerate(zip(idx, m.sum(1).tolist())):
            states[rows[j], :length] = st[b, :length].numpy().astype(np.float16)
            lens[rows[j]], dense[rows[j]] = length, pooled[b]
    states.flush()
    np.save(cache / f"doc_lens.{shard}.npy", lens)
    np.save(cache / f"doc_dense.{shard}.npy", dense)


def _merged(cache: Path, stem: str) -> np.ndarray:
    parts = sorted(cache.glob(f"{stem}.*.npy"))
    if not parts:
        raise FileNotFoundError(f"no {stem}.*.npy under {cache}: run with --encode first")
    return sum(np.load(p) for p in parts)


def build_collection(ds, cache: Path, dense_model: str):
    """The SciFact collection (SPLADE + BM25 + dense), indexed once through the service store;
    the dense document vectors are the cached MiniLM pass's (mean pool of the same states)."""
    from service.encoder_cache import ENCODERS
    from service.indexing import index_records
    from service.store import Store
    store = Store(cache / "collections")
    name = "beir-scifact"
    if name not in store.names():
        store.create(name, "splade-tiny", dense_model, dense_model, bm25=True)
    if store.stats(name)["documents"] != len(ds.doc_ids):
        dense = _merged(cache, "doc_dense")
        row = {t: i for i, t in enumerate(ds.doc_texts)}
        enc = ENCODERS.dense(dense_model)
        enc.encode_documents = lambda texts, batch_size=32: dense[[row[t] for t in texts]]
        try:
            index_records(store, name, ((i, t, None) for i, t in zip(ds.doc_ids, ds.doc_texts)),
                          len(ds.doc_ids))
        finally:
            del enc.encode_documents
    return store, name


def first_stage_lists(ds, split: str, cache: Path, dense_model: str) -> dict[str, dict[str, list]]:
    """{query id: {list name: [[doc id, score], ...]}} to depth 100, as the pipeline retrieves."""
    path = cache / f"lists.{split}.json"
    if path.exists():
        return json.loads(path.read_text())
    from service.pipeline import SearchPipeline
    store, name = build_collection(ds, cache, dense_model)
    try:
        pipe = SearchPipeline(store)
        coll = store.get(name)
        enc = store.encoder_set(coll)
        out = {}
        for qid, text in zip(ds.query_ids, ds.query_texts):
            qv = pipe._encode_query(text or " ", enc.fields, enc, coll)
            hits: dict = {}
            out[qid] = {f: pipe._retrieve(coll, f, qv, DEPTH, None, hits) for f in enc.fields}
    finally:
        store.close()
    path.write_text(json.dumps(out))
    return out


def query_states(texts: dict[str, str], cache: Path, model: str) -> dict[str, np.ndarray]:
    path = cache / "query_states.npz"
    have = dict(np.load(path)) if path.exists() else {}
    todo = [q for q in texts if q not in have]
    if todo:
        from training.multivector import encode_states
        for q, s in zip(todo, encode_states([texts[q] or " " for q in todo], model, progress=False)):
            have[q] = s
        np.savez(path, **have)
    return have


def project(states: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """What MultiVectorEncoder does to hidden states: optional projection, then L2 norm."""
    x = np.asarray(states, np.float32)
    if weight is not None:
        x = x @ weight.T
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def load_projection(spec: str | None) -> np.ndarray | None:
    if not spec:
        return None
    from encoders.models import resolve
    from encoders.multivector import find_projection
    p = Path(spec)
    w = find_projection(resolve(spec), p if p.suffix in (".safetensors", ".pt") else None)
    return None if w is None else w.numpy()


class Tokens:
    """Document token vectors of the corpus in memory (one float32 [n_tokens, dim] per doc)."""

    def __init__(self, cache: Path, ds, weight: np.ndarray | None):
        states = np.load(cache / "doc_states.npy", mmap_mode="r")
        lens = _merged(cache, "doc_lens")
        self.pos = {d: i for i, d in enumerate(ds.doc_ids)}
        self.docs = [project(states[i, :n], weight) for i, n in enumerate(lens)]

    def __call__(self, ids: list[str]) -> list[np.ndarray]:
        return [self.docs[self.pos[d]] for d in ids]


# ---------------------------------------------------------------------------- evaluation
def fuse(lists: dict[str, list], method: str, alpha: float) -> list[tuple[str, float]]:
    from service import fusion
    lists = {n: [tuple(x) for x in lst] for n, lst in lists.items()}
    if method == "rrf":
        return fusion.rrf(lists, 60.0)
    return fusion.convex(lists, fusion.hybrid_weights(list(lists), alpha), "minmax")


def rerank_one(fused, q_tokens, tokens, kappa, weight, alpha=0.0, beta=None, top=10):
    """The pipeline's rerank step: reranked head, then the rest in first-stage order."""
    from service.rerank import maxsim_rerank
    scored, stats = maxsim_rerank(fused[:kappa], q_tokens, tokens, top, alpha, beta,
                                  first_stage_weight=weight)
    done = {d for d, _ in scored}
    return scored + [(d, s) for d, s in fused if d not in done], stats


def metrics(rankings: dict[str, list], qrels) -> dict[str, float]:
    from encoders.metrics import evaluate
    run = {q: {d: float(len(r) - i) for i, (d, _) in enumerate(r[:DEPTH])} for q, r in rankings.items()}
    m = evaluate(run, {q: qrels[q] for q in rankings}, 10, 100)
    return {"ndcg@10": m["nDCG@10"], "recall@100": m["R@100"]}


class ScoreTable:
    """MaxSim of every (query, candidate) pair a grid can ask for, computed once with the real
    token vectors; ``query`` / ``fetch`` then stand in for them in ``maxsim_rerank`` (each query
    token a 1-d vector of 1, each document one 1-d token of MaxSim / query tokens), so a grid
    over weights and alpha / beta runs the service's own rerank code at no MaxSim cost."""

    def __init__(self, fused_by_method: list[dict], qtok, tokens, kappa: int):
        from encoders.multivector import maxsim_scores
        self.n_q, self.table = {}, {}
        for q in fused_by_method[0]:
            ids = list(dict.fromkeys(d for f in fused_by_method for d, _ in f[q][:kappa]))
            sims = maxsim_scores(qtok[q], tokens(ids))
            n = len(qtok[q])
            self.n_q[q] = n
            self.table.update({(q, d): np.array([[s / max(n, 1)]], np.float32) for d, s in zip(ids, sims)})

    def query(self, q):
        return np.ones((self.n_q[q], 1), np.float32)

    def fetcher(self, q):
        return lambda ids: [self.table[(q, d)] for d in ids]


def evaluate_config(fused, table: ScoreTable, qrels, kappa, weight, alpha=0.0, beta=None, rerank=True):
    rankings, scored = {}, []
    for q, f in fused.items():
        if rerank:
            rankings[q], st = rerank_one(f, table.query(q), table.fetcher(q), kappa, weight, alpha, beta)
            scored.append(st.scored)
        else:
            rankings[q] = f
    m = metrics(rankings, qrels)
    m["scored"] = float(np.mean(scored)) if scored else 0.0
    return m, rankings


def choose_alpha_beta(fused, table, qrels, kappa, weight, tolerance=0.0, alphas=ALPHAS,
                      betas=BETAS) -> tuple[list[dict], dict]:
    """Grid on the given (train) queries: every (alpha, beta) with nDCG@10 and candidates scored;
    the choice scores the fewest candidates with an nDCG@10 loss against exhaustive of at most
    ``tolerance``. The first entry is exhaustive (alpha=0, beta=None) whatever the grid."""
    grid = []
    pairs = [(0.0, None)] + [(a, b) for a in alphas for b in betas if (a, b) != (0.0, None)]
    for a, b in pairs:
        m, _ = evaluate_config(fused, table, qrels, kappa, weight, a, b)
        grid.append({"alpha": a, "beta": b, **m})
    base = grid[0]
    ok = [g for g in grid if g["ndcg@10"] >= base["ndcg@10"] - tolerance - 1e-9]
    best = min(ok, key=lambda g: (g["scored"], -g["ndcg@10"]))
    return grid, best


def print_grid(grid: list[dict], best: dict, n_queries: int, tolerance: float) -> None:
    print("\n| alpha | beta | selection nDCG@10 | loss vs exhaustive | candidates scored |\n|---:|---:|---:|---:|---:|")
    for g in grid:
        print(f"| {g['alpha']} | {g['beta']} | {g['ndcg@10']:.4f} | {grid[0]['ndcg@10'] - g['ndcg@10']:+.4f} | "
              f"{g['scored']:.1f} |")
    print(f"\nalpha / beta chosen on train ({n_queries} queries): fewest candidates scored "
          f"with train nDCG@10 >= exhaustive ({grid[0]['ndcg@10']:.4f}) - {tolerance}: alpha={best['alpha']}, "
          f"beta={best['beta']} (train nDCG@10 {best['ndcg@10']:.4f}, {best['scored']:.1f} scored)")


def _pct(x, p):
    return float(np.percentile(np.asarray(x) * 1e3, p))


def time_arms(queries, fused, qtok, fetch, kappa, weight, arms, repeats=3):
    """Per query, every arm ``repeats`` times in alternating order; the median counts.
    Returns the latencies (s) and each arm's rankings (reranked head + first-stage rest)."""
    from service.rerank import maxsim_rerank
    lat = {name: [] for name in arms}
    rankings = {name: {} for name in arms}
    scored = {name: [] for name in arms}
    for qi, q in enumerate(queries):
        per = {name: [] for name in arms}
        for r in range(repeats):
            order = list(arms) if (qi + r) % 2 == 0 else list(arms)[::-1]
            for name in order:
                a, b = arms[name]
                t0 = time.perf_counter()
                got, st = maxsim_rerank(fused[q][:kappa], qtok[q], fetch, 10, a, b, first_stage_weight=weight)
                per[name].append(time.perf_counter() - t0)
                if r == 0:
                    done = {d for d, _ in got}
                    rankings[name][q] = got + [(d, s) for d, s in fused[q] if d not in done]
                    scored[name].append(st.scored)
        for name in arms:
            lat[name].append(float(np.median(per[name])))
    return lat, rankings, scored


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "rerank")
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="backbone of the dense and multivector encoders")
    ap.add_argument("--multivector", help="trained projection: a model folder or a .safetensors")
    ap.add_argument("--fusion", choices=["rrf", "convex"], default="convex")
    ap.add_argument("--fusion-alpha", type=float, default=0.3, help="convex: dense weight (0.3: chosen on train)")
    ap.add_argument("--kappa", type=int, default=50)
    ap.add_argument("--weight", type=float, default=None, help="first_stage_weight (null: MaxSim only)")
    ap.add_argument("--alpha", type=float)
    ap.add_argument("--beta", type=int)
    ap.add_argument("--no-beta", action="store_true", help="with --alpha: beta=None")
    ap.add_argument("--on-demand-queries", type=int, default=0)
    ap.add_argument("--select-queries", type=Path, help="JSON list of train query ids to choose alpha / beta on "
                    "(e.g. those a trained projection did not see)")
    ap.add_argument("--tolerance", type=float, default=0.0, help="nDCG@10 loss on train that counts as none")
    ap.add_argument("--alphas", help="comma-separated alpha grid (default: %s)" % ",".join(map(str, ALPHAS)))
    ap.add_argument("--betas", help="comma-separated beta grid, 'none' for no early exit "
                    "(default: %s)" % ",".join(map(str, BETAS)).lower())
    ap.add_argument("--select-only", action="store_true", help="print the alpha / beta grid and choice, then stop")
    ap.add_argument("--encode", action="store_true", help="encode the corpus token states first")
    ap.add_argument("--shard", type=str, default="0/1", help="with --encode: i/n")
    ap.add_argument("--grid", action="store_true", help="print nDCG@10 of fusion x kappa x weight on --split")
    ap.add_argument("--split", default="train")
    ap.add_argument("--queries", type=Path, help="JSON list of query ids to restrict --grid to")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("LSR_TORCH_THREADS", "1")))
    ap.add_argument("--pipeline", action="store_true", help="end to end through SearchPipeline: "
                    "collections that store token vectors (--variants) against the on-demand path")
    ap.add_argument("--two-pass-arm", action="store_true", help="with --pipeline: also time the first variant "
                    "with the dense and multivector query encoders running MiniLM separately (before sharing)")
    ap.add_argument("--pipeline-split", default="test", help="with --pipeline: the queries and qrels "
                    "(train: to choose a setting before the test run)")
    ap.add_argument("--int8-query-arm", action="store_true", help="with --pipeline: also time the first "
                    "variant with dense and multivector queries through the int8 ONNX graph (LSR_QUERY_INT8)")
    ap.add_argument("--variants", default="int8-128,int8,fp16", help="with --pipeline: of %s" % ",".join(VARIANTS))
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    if args.pipeline:
        args.cache.mkdir(parents=True, exist_ok=True)
        return pipeline_bench(args)
    from encoders.beir import BeirDataset
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.encode:
        i, n = (int(x) for x in args.shard.split("/"))
        encode_corpus_states(BeirDataset.load(args.data, "test"), args.cache, args.model, i, n)
        return 0
    weight = load_projection(args.multivector)
    splits = [args.split] if args.grid else ["train", "test"]
    data = {s: BeirDataset.load(args.data, s) for s in splits}
    texts = {q: t for ds in data.values() for q, t in zip(ds.query_ids, ds.query_texts)}
    qstates = query_states(texts, args.cache, args.model)
    qtok = {q: project(qstates[q], weight) for q in texts}
    lists = {s: first_stage_lists(ds, s, args.cache, args.model) for s, ds in data.items()}
    tokens = Tokens(args.cache, data[splits[0]], weight)
    print(f"token vectors: dim {tokens.docs[0].shape[1]}, projection {args.multivector or 'none'}",
          file=sys.stderr)

    if args.grid:
        ds = data[args.split]
        keep = set(json.loads(args.queries.read_text())) if args.queries else None
        fused_m = {m: {q: fuse(ls, m, args.fusion_alpha) for q, ls in lists[args.split].items()
                       if keep is None or q in keep} for m in ("rrf", "convex")}
        table = ScoreTable(list(fused_m.values()), qtok, tokens, 100)
        print(f"{args.split}: {len(fused_m['rrf'])} queries, multivector {args.multivector or 'no projection'}\n")
        print("| fusion | kappa | first_stage_weight | nDCG@10 | R@100 |\n|---|---:|---|---:|---:|")
        rows = []
        for method, fused in fused_m.items():
            m, _ = evaluate_config(fused, table, ds.qrels, 0, None, rerank=False)
            print(f"| {method} | - | no rerank | {m['ndcg@10']:.4f} | {m['recall@100']:.4f} |")
            for kappa in (50, 100):
                for w in (None, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
                    m, _ = evaluate_config(fused, table, ds.qrels, kappa, w)
                    rows.append({"fusion": method, "kappa": kappa, "weight": w, **m})
                    print(f"| {method} | {kappa} | {w} | {m['ndcg@10']:.4f} | {m['recall@100']:.4f} |",
                          flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
        return 0

    fused = {s: {q: fuse(ls, args.fusion, args.fusion_alpha) for q, ls in lists[s].items()} for s in splits}
    train, test = data["train"], data["test"]
    grid = None
    if args.alpha is None and args.beta is None and not args.no_beta:
        sel = fused["train"]
        if args.select_queries:
            keep = set(json.loads(args.select_queries.read_text()))
            sel = {q: f for q, f in sel.items() if q in keep}
        table = ScoreTable([sel], qtok, tokens, args.kappa)
        alphas = tuple(float(x) for x in args.alphas.split(",")) if args.alphas else ALPHAS
        betas = (tuple(None if x.strip().lower() == "none" else int(x) for x in args.betas.split(","))
                 if args.betas else BETAS)
        grid, best = choose_alpha_beta(sel, table, train.qrels, args.kappa, args.weight, args.tolerance,
                                       alphas, betas)
        alpha, beta = best["alpha"], best["beta"]
        if args.select_only:
            print_grid(grid, best, len(sel), args.tolerance)
            return 0
    else:
        alpha, beta = args.alpha or 0.0, None if args.no_beta else args.beta
    arms = {"exhaustive": (0.0, None), f"alpha={alpha}, beta={beta}": (alpha, beta)}
    pruned_name = list(arms)[1]
    first = metrics(fused["test"], test.qrels)
    queries = list(fused["test"])
    lat, rankings, scored = time_arms(queries, fused["test"], qtok, tokens, args.kappa, args.weight, arms)
    quality = {name: {**metrics(rankings[name], test.qrels), "scored": float(np.mean(scored[name]))}
               for name in arms}
    lat_od = None
    if args.on_demand_queries:
        from encoders.multivector import MultiVectorEncoder
        spec = args.multivector
        p = Path(spec) if spec else None
        if p is not None and p.suffix in (".safetensors", ".pt"):
            enc = MultiVectorEncoder(args.model, projection=p, progress=False)
        else:
            enc = MultiVectorEncoder(spec or args.model, progress=False)
        text = dict(zip(test.doc_ids, test.doc_texts))
        fetch = lambda ids: enc.encode_documents([text[d] for d in ids], batch_size=16)  # noqa: E731
        lat_od = time_arms(queries[:args.on_demand_queries], fused["test"], qtok, fetch, args.kappa,
                           args.weight, arms, repeats=1)[0]

    def row(name, lt, m):
        return (f"| {name} | {m['ndcg@10']:.4f} | {m['recall@100']:.4f} | {m['scored']:.1f} | "
                f"{np.mean(lt) * 1e3:.2f} | {_pct(lt, 50):.2f} | {_pct(lt, 99):.2f} |")
    fusion_name = "RRF k=60" if args.fusion == "rrf" else f"convex min-max, dense weight {args.fusion_alpha}"
    print(f"SciFact test ({len(queries)} queries); first stage: hybrid {fusion_name}, "
          f"nDCG@10 {first['ndcg@10']:.4f}, R@100 {first['recall@100']:.4f}; rerank kappa={args.kappa}, "
          f"first_stage_weight={args.weight}, multivector {args.multivector or args.model + ' (no projection)'}, "
          f"{args.threads} thread(s)\n")
    print("| rerank (token vectors in memory) | nDCG@10 | R@100 | candidates scored | mean ms | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in arms:
        print(row(name, lat[name], quality[name]))
    speed = np.mean(lat["exhaustive"]) / np.mean(lat[pruned_name])
    print(f"\nspeed-up (mean latency, exhaustive / pruned): {speed:.2f}x; "
          f"p50 {_pct(lat['exhaustive'], 50) / _pct(lat[pruned_name], 50):.2f}x")
    speed_od = None
    if lat_od:
        n = len(lat_od["exhaustive"])
        print(f"\n| rerank (token vectors encoded on demand, first {n} queries) | mean ms | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|")
        for name in arms:
            print(f"| {name} | {np.mean(lat_od[name]) * 1e3:.0f} | {_pct(lat_od[name], 50):.0f} | "
                  f"{_pct(lat_od[name], 99):.0f} |")
        speed_od = np.mean(lat_od["exhaustive"]) / np.mean(lat_od[pruned_name])
        print(f"\nspeed-up with on-demand encoding: {speed_od:.2f}x")
    if grid is not None:
        print_grid(grid, best, len(sel), args.tolerance)
    out = {"kappa": args.kappa, "fusion": args.fusion, "fusion_alpha": args.fusion_alpha,
           "first_stage_weight": args.weight, "multivector": args.multivector, "alpha": alpha, "beta": beta,
           "first_stage": first, "quality": quality, "speedup": speed, "speedup_on_demand": speed_od,
           "latency_ms": {k: [x * 1e3 for x in v] for k, v in lat.items()},
           "latency_on_demand_ms": {k: [x * 1e3 for x in v] for k, v in (lat_od or {}).items()},
           "train_grid": grid}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if args.plot:
        plot(out, pruned_name, args.plot)
    return 0


# ---------------------------------------------------------------------------- stored token vectors
VARIANTS = {"fp16": ("fp16", None), "int8": ("int8", None), "fp16-128": ("fp16", 128), "int8-128": ("int8", 128)}


def stored_variant(store, base_name: str, ds, cache: Path, model: str, variant: str) -> str:
    """A copy of the base collection that stores token vectors (``VARIANTS``): same vectors,
    texts and lengths, the tokens from the cached MiniLM states through what the service's
    upsert applies (normalise as MultiVectorEncoder, then the collection's fixed projection)."""
    from encoders.multivector import project_tokens
    from service.store import token_projection
    dtype, dim = VARIANTS[variant]
    name = f"{base_name}-{variant}"
    if name in store.names() and store.stats(name)["documents"] == len(ds.doc_ids):
        return name
    if name in store.names():
        store.drop(name)
    coll = store.create(name, "splade-tiny", model, model, bm25=True,
                        index={"store_token_vectors": dtype, "token_dim": dim, "flush_docs": 100_000})
    base = store.get(base_name)
    states = np.load(cache / "doc_states.npy", mmap_mode="r")
    lens = _merged(cache, "doc_lens")
    weight = token_projection(states.shape[2], coll.config.token_dim)
    import scipy.sparse as sp
    for lo in range(0, len(ds.doc_ids), 256):
        ids = ds.doc_ids[lo:lo + 256]
        docs = [base.get(d) for d in ids]
        vecs = {f: (sp.vstack([d.vectors[f] for d in docs], format="csr") if s.kind == "sparse"
                    else np.stack([d.vectors[f] for d in docs]))
                for f, s in base.config.fields.items()}
        lengths = np.array([base._live[d].container.lengths[base._live[d].row] for d in ids], np.int64)
        tokens = [project_tokens(project(states[lo + i, :lens[lo + i]], None), weight) for i in range(len(ids))]
        coll.upsert(list(ids), vecs, texts=[d.text for d in docs], metadata=[d.metadata for d in docs],
                    lengths=lengths, tokens=tokens)
    coll.flush()  # one sealed segment, memory-mapped: the steady state of a served collection
    return name


def pipeline_bench(args) -> int:
    """Reranked hybrid searches end to end through SearchPipeline (encode, retrieve, fuse,
    rerank, fetch), per query every arm in alternating order, the first --on-demand-queries
    also on the on-demand path as it runs today (cold token cache: the candidates' text is
    encoded). nDCG@10 of every stored variant against the on-demand path's rankings with the
    same (float32) token vectors served from memory."""
    from encoders.beir import BeirDataset
    from encoders.query_states import QueryStates
    from service.pipeline import SearchPipeline, TokenCache
    from service.schemas import SearchRequest
    ds = BeirDataset.load(args.data, args.pipeline_split)
    store, base = build_collection(ds, args.cache, args.model)
    variants = args.variants.split(",")
    names = {v: stored_variant(store, base, ds, args.cache, args.model, v) for v in variants}
    body = {"k": 10, "mode": "hybrid", "depth": DEPTH,
            "fusion": {"method": args.fusion, **({"alpha": args.fusion_alpha} if args.fusion == "convex" else {})},
            "rerank": {"kappa": args.kappa, "first_stage_weight": args.weight, "alpha": args.alpha or 0.0,
                       "beta": args.beta}}
    queries = [(q, t or " ") for q, t in zip(ds.query_ids, ds.query_texts)]
    pipe = SearchPipeline(store)
    cold = SearchPipeline(store, token_cache=TokenCache(size=0))  # today's path, nothing cached
    for v in variants:  # load the models, touch the mapped files
        pipe.search(names[v], SearchRequest(query="warm up", **body))
    cold.search(base, SearchRequest(query="warm up", **body))

    from service.timing import Timings
    cpu = {}  # CPU seconds of the process per search (every thread): what the load cannot inflate
    stage = {}  # wall seconds of the rerank stage (query tokens, document tokens, MaxSim)

    # Query states are shared by the dense and multivector encoders (one MiniLM pass per query,
    # encoders/query_states.py) and remembered for repeated texts: every timed search starts with
    # them forgotten, and --two-pass-arm times the first variant with a multivector encoder that
    # runs its own pass (as before the sharing), side by side.
    dense_bb = store.encoders.dense(args.model).backbone
    mv_bb = store.encoders.multivector(args.model).backbone
    shared_side, own_side = mv_bb.shared_queries, QueryStates()
    sides = [shared_side, own_side]
    if args.int8_query_arm:  # the encoder cache keeps the int8-query encoders beside the others
        store.encoders.query_int8 = True
        mv8 = store.encoders.multivector(args.model).backbone
        assert mv8.query_precision == "int8" and mv8.shared_queries is not shared_side
        sides.append(mv8.shared_queries)
        pipe.search(names[variants[0]], SearchRequest(query="warm up", **body))
        store.encoders.query_int8 = False

    def timed(p, name, text, two_pass=False, key=None, int8=False):
        for side in sides:
            side.clear()
        mv_bb.shared_queries = own_side if two_pass else shared_side
        assert two_pass or dense_bb.shared_queries is mv_bb.shared_queries
        store.encoders.query_int8 = int8
        tm = Timings()
        c0, t0 = time.process_time(), time.perf_counter()
        res = p.search(name, SearchRequest(query=text, **body), tm)
        cpu.setdefault(name, []).append(time.process_time() - c0)
        stage.setdefault(key or name, []).append(tm.stages.get("rerank", 0.0))
        return time.perf_counter() - t0, res

    two = f"{variants[0]}, two MiniLM passes" if args.two_pass_arm else None
    if two:
        names[two] = names[variants[0]]
    q8 = f"{variants[0]}, int8 MiniLM queries" if args.int8_query_arm else None
    if q8:
        names[q8] = names[variants[0]]
    arms_all = list(variants) + ([two] if two else []) + ([q8] if q8 else [])
    lat = {v: [] for v in arms_all}
    lat_od, runs, scored = [], {v: {} for v in arms_all}, {v: [] for v in arms_all}
    cpu_arm: dict[str, list] = {v: [] for v in arms_all}
    for qi, (q, text) in enumerate(queries):
        arms = arms_all + (["on-demand"] if qi < args.on_demand_queries else [])
        for arm in (arms if qi % 2 == 0 else arms[::-1]):
            if arm == "on-demand":
                lat_od.append(timed(cold, base, text)[0])
                continue
            c0 = time.process_time()
            dt, res = timed(pipe, names[arm], text, two_pass=arm == two, key=arm, int8=arm == q8)
            cpu_arm[arm].append(time.process_time() - c0)
            lat[arm].append(dt)
            runs[arm][q] = {r.id: float(len(res.results) - i) for i, r in enumerate(res.results)}
            scored[arm].append(res.rerank_stats["scored"])
    store.encoders.query_int8 = False  # the reference's encoders are the float32-query ones
    # the reference: the on-demand path with today's float32 token vectors, from memory
    states = np.load(args.cache / "doc_states.npy", mmap_mode="r")
    lens = _merged(args.cache, "doc_lens")
    row = {t: i for i, t in enumerate(ds.doc_texts)}
    mv = store.encoders.multivector(args.model)
    mv.encode_documents = lambda texts, batch_size=32: [project(states[row[t], :lens[row[t]]], None) for t in texts]
    ref_run, ref_lat = {}, []
    try:
        for q, text in queries:
            dt, res = timed(pipe, base, text)
            ref_lat.append(dt)
            ref_run[q] = {r.id: float(len(res.results) - i) for i, r in enumerate(res.results)}
    finally:
        del mv.encode_documents
    from encoders.metrics import evaluate
    ref = evaluate(ref_run, ds.qrels, 10, 10)["nDCG@10"]
    stats = {v: store.stats(names[v])["token_vectors"] for v in variants}
    load = os.getloadavg()
    print(f"SciFact {args.pipeline_split} ({len(queries)} queries), hybrid {args.fusion} + MaxSim rerank kappa={args.kappa}, "
          f"first_stage_weight={args.weight}, alpha={args.alpha or 0.0}, beta={args.beta}; "
          f"{args.threads} torch thread(s), {len(os.sched_getaffinity(0))} cores; load average at the end "
          f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}\n")
    print("| token vectors | nDCG@10 | delta vs on-demand | top-10 overlap | candidates scored | bytes / doc "
          "| bytes / token | search p50 ms | p90 ms | p99 ms | CPU ms / search p50 | rerank stage p50 ms |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    if lat_od:
        print(f"| on demand, today (first {len(lat_od)} queries, cold token cache) | - | - | - | {args.kappa} | 0 | 0 "
              f"| {_pct(lat_od, 50):.0f} | {_pct(lat_od, 90):.0f} | {_pct(lat_od, 99):.0f} | "
              f"{_pct(cpu[base][1:len(lat_od) + 1], 50):.0f} | {_pct(stage[base][1:len(lat_od) + 1], 50):.0f} |")
    print(f"| on demand, float32 tokens served from memory (the nDCG reference) | {ref:.4f} | - | - | "
          f"{args.kappa} | - | - | {_pct(ref_lat, 50):.1f} | {_pct(ref_lat, 90):.1f} | {_pct(ref_lat, 99):.1f} | - | - |")
    out = {"reference_ndcg@10": ref, "on_demand_ms": [x * 1e3 for x in lat_od], "load": load, "variants": {}}
    for v in arms_all:
        m = evaluate(runs[v], ds.qrels, 10, 10)["nDCG@10"]
        overlap = np.mean([len(set(runs[v][q]) & set(ref_run[q])) / max(len(ref_run[q]), 1) for q in ref_run])
        st = stats[variants[0] if v in (two, q8) else v]
        print(f"| stored {v} | {m:.4f} | {m - ref:+.4f} | {overlap:.3f} | {np.mean(scored[v]):.1f} | "
              f"{st['bytes_per_document']:,.0f} | {st['bytes_per_token']:.0f} | {_pct(lat[v], 50):.1f} | "
              f"{_pct(lat[v], 90):.1f} | {_pct(lat[v], 99):.1f} | {_pct(cpu_arm[v], 50):.1f} | "
              f"{_pct(stage[v][1:], 50):.1f} |")
        out["variants"][v] = {"ndcg@10": m, "overlap": overlap, "token_vectors": st,
                              "latency_ms": [x * 1e3 for x in lat[v]],
                              "cpu_ms": [x * 1e3 for x in cpu_arm[v]]}
    if lat_od:
        same = {v: lat[v][:len(lat_od)] for v in arms_all}
        print(f"\nsame {len(lat_od)} queries, p50 ms: on demand {_pct(lat_od, 50):.0f}; "
              + ", ".join(f"{v} {_pct(x, 50):.1f}" for v, x in same.items()))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    store.close()
    return 0


def plot(out: dict, pruned_name: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    for name, xs in out["latency_ms"].items():
        xs = np.sort(xs)
        ax.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=f"{name} (nDCG@10 {out['quality'][name]['ndcg@10']:.4f})")
    ax.set_xlabel("rerank latency per query (ms), token vectors in memory")
    ax.set_ylabel("fraction of test queries")
    ax.set_title(f"SciFact test, kappa={out['kappa']}: {out['speedup']:.2f}x faster")
    ax.legend(fontsize=8)
    ax = axes[1]
    if out["train_grid"]:
        g = out["train_grid"]
        ax.scatter([x["scored"] for x in g], [x["ndcg@10"] for x in g], s=12, c="grey", label="(alpha, beta) grid")
        ax.scatter([g[0]["scored"]], [g[0]["ndcg@10"]], c="C0", label="exhaustive")
        ch = next(x for x in g if x["alpha"] == out["alpha"] and x["beta"] == out["beta"])
        ax.scatter([ch["scored"]], [ch["ndcg@10"]], c="C1", label=f"chosen: {pruned_name}")
        ax.set_xlabel("candidates scored per query (selection queries, train split)")
        ax.set_ylabel("nDCG@10 (selection queries)")
        ax.set_title("choosing alpha / beta on train (never test)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
