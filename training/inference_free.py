"""Train the document model of an inference-free sparse retriever (Geng et al. 2024, "Towards
Competitive Search Relevance For Inference-Free Learned Sparse Retrievers") and report nDCG.

    python -m training.inference_free <beir-folder> [--out DIR] [--steps N] [--batch-size B]

Queries stay model-free (distinct tokens weighted by IDF, ``encoders/inference_free.py``), so a
query-document score is ``sum over query tokens t of idf(t) * w_d(t)`` and only the SPLADE
document model ``w_d`` is trained, with two losses from the paper:

- ensemble distillation: a dense teacher (MiniLM cosine) and a sparse teacher (BM25, or a
  siamese SPLADE) score every (query, document) pair of a batch; each teacher's scores are
  min-max normalised per query, then summed with weights, scaled, and softmaxed into the target
  of a listwise KL loss on the student's scores;
- the IDF-aware FLOPS regulariser on the document weights: FLOPS with each term's penalty
  divided by its IDF, so rare (informative) terms are penalised less than frequent ones.

Training data needs no labels: pseudo-queries are document titles, each paired with its own
abstract (title removed) and hard negatives from the title's top BM25 abstracts. Training
documents never come from the evaluation corpus, and the evaluation queries and qrels are never read for
training. Evaluation: exact retrieval over an evaluation corpus (the split's judged documents
plus random others, ``--eval-docs``; 0 = the whole corpus) before (starting checkpoint) and
after training. ``--dev`` evaluates on qrels/train.tsv, for tuning without the test split.
Defaults fit about ten minutes of one CPU thread on SciFact (``--threads 0``: torch's default).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from encoders.batching import model_max_length, pad_batch, token_ids
from encoders.beir import BeirDataset, load_titled_corpus
from encoders.inference_free import IdfTable, InferenceFreeEncoder

SPARSE_TEACHERS = ("bm25", "splade")


@dataclass
class InferenceFreeTrainConfig:
    steps: int = 50
    batch_size: int = 6  # pseudo-queries per step; each is scored against every document of the batch
    group_size: int = 3  # documents each query brings: its positive + (group_size - 1) mined negatives
    pool_docs: int = 200  # title -> abstract pairs; teachers encode them and their negatives once
    negatives_depth: int = 10  # negatives are drawn from a title's top BM25 abstracts
    lr: float = 5e-5
    warmup_fraction: float = 0.1  # linear warm-up, then linear decay
    flops_weight: float = 1e-3
    flops_ramp_fraction: float = 0.5  # FLOPS weight grows quadratically over this share of steps
    min_idf: float = 0.1  # FLOPS penalty weight is 1 / max(idf, min_idf)
    dense_weight: float = 0.5  # ensemble weights of the normalised teacher scores
    sparse_weight: float = 0.5
    teacher_scale: float = 30.0  # aggregated [0, 1] scores x this = the target logits
    max_length: int = 256  # document tokens, in training and evaluation
    seed: int = 0

    def check(self) -> None:
        for name in ("steps", "batch_size", "group_size", "pool_docs", "negatives_depth", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "teacher_scale", "min_idf"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.flops_weight < 0:
            raise ValueError(f"flops_weight must be >= 0, got {self.flops_weight}")
        if self.dense_weight < 0 or self.sparse_weight < 0 or self.dense_weight + self.sparse_weight == 0:
            raise ValueError("teacher weights must be >= 0 and not both 0, got "
                             f"dense {self.dense_weight}, sparse {self.sparse_weight}")


# --- losses -------------------------------------------------------------------------------

def minmax_per_query(scores: torch.Tensor) -> torch.Tensor:
    """Scale each row (one query's candidates) to [0, 1], so teachers on different scales
    (cosines, BM25 scores) can be summed. A row of equal scores becomes all zeros."""
    if scores.ndim != 2:
        raise ValueError(f"expected [queries, documents] scores, got shape {tuple(scores.shape)}")
    lo = scores.min(dim=1, keepdim=True).values
    hi = scores.max(dim=1, keepdim=True).values
    return (scores - lo) / (hi - lo).clamp(min=1e-6)


def ensemble_targets(teacher_scores: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """Weighted sum of the per-query min-max normalised scores of each teacher."""
    if not teacher_scores or len(teacher_scores) != len(weights):
        raise ValueError(f"need one weight per teacher, got {len(teacher_scores)} teachers, {len(weights)} weights")
    shape = teacher_scores[0].shape
    if any(s.shape != shape for s in teacher_scores):
        raise ValueError(f"teacher score shapes differ: {[tuple(s.shape) for s in teacher_scores]}")
    return sum(w * minmax_per_query(s) for s, w in zip(teacher_scores, weights))


def distillation_loss(student: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """Listwise KL(softmax(target) || softmax(student)) per query, averaged over queries."""
    return F.kl_div(F.log_softmax(student, dim=1), F.log_softmax(target_logits, dim=1),
                    reduction="batchmean", log_target=True)


def idf_aware_flops(weights: torch.Tensor, idf: torch.Tensor, min_idf: float = 0.1) -> torch.Tensor:
    """``sum_t (mean_i w_it)^2 / max(idf_t, min_idf)`` over documents i of the batch.

    Plain FLOPS pushes every term's mean weight down alike; here a term's penalty shrinks as its
    IDF grows, so the rare terms an IDF-weighted query relies on keep their weight while
    frequent ones (worth little to any query) are pruned. ``min_idf`` caps the penalty weight of
    terms found in nearly every document (idf near 0), so one stopword cannot dominate the loss.
    """
    if weights.ndim != 2 or idf.shape != weights.shape[1:]:
        raise ValueError(f"weights [docs, vocab] and idf [vocab] must agree, got "
                         f"{tuple(weights.shape)} and {tuple(idf.shape)}")
    return (weights.mean(dim=0).pow(2) / idf.clamp(min=min_idf)).sum()


# --- the trainable document model -----------------------------------------------------------

class DocModel:
    """SPLADE weights of an ``*ForMaskedLM`` with gradients, without a batch x seq x vocab graph.

    Per text, the vocabulary logits are computed without autograd only to find, for each term,
    the token where its logit is largest; the pooled logit is then recomputed differentiably from
    that token's state alone (``h_argmax . W_t + b_t``). Value and (sub)gradient equal SPLADE's
    max-pooling, but autograd keeps vocab x hidden per text instead of seq x vocab, and the
    backward pass skips the seq x vocab x hidden product.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, max_length: int):
        decoder = model.get_output_embeddings()
        if not isinstance(decoder, nn.Linear):
            raise TypeError(f"output embeddings must be nn.Linear, got {type(decoder).__name__}")
        self.model, self.tokenizer, self.decoder, self.max_length = model, tokenizer, decoder, max_length
        name = next(n for n, m in model.named_modules() if m is decoder)
        parent_name, _, self._attr = name.rpartition(".")
        self._parent = model.get_submodule(parent_name) if parent_name else model

    @contextlib.contextmanager
    def _states_only(self) -> Iterator[None]:
        # Swapped only for the forward pass, so save_pretrained sees the original head.
        setattr(self._parent, self._attr, nn.Identity())
        try:
            yield
        finally:
            setattr(self._parent, self._attr, self.decoder)

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return token_ids(self.tokenizer, texts, truncation=True, max_length=self.max_length)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def weights(self, ids: list[list[int]]) -> torch.Tensor:
        """SPLADE document weights [len(ids), vocab], differentiable."""
        if any(len(x) == 0 for x in ids):
            raise ValueError("cannot pool an empty token list")
        input_ids, mask = pad_batch(ids, self.tokenizer.pad_token_id)
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        with self._states_only():
            out = self.model(input_ids=input_ids, attention_mask=mask)
        states = out.logits if hasattr(out, "logits") else out[0]
        w, b = self.decoder.weight, self.decoder.bias
        rows = []
        for i, n in enumerate(len(x) for x in ids):
            h = states[i, :n]
            with torch.no_grad():
                top = torch.mm(h, w.T).argmax(dim=0)  # token position of each term's max logit
            logit = (h[top] * w).sum(dim=1)
            rows.append(logit + b if b is not None else logit)
        return torch.log1p(torch.relu(torch.stack(rows)))

    def save(self, out: Path) -> None:
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)


# --- training data --------------------------------------------------------------------------

@dataclass
class TrainingPool:
    """Pseudo-queries (titles) with their positive and mined negatives among ``docs`` (abstracts)."""
    doc_ids: list[str]
    docs: list[str]  # abstracts, without their titles
    queries: list[str]
    positives: list[int]  # per query: position in docs of the abstract it is the title of
    negatives: list[list[int]]  # per query: positions in docs of its hard negatives


def build_pool(ids: list[str], titles: list[str], texts: list[str], exclude: set[str],
               cfg: InferenceFreeTrainConfig, rng: np.random.Generator,
               progress: bool | None = None) -> TrainingPool:
    """``cfg.pool_docs`` title -> abstract pairs from the documents outside ``exclude``; each title
    gets ``group_size - 1`` negatives drawn from its top BM25 abstracts among all those documents
    (hard, unlike random ones), fixed once so the teachers encode each document once."""
    from encoders.bm25 import BM25Encoder
    from encoders.evaluate import exact_search

    usable = [i for i, d in enumerate(ids) if d not in exclude and titles[i] and texts[i]]
    if len(usable) < max(cfg.batch_size, cfg.group_size, 2):
        raise ValueError(f"only {len(usable)} documents with a title and a text outside the evaluation "
                         f"corpus: need at least {max(cfg.batch_size, cfg.group_size, 2)} for training")
    picked = rng.choice(len(usable), size=min(cfg.pool_docs, len(usable)), replace=False)
    bm25 = BM25Encoder(progress=progress).fit([texts[i] for i in usable])
    idx, scores = exact_search(bm25.encode_queries([titles[usable[p]] for p in picked]),
                               bm25.encode_documents([texts[i] for i in usable]), cfg.negatives_depth + 1)
    groups = []
    for row, p in enumerate(picked):
        cands = [int(c) for c, s in zip(idx[row], scores[row]) if c != p and s > 0][:cfg.negatives_depth]
        negs = rng.choice(cands, size=min(cfg.group_size - 1, len(cands)), replace=False).tolist()
        if len(negs) < cfg.group_size - 1:  # BM25 found too few: random documents instead
            others = [c for c in range(len(usable)) if c != p and c not in negs]
            negs += rng.choice(others, size=cfg.group_size - 1 - len(negs), replace=False).tolist()
        groups.append([int(p), *negs])
    members = sorted({c for g in groups for c in g})
    pos = {c: k for k, c in enumerate(members)}
    return TrainingPool([ids[usable[c]] for c in members], [texts[usable[c]] for c in members],
                        [titles[usable[g[0]]] for g in groups], [pos[g[0]] for g in groups],
                        [[pos[c] for c in g[1:]] for g in groups])


# --- teachers -------------------------------------------------------------------------------

@dataclass
class TeacherVectors:
    """One teacher's vectors for the pool's queries and documents (dense arrays or CSR)."""
    name: str
    queries: np.ndarray | sp.csr_matrix
    docs: np.ndarray | sp.csr_matrix

    def scores(self, q: list[int], d: list[int]) -> torch.Tensor:
        s = self.queries[q] @ self.docs[d].T
        return torch.from_numpy(np.asarray(s.toarray() if sp.issparse(s) else s, dtype=np.float32))


def encode_teachers(pool: TrainingPool, corpus: list[str], dense_model: str, sparse_teacher: str,
                    sparse_model: str, max_length: int, progress: bool | None) -> list[TeacherVectors]:
    """Teacher vectors of the pool; BM25's statistics come from the whole ``corpus``."""
    from encoders.dense import DenseEncoder

    if sparse_teacher not in SPARSE_TEACHERS:
        raise ValueError(f"unknown sparse teacher {sparse_teacher!r}; choose from {SPARSE_TEACHERS}")
    dense = DenseEncoder(dense_model, progress=progress)
    teachers = [TeacherVectors("dense", dense.encode_queries(pool.queries), dense.encode_documents(pool.docs))]
    if sparse_teacher == "bm25":
        from encoders.bm25 import BM25Encoder
        bm25 = BM25Encoder(progress=progress).fit(corpus)
        teachers.append(TeacherVectors("bm25", bm25.encode_queries(pool.queries), bm25.encode_documents(pool.docs)))
    else:  # siamese SPLADE: queries go through the model too
        from encoders.splade import SpladeEncoder
        splade = SpladeEncoder(sparse_model, max_length=max_length, progress=progress)
        teachers.append(TeacherVectors("splade", splade.encode_queries(pool.queries),
                                       splade.encode_documents(pool.docs)))
    return teachers


# --- training -------------------------------------------------------------------------------

def query_matrix(encoder: InferenceFreeEncoder, texts: list[str]) -> torch.Tensor:
    """Dense [n, vocab] IDF query vectors: the inference-free query side, unchanged by training."""
    return torch.from_numpy(encoder.encode_queries(texts).toarray())


def flops_schedule(step: int, cfg: InferenceFreeTrainConfig) -> float:
    """FLOPS weight at ``step`` (0-based): quadratic ramp, as SPLADE does, so that early
    steps learn to rank before sparsity pressure builds up."""
    ramp = max(1, round(cfg.flops_ramp_fraction * cfg.steps))
    return cfg.flops_weight * min(1.0, (step + 1) / ramp) ** 2


def train_step(doc_model: DocModel, q_vecs: torch.Tensor, doc_ids: list[list[int]], targets: torch.Tensor,
               idf: torch.Tensor, flops_weight: float, min_idf: float) -> dict[str, Any]:
    """Losses for one batch (not yet back-propagated): student scores are q_vecs @ doc weights^T."""
    w = doc_model.weights(doc_ids)
    student = q_vecs @ w.T
    kl = distillation_loss(student, targets)
    flops = idf_aware_flops(w, idf, min_idf)
    return {"loss": kl + flops_weight * flops, "kl": kl.detach(), "flops": flops.detach(),
            "doc_terms": (w > 0).sum(dim=1).float().mean().detach()}


def train(doc_model: DocModel, pool: TrainingPool, teachers: list[TeacherVectors], query_encoder: InferenceFreeEncoder,
          idf: np.ndarray, cfg: InferenceFreeTrainConfig, log=None) -> list[dict[str, float]]:
    """Fine-tune ``doc_model`` in place; returns per-step statistics."""
    cfg.check()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    dev = doc_model.device  # the model's: train on whatever device it was moved to
    q_all = query_matrix(query_encoder, pool.queries).to(dev)
    doc_tokens = doc_model.tokenize(pool.docs)
    idf_t = torch.from_numpy(np.asarray(idf, dtype=np.float32)).to(dev)
    teacher_w = [cfg.dense_weight if t.name == "dense" else cfg.sparse_weight for t in teachers]
    params = [p for p in doc_model.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    warm = max(1, round(cfg.warmup_fraction * cfg.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (cfg.steps - s) / max(1, cfg.steps - warm))))
    order: list[int] = []
    history = []
    doc_model.model.train()
    for step in range(cfg.steps):
        if len(order) < cfg.batch_size:  # a new epoch over the pseudo-queries
            order += rng.permutation(len(pool.queries)).tolist()
        qs, order = order[:cfg.batch_size], order[cfg.batch_size:]
        ds = [d for q in qs for d in (pool.positives[q], *pool.negatives[q])]
        agg = ensemble_targets([t.scores(qs, ds) for t in teachers], teacher_w)
        out = train_step(doc_model, q_all[qs], [doc_tokens[d] for d in ds], cfg.teacher_scale * agg.to(dev),
                         idf_t, flops_schedule(step, cfg), cfg.min_idf)
        opt.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        history.append({k: float(v.detach()) for k, v in out.items()})
        if log and (step % 10 == 0 or step == cfg.steps - 1):
            h = history[-1]
            log(f"step {step + 1}/{cfg.steps}  kl {h['kl']:.4f}  idf-flops {h['flops']:.2f}  "
                f"doc terms {h['doc_terms']:.0f}")
    doc_model.model.eval()
    return history


# --- evaluation -----------------------------------------------------------------------------

def eval_subset(ds: BeirDataset, n_queries: int | None, n_docs: int | None,
                rng: np.random.Generator) -> BeirDataset:
    """The split's queries (a sample of ``n_queries``) over their judged documents plus random
    others up to ``n_docs`` (None: every query, the whole corpus)."""
    qids = ds.query_ids
    if n_queries is not None and n_queries < len(qids):
        qids = sorted(rng.choice(qids, size=n_queries, replace=False).tolist(), key=ds.query_ids.index)
    qrels = {q: ds.qrels[q] for q in qids}
    texts = dict(zip(ds.query_ids, ds.query_texts))
    docs = list(range(len(ds.doc_ids)))
    if n_docs is not None and n_docs < len(ds.doc_ids):
        judged = {d for q in qids for d in qrels[q]}
        keep = [i for i in docs if ds.doc_ids[i] in judged]
        rest = [i for i in docs if ds.doc_ids[i] not in judged]
        extra = rng.choice(rest, size=max(0, min(n_docs - len(keep), len(rest))), replace=False).tolist()
        docs = sorted(keep + extra)
    return dataclasses.replace(ds, doc_ids=[ds.doc_ids[i] for i in docs], doc_texts=[ds.doc_texts[i] for i in docs],
                               query_ids=qids, query_texts=[texts[q] for q in qids], qrels=qrels)


def evaluate_doc_model(model: str, idf: IdfTable, ds: BeirDataset, max_length: int, batch_size: int = 32,
                       k: int = 100, progress: bool | None = None) -> dict[str, float]:
    """nDCG@10 and R@k of the inference-free retriever with document model ``model``, exact search."""
    from encoders.evaluate import exact_search, to_run
    from encoders.metrics import evaluate

    enc = InferenceFreeEncoder(model, idf=idf, doc_model=model, max_length=max_length, progress=progress)
    t0 = time.perf_counter()
    docs = enc.encode_documents(ds.doc_texts, batch_size)
    idx, scores = exact_search(enc.encode_queries(ds.query_texts), docs, k)
    res = evaluate(to_run(ds.query_ids, ds.doc_ids, idx, scores), ds.qrels, 10, k)
    return {**res, "doc_terms": docs.nnz / docs.shape[0], "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    from transformers import AutoModelForMaskedLM

    from encoders.models import (
        DEFAULT_DENSE,
        DEFAULT_SPLADE,
        REPO_ROOT,
        load_model,
        load_tokenizer,
    )

    d = InferenceFreeTrainConfig()
    ap = argparse.ArgumentParser(prog="python -m training.inference_free", description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "models" / "inference-free-doc",
                    help="where the fine-tuned model, tokenizer and idf.npy are saved")
    ap.add_argument("--model", default=DEFAULT_SPLADE, help="starting document model (a *ForMaskedLM)")
    ap.add_argument("--dense-teacher", default=DEFAULT_DENSE)
    ap.add_argument("--sparse-teacher", choices=SPARSE_TEACHERS, default="bm25")
    ap.add_argument("--sparse-teacher-model", default=DEFAULT_SPLADE, help="with --sparse-teacher splade")
    for f in dataclasses.fields(InferenceFreeTrainConfig):
        ap.add_argument("--" + f.name.replace("_", "-"), type=type(getattr(d, f.name)), default=getattr(d, f.name))
    ap.add_argument("--eval-docs", type=int, default=600, help="evaluation corpus size; 0 = whole corpus")
    ap.add_argument("--eval-queries", type=int, default=0, help="sample this many evaluation queries; 0 = all")
    ap.add_argument("--dev", action="store_true", help="evaluate on qrels/train.tsv instead of test")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads; 0 = torch's default")
    ap.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: the process default, LSR_DEVICE)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--json", type=Path, help="write settings and before/after metrics here")
    args = ap.parse_args(argv)
    fields = dataclasses.fields(InferenceFreeTrainConfig)
    cfg = InferenceFreeTrainConfig(**{f.name: getattr(args, f.name) for f in fields})
    cfg.check()
    if args.eval_docs < 0 or args.eval_queries < 0 or args.threads < 0:
        raise ValueError("--eval-docs, --eval-queries and --threads must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    progress = False if args.no_progress else None
    t_start = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)

    split = "train" if args.dev else "test"
    full = BeirDataset.load(args.folder, split)
    ev = eval_subset(full, args.eval_queries or None, args.eval_docs or None, rng)
    ids, titles, texts = load_titled_corpus(args.folder)
    # Never train on the evaluation corpus; when it is the whole corpus, keep its judged documents out.
    held_out = set(ev.doc_ids) if len(ev.doc_ids) < len(ids) else {x for r in ev.qrels.values() for x in r}
    pool = build_pool(ids, titles, texts, held_out, cfg, rng, progress)
    log(f"eval ({split}): {len(ev.query_ids)} queries over {len(ev.doc_ids)} docs; "
        f"training: {len(pool.queries)} title -> abstract pairs, {len(pool.docs)} docs with negatives")

    tokenizer = load_tokenizer(args.model)
    idf = IdfTable.fit(tokenizer, full.doc_texts, progress)  # the corpus the retriever would index
    query_encoder = InferenceFreeEncoder(args.model, idf=idf, doc_model=None)
    before = evaluate_doc_model(args.model, idf, ev, cfg.max_length, progress=progress)
    log(f"before: nDCG@10 {before['nDCG@10']:.4f}  R@100 {before['R@100']:.4f}  ({before['seconds']:.0f} s)")

    t0 = time.perf_counter()
    teachers = encode_teachers(pool, full.doc_texts, args.dense_teacher, args.sparse_teacher, args.sparse_teacher_model,
                               cfg.max_length, progress)
    teacher_s = time.perf_counter() - t0
    from encoders import device as devices
    model = load_model(args.model, AutoModelForMaskedLM).to(devices.resolve(args.device))
    doc_model = DocModel(model, tokenizer, model_max_length(tokenizer, model.config, cfg.max_length))
    t0 = time.perf_counter()
    history = train(doc_model, pool, teachers, query_encoder, idf.idf, cfg, log)
    train_s = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    doc_model.model.cpu()
    doc_model.save(args.out)
    idf.save(args.out / "idf.npy")
    # a registry entry: collections can name the directory's model
    from encoders import registry
    registry.write_manifest(args.out, "inference-free", files={"idf": "idf.npy"},
                            options={"max_length": cfg.max_length},
                            description=f"inference-free document model trained on {full.name}")
    after = evaluate_doc_model(str(args.out), idf, ev, cfg.max_length, progress=progress)

    print(f"before  nDCG@10 {before['nDCG@10']:.4f}  R@100 {before['R@100']:.4f}  doc terms {before['doc_terms']:.0f}")
    print(f"after   nDCG@10 {after['nDCG@10']:.4f}  R@100 {after['R@100']:.4f}  doc terms {after['doc_terms']:.0f}")
    log(f"saved to {args.out}; teachers {teacher_s:.0f} s, training {train_s:.0f} s, "
        f"total {time.perf_counter() - t_start:.0f} s")
    if args.json:
        first, last = (float(np.mean([h["kl"] for h in part])) for part in (history[:10], history[-10:]))
        res = {"dataset": full.name, "split": split, "n_queries": len(ev.query_ids), "n_docs": len(ev.doc_ids),
               "train_queries": len(pool.queries), "train_docs": len(pool.docs), "model": args.model,
               "dense_teacher": args.dense_teacher, "sparse_teacher": args.sparse_teacher, "config": asdict(cfg), "threads": torch.get_num_threads(),
               "before": before, "after": after, "kl_first_10_steps": first, "kl_last_10_steps": last,
               "teacher_seconds": teacher_s, "train_seconds": train_s,
               "total_seconds": time.perf_counter() - t_start, "out": str(args.out)}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
