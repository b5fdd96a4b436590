"""Train the multivector (ColBERT-style) projection over a frozen transformer's token states.

    python -m training.multivector ../shared/data/scifact --split train \\
        --negatives run.json --out models/minilm-colbert-scifact [--dim 128] [--epochs 4]

The backbone stays frozen: only the linear projection [dim, hidden] is learned, so the token
states are encoded once (or read from ``--doc-states``, a padded float16 array with
``--doc-lens``) and training is a few minutes on a CPU. Loss: ColBERT's softmax cross-entropy
over MaxSim scores of each query against its positive, the other queries' positives
(in-batch negatives) and its hard negatives (``--negatives``: a run {query id: [doc ids,
best first]}, e.g. the first-stage hybrid list; judged-relevant documents are skipped). The
projection starts from the states' principal components, so step 0 is already a sensible
dimension reduction.

Output: ``<out>.safetensors`` (``weight`` [dim, hidden]) for ``MultiVectorEncoder(projection=)``,
and with ``--out`` a model folder: the backbone's files (symbolic links) and
``1_Dense/model.safetensors`` (``linear.weight``), which ``MultiVectorEncoder(<folder>)`` finds on
its own, so a collection created with ``multivector_encoder=<folder>`` reranks with it.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from encoders.models import DEFAULT_DENSE, resolve
from encoders.transformer import TokenStates


def encode_states(texts: list[str], model: str = DEFAULT_DENSE, batch_size: int = 32,
                  progress: bool | None = None, device: str | None = None) -> list[np.ndarray]:
    """The backbone's last hidden states per text, float16 [n_tokens, hidden] (no projection)."""
    ts = TokenStates(model, None, progress, device=device)
    out: list[np.ndarray] = [np.empty((0, ts.hidden_size), np.float16)] * len(texts)
    for idx, states, mask in ts.batches(texts, batch_size, "token states"):
        lengths = mask.sum(dim=1).tolist()
        for row, i in enumerate(idx):
            out[i] = states[row, :lengths[row]].numpy().astype(np.float16)
    return out


def pca_init(states: Sequence[np.ndarray], dim: int, sample: int = 200_000, seed: int = 0) -> torch.Tensor:
    """The top ``dim`` principal directions of the token states, as a [dim, hidden] matrix."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.asarray(s, np.float32) for s in states if len(s)])
    if len(x) > sample:
        x = x[rng.choice(len(x), sample, replace=False)]
    if dim > x.shape[1]:
        raise ValueError(f"dim {dim} exceeds the hidden size {x.shape[1]}")
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return torch.from_numpy(np.ascontiguousarray(vt[:dim]))


def _pad(states: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(max(len(s) for s in states), 1)
    x = torch.zeros(len(states), width, states[0].shape[1])
    mask = torch.zeros(len(states), width, dtype=torch.bool)
    for i, s in enumerate(states):
        x[i, :len(s)] = torch.from_numpy(np.asarray(s, np.float32))
        mask[i, :len(s)] = True
    return x, mask


def _project(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x @ weight.T, dim=-1)


def batch_maxsim(q: torch.Tensor, q_mask: torch.Tensor, d: torch.Tensor, d_mask: torch.Tensor) -> torch.Tensor:
    """[Bq, Lq, h] x [Bd, Ld, h] -> MaxSim [Bq, Bd] (padded query tokens count 0, padded
    document tokens never win the max)."""
    sims = torch.einsum("qih,djh->qdij", q, d)
    sims = sims.masked_fill(~d_mask[None, :, None, :], -1e4)
    return (sims.max(dim=-1).values * q_mask[:, None, :]).sum(dim=-1)


def train_projection(query_states: Sequence[np.ndarray], doc_states: Sequence[np.ndarray],
                     pairs: Sequence[tuple[int, int]], negatives: dict[int, list[int]] | None = None,
                     dim: int = 128, epochs: int = 4, batch_size: int = 32, n_negatives: int = 3,
                     lr: float = 3e-3, seed: int = 0, init: torch.Tensor | None = None,
                     log=print) -> torch.Tensor:
    """Learn W [dim, hidden]; ``pairs`` are (query index, relevant document index)."""
    if not pairs:
        raise ValueError("no training pairs")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    weight = (init if init is not None else pca_init(doc_states, dim, seed=seed)).clone().float()
    weight.requires_grad_(True)
    opt = torch.optim.Adam([weight], lr=lr)
    negatives = negatives or {}
    relevant: dict[int, set[int]] = {}
    for qi, di in pairs:
        relevant.setdefault(qi, set()).add(di)
    order = list(pairs)
    for epoch in range(epochs):
        rng.shuffle(order)
        total, n = 0.0, 0
        for lo in range(0, len(order), batch_size):
            batch = order[lo:lo + batch_size]
            docs = [di for _, di in batch]
            for qi, _ in batch:
                pool = [d for d in negatives.get(qi, []) if d not in relevant[qi]]
                docs += rng.sample(pool, min(n_negatives, len(pool)))
            q, qm = _pad([query_states[qi] for qi, _ in batch])
            d, dm = _pad([doc_states[di] for di in docs])
            scores = batch_maxsim(_project(q, weight), qm, _project(d, weight), dm)
            # an in-batch "negative" that is relevant to the query is no negative
            for row, (qi, di) in enumerate(batch):
                rel = torch.tensor([x in relevant[qi] and x != di for x in docs])
                scores[row] = scores[row].masked_fill(rel, -1e4)
            target = torch.arange(len(batch))
            loss = torch.nn.functional.cross_entropy(scores, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
            n += len(batch)
        log(f"epoch {epoch + 1}/{epochs}: loss {total / n:.4f}")
    return weight.detach()


def save_projection(weight: torch.Tensor, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"weight": weight.contiguous().float()}, str(path))
    return path


def write_model_dir(base_model: str, weight: torch.Tensor, out: str | Path) -> Path:
    """A model folder MultiVectorEncoder loads by name: the backbone's files as symbolic links,
    the projection as ``1_Dense/model.safetensors`` (``linear.weight``)."""
    src, out = Path(resolve(base_model)), Path(out)
    if not (src / "config.json").is_file():
        raise ValueError(f"{base_model!r} is not a local model folder")
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "modules.json":
            target = out / f.name
            if target.is_symlink() or target.exists():
                target.unlink()
            target.symlink_to(f.resolve())
    dense = out / "1_Dense"
    if dense.exists():
        shutil.rmtree(dense)
    dense.mkdir()
    save_file({"linear.weight": weight.contiguous().float()}, str(dense / "model.safetensors"))
    return out


def _padded_states(path: Path, lens_path: Path) -> list[np.ndarray]:
    arr = np.load(path, mmap_mode="r")
    lens = np.load(lens_path)
    return [np.asarray(arr[i, :n]) for i, n in enumerate(lens)]


def main(argv: list[str] | None = None) -> int:
    from encoders.beir import BeirDataset
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="BEIR folder")
    ap.add_argument("--split", default="train")
    ap.add_argument("--model", default=DEFAULT_DENSE)
    ap.add_argument("--out", type=Path, required=True, help="model folder to write (and <out>.safetensors)")
    ap.add_argument("--negatives", type=Path, help="JSON run {query id: [doc ids]} to mine hard negatives from")
    ap.add_argument("--negatives-depth", type=int, default=30)
    ap.add_argument("--queries", type=Path, help="JSON list of query ids to train on (default: all of the split)")
    ap.add_argument("--doc-states", type=Path, help="padded float16 [docs, L, hidden] .npy of the corpus")
    ap.add_argument("--doc-lens", type=Path)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--n-negatives", type=int, default=3)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: the process default, LSR_DEVICE)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = BeirDataset.load(args.folder, args.split)
    pos = {d: i for i, d in enumerate(ds.doc_ids)}
    qids = ds.query_ids
    if args.queries:
        keep = set(json.loads(args.queries.read_text()))
        qids = [q for q in qids if q in keep]
    qtext = dict(zip(ds.query_ids, ds.query_texts))
    if args.doc_states:
        doc_states = _padded_states(args.doc_states, args.doc_lens)
    else:
        doc_states = encode_states(ds.doc_texts, args.model, device=args.device)
    q_states = encode_states([qtext[q] for q in qids], args.model, progress=False, device=args.device)
    pairs = [(i, pos[d]) for i, q in enumerate(qids) for d, r in ds.qrels[q].items() if r > 0 and d in pos]
    negatives = None
    if args.negatives:
        run = json.loads(args.negatives.read_text())
        negatives = {i: [pos[d] for d in run.get(q, [])[:args.negatives_depth] if d in pos]
                     for i, q in enumerate(qids)}
    print(f"{len(qids)} queries, {len(pairs)} pairs, dim {args.dim}")
    w = train_projection(q_states, doc_states, pairs, negatives, dim=args.dim, epochs=args.epochs,
                         batch_size=args.batch_size, n_negatives=args.n_negatives, lr=args.lr,
                         seed=args.seed)
    print("wrote", save_projection(w, args.out.with_suffix(".safetensors")))
    print("wrote", write_model_dir(args.model, w, args.out))
    # a registry entry: the projection is found in 1_Dense/
    from encoders import registry
    registry.write_manifest(args.out, "multivector", description=f"{args.model} token vectors projected to "
                            f"{args.dim} dimensions, trained on {ds.name} ({args.split})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
