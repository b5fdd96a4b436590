"""Train CSR / CSRv2 top-k sparse autoencoders over frozen dense embeddings and report nDCG.

    python -m training.csr <beir-folder> [--ks 2 4 8 16 32] [--out-dir models/csr]

Training data: dense embeddings of the corpus and of the *train* split's queries; the
contrastive loss uses the train qrels' (query, relevant doc) pairs. Evaluation: the test
split, exact retrieval over the codes, next to the dense embeddings themselves. Each k is
trained twice, with and without CSRv2's progressive k-annealing (from ``--k-start`` down to k).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from encoders.csr import TopKSAE, codes_to_csr


@dataclass
class CSRTrainConfig:
    k: int = 8
    hidden_mult: int = 4  # hidden = hidden_mult x input dim
    steps: int = 1500
    batch_size: int = 256
    lr: float = 1e-3
    anneal: bool = True  # CSRv2: start at k_start, decay geometrically to k
    k_start: int = 64
    anneal_fraction: float = 0.5  # share of steps spent annealing
    aux_weight: float = 1 / 32  # dead-latent auxiliary loss (Gao et al. 2024)
    dead_after: int = 200  # a latent unused for this many steps is dead
    contrastive_weight: float = 0.1
    contrastive_batch: int = 64
    temperature: float = 0.05
    seed: int = 0


def k_schedule(step: int, cfg: CSRTrainConfig) -> int:
    if not cfg.anneal or cfg.k_start <= cfg.k:
        return cfg.k
    t = min(1.0, step / max(1, cfg.anneal_fraction * cfg.steps))
    return max(cfg.k, round(cfg.k_start * (cfg.k / cfg.k_start) ** t))


def _aux_loss(sae: TopKSAE, linear: torch.Tensor, residual: torch.Tensor, dead: torch.Tensor,
              k: int) -> torch.Tensor:
    """Reconstruct the residual error from the dead latents only, to bring them back to life.

    Uses the pre-ReLU values: a dead latent's are usually negative, and after a ReLU it would
    get no gradient at all."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return linear.new_zeros(())
    masked = linear.masked_fill(~dead, float("-inf"))
    vals, idx = masked.topk(min(n_dead, 2 * k), dim=-1)
    err_hat = sae.decode_topk(vals, idx) - sae.b_pre
    return F.mse_loss(err_hat, residual) / residual.pow(2).mean().clamp(min=1e-8)


def train_sae(x: np.ndarray, cfg: CSRTrainConfig, pairs: tuple[np.ndarray, np.ndarray] | None = None,
              progress: bool = True, device: str | None = None) -> tuple[TopKSAE, dict[str, float]]:
    """Fit a top-k SAE to embeddings ``x`` [n, d]; ``pairs`` = (query, doc) embeddings for the
    contrastive term. Returns the model (on the CPU) and final statistics. ``device``: where
    it trains (encoders.device; default the process default)."""
    from encoders import device as devices
    dev = devices.resolve(device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    xt = torch.from_numpy(np.asarray(x, np.float32))
    sae = TopKSAE(xt.shape[1], cfg.hidden_mult * xt.shape[1], cfg.k)
    if dev.type != "cpu":  # the samples are drawn on the CPU (same draws everywhere), then moved
        return _train_on(dev, xt, sae, cfg, pairs, progress, gen)
    with torch.no_grad():
        sae.b_pre.copy_(xt.mean(0))
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    last_fired = torch.zeros(sae.hidden, dtype=torch.long)
    qs = ds = None
    if pairs is not None and cfg.contrastive_weight > 0:
        qs, ds = (torch.from_numpy(np.asarray(p, np.float32)) for p in pairs)
    stats: dict[str, float] = {}
    for step in tqdm(range(cfg.steps), desc=f"CSR k={cfg.k}", disable=not progress, leave=False):
        k = k_schedule(step, cfg)
        batch = xt[torch.randint(len(xt), (cfg.batch_size,), generator=gen)]
        lin = sae.linear(batch)
        pre = torch.relu(lin)
        vals, idx = pre.topk(k, dim=-1)
        recon = sae.decode_topk(vals, idx)
        loss_rec = F.mse_loss(recon, batch) / (batch - batch.mean(0)).pow(2).mean()
        fired = torch.zeros(sae.hidden, dtype=torch.bool)
        fired[idx[vals > 0].unique()] = True
        last_fired[fired] = step
        dead = (step - last_fired) > cfg.dead_after
        loss = loss_rec + cfg.aux_weight * _aux_loss(sae, lin, (batch - recon).detach(), dead, k)
        if qs is not None:
            sel = torch.randint(len(qs), (cfg.contrastive_batch,), generator=gen)
            zq = F.normalize(sae.encode(qs[sel], k), dim=-1)
            zd = F.normalize(sae.encode(ds[sel], k), dim=-1)
            logits = zq @ zd.T / cfg.temperature
            loss = loss + cfg.contrastive_weight * F.cross_entropy(logits, torch.arange(len(sel)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sae.normalise_decoder()
        stats = {"loss_reconstruction": loss_rec.item()}
    sae.eval()
    with torch.no_grad():
        z = sae.encode(xt, cfg.k)
    stats["dead_fraction"] = float((z > 0).sum(0).eq(0).float().mean())
    return sae, stats


def _train_on(dev, xt, sae, cfg, pairs, progress, gen) -> tuple[TopKSAE, dict[str, float]]:
    """train_sae's loop on an accelerator: the same steps, tensors on ``dev``."""
    sae = sae.to(dev)
    with torch.no_grad():
        sae.b_pre.copy_(xt.mean(0).to(dev))
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    last_fired = torch.zeros(sae.hidden, dtype=torch.long, device=dev)
    xd = xt.to(dev)
    qs = ds = None
    if pairs is not None and cfg.contrastive_weight > 0:
        qs, ds = (torch.from_numpy(np.asarray(p, np.float32)).to(dev) for p in pairs)
    stats: dict[str, float] = {}
    for step in tqdm(range(cfg.steps), desc=f"CSR k={cfg.k} ({dev})", disable=not progress, leave=False):
        k = k_schedule(step, cfg)
        batch = xd[torch.randint(len(xt), (cfg.batch_size,), generator=gen).to(dev)]
        lin = sae.linear(batch)
        vals, idx = torch.relu(lin).topk(k, dim=-1)
        recon = sae.decode_topk(vals, idx)
        loss_rec = F.mse_loss(recon, batch) / (batch - batch.mean(0)).pow(2).mean()
        fired = torch.zeros(sae.hidden, dtype=torch.bool, device=dev)
        fired[idx[vals > 0].unique()] = True
        last_fired[fired] = step
        dead = (step - last_fired) > cfg.dead_after
        loss = loss_rec + cfg.aux_weight * _aux_loss(sae, lin, (batch - recon).detach(), dead, k)
        if qs is not None:
            sel = torch.randint(len(qs), (cfg.contrastive_batch,), generator=gen).to(dev)
            zq = F.normalize(sae.encode(qs[sel], k), dim=-1)
            zd = F.normalize(sae.encode(ds[sel], k), dim=-1)
            logits = zq @ zd.T / cfg.temperature
            loss = loss + cfg.contrastive_weight * F.cross_entropy(logits, torch.arange(len(sel), device=dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sae.normalise_decoder()
        stats = {"loss_reconstruction": loss_rec.item()}
    sae = sae.cpu().eval()
    with torch.no_grad():
        z = sae.encode(xt, cfg.k)
    stats["dead_fraction"] = float((z > 0).sum(0).eq(0).float().mean())
    return sae, stats


def train_model(folder: Path, out: Path, k: int = 8, steps: int = CSRTrainConfig.steps,
                hidden_mult: int = CSRTrainConfig.hidden_mult, dense_model: str | None = None,
                device: str | None = None, progress: bool = True, log=print) -> dict:
    """Train one CSRv2 model (k-annealing, contrastive on the train split's pairs) over a
    registered dense model and write it as a registry entry: ``out/csr.pt`` and
    ``out/lsr-model.json`` (kind csr, base the dense model). Returns its test metrics."""
    from encoders import registry
    from encoders.beir import BeirDataset, load_qrels, load_queries
    from encoders.dense import DenseEncoder
    from encoders.evaluate import exact_search, to_run
    from encoders.metrics import evaluate
    from encoders.models import DEFAULT_DENSE

    dense_model = dense_model or DEFAULT_DENSE
    spec = registry.get(dense_model)
    if spec is None or not spec.serves("dense"):
        raise ValueError(f"{dense_model!r} is not a registered dense model (GET /models lists them)")
    ds = BeirDataset.load(folder, "test")
    dense = DenseEncoder(str(spec.weights), progress=progress, device=device)
    doc_emb = dense.encode_documents(ds.doc_texts)
    queries = load_queries(folder)
    try:
        train_qrels = load_qrels(folder, "train")
    except (FileNotFoundError, OSError):
        train_qrels = {}
    train_qids = [q for q in queries if q in train_qrels and q not in ds.qrels]
    pairs = None
    x = doc_emb
    if train_qids:
        train_q = dense.encode_queries([queries[q] for q in train_qids])
        pairs = _train_pairs(train_qrels, {d: i for i, d in enumerate(ds.doc_ids)}, doc_emb,
                             dict(zip(train_qids, train_q)))
        x = np.vstack([doc_emb, train_q])
    cfg = CSRTrainConfig(k=k, steps=steps, hidden_mult=hidden_mult, anneal=True)
    sae, stats = train_sae(x, cfg, pairs, progress=progress, device=device)
    out.mkdir(parents=True, exist_ok=True)
    sae.save(out / "csr.pt", {"dense_model": dense_model, "config": asdict(cfg)})
    registry.write_manifest(out, "csr", base=dense_model, files={"checkpoint": "csr.pt"},
                            options={"k": k}, description=f"CSRv2 k={k} over {dense_model}, trained on {ds.name}")
    with torch.inference_mode():
        m = evaluate(to_run(ds.query_ids, ds.doc_ids, *exact_search(
            codes_to_csr(sae.encode(torch.from_numpy(dense.encode_queries(ds.query_texts)))),
            codes_to_csr(sae.encode(torch.from_numpy(doc_emb))), 100), sparse=True), ds.qrels)
    log(f"CSR k={k}: nDCG@10 {m['nDCG@10']:.4f}  R@100 {m['R@100']:.4f}  dead {stats['dead_fraction']:.3f}; "
        f"wrote {out}")
    return {**m, **stats}


def _train_pairs(ds_train, emb_of_doc: dict[str, int], doc_emb: np.ndarray, q_emb: dict[str, np.ndarray]):
    qs, docs = [], []
    for q, rels in ds_train.items():
        for d, r in rels.items():
            if r > 0 and d in emb_of_doc and q in q_emb:
                qs.append(q_emb[q])
                docs.append(doc_emb[emb_of_doc[d]])
    return np.array(qs, np.float32), np.array(docs, np.float32)


def main(argv: list[str] | None = None) -> int:
    from encoders.beir import BeirDataset, load_qrels, load_queries
    from encoders.dense import DenseEncoder
    from encoders.evaluate import (
        DEFAULT_CACHE,
        cache_path,
        exact_search,
        load_vectors,
        save_vectors,
        to_run,
    )
    from encoders.metrics import evaluate
    from encoders.models import DEFAULT_DENSE, REPO_ROOT

    ap = argparse.ArgumentParser(prog="python -m training.csr", description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    ap.add_argument("--steps", type=int, default=CSRTrainConfig.steps)
    ap.add_argument("--hidden-mult", type=int, default=CSRTrainConfig.hidden_mult)
    ap.add_argument("--contrastive-weight", type=float, default=CSRTrainConfig.contrastive_weight)
    ap.add_argument("--out-dir", type=Path, default=REPO_ROOT / "models" / "csr")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    ds = BeirDataset.load(args.folder, "test")
    dense = DenseEncoder(DEFAULT_DENSE)
    cpath = cache_path(DEFAULT_CACHE, "dense", None, None, ds.corpus_sha256)
    if cpath.is_file():
        doc_emb, _ = load_vectors(cpath)
    else:
        t0 = time.perf_counter()
        doc_emb = dense.encode_documents(ds.doc_texts)
        save_vectors(cpath, doc_emb, {"encode_seconds": np.float64(time.perf_counter() - t0)})
    queries = load_queries(args.folder)
    train_qrels = load_qrels(args.folder, "train")
    train_qids = [q for q in queries if q in train_qrels and q not in ds.qrels]
    train_q = dense.encode_queries([queries[q] for q in train_qids])
    test_q = dense.encode_queries(ds.query_texts)
    pairs = _train_pairs(train_qrels, {d: i for i, d in enumerate(ds.doc_ids)}, doc_emb,
                         dict(zip(train_qids, train_q)))
    x = np.vstack([doc_emb, train_q])
    log(f"training data: {len(doc_emb)} docs + {len(train_q)} train queries, {len(pairs[0])} pairs")

    def score(q, d):
        idx, s = exact_search(q, d, 100)
        return evaluate(to_run(ds.query_ids, ds.doc_ids, idx, s, sparse=not isinstance(q, np.ndarray)), ds.qrels)

    results = {"dense": score(test_q, doc_emb), "csr": []}
    print(f"dense  nDCG@10 {results['dense']['nDCG@10']:.4f}  R@100 {results['dense']['R@100']:.4f}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for k in args.ks:
        for anneal in (False, True):
            cfg = CSRTrainConfig(k=k, steps=args.steps, hidden_mult=args.hidden_mult, anneal=anneal,
                                 contrastive_weight=args.contrastive_weight)
            t0 = time.perf_counter()
            sae, stats = train_sae(x, cfg, pairs)
            with torch.inference_mode():
                m = score(codes_to_csr(sae.encode(torch.from_numpy(test_q))),
                          codes_to_csr(sae.encode(torch.from_numpy(doc_emb))))
            row = {**asdict(cfg), **stats, **m, "train_seconds": time.perf_counter() - t0}
            results["csr"].append(row)
            name = f"csr-minilm-k{k}{'-anneal' if anneal else ''}.pt"
            sae.save(args.out_dir / name, {"dense_model": DEFAULT_DENSE, "config": asdict(cfg)})
            print(f"k={k:<3} anneal={'yes' if anneal else 'no '} nDCG@10 {m['nDCG@10']:.4f}  "
                  f"R@100 {m['R@100']:.4f}  dead {stats['dead_fraction']:.3f}  "
                  f"({row['train_seconds']:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
