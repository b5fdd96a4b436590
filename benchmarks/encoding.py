"""Encoding speed: the naive Hugging Face pipeline vs our encoders, side by side in one run.

    python -m benchmarks.encoding <beir-folder> [--n 384] [--repeats 2] [--calibration 1000]
                                  [--vocab-out FILE] [--json OUT] [--write]
                                  [--ndcg ARM=EVAL.json ...] [--from-json OUT]

``--ndcg`` adds the whole-corpus nDCG@10 of `lsr eval --json` runs as a column (the speed is
measured on a sample; effectiveness needs the whole corpus); ``--from-json`` re-renders an
earlier result with it instead of measuring again.

Arms (every arm encodes the same documents from raw text, in length-sorted batches of 32,
under ``torch.inference_mode`` with the same thread count):

- SPLADE naive: ``AutoModelForMaskedLM`` eager PyTorch, full [batch, seq, vocab] logits,
  log(1+ReLU), masked max — the textbook pipeline;
- SPLADE chunked: ``SpladeEncoder(fused_head=False)``: the LM head over unpadded tokens only,
  ``chunk_tokens`` rows of logits at a time, folded into a running max (the torch reference);
- SPLADE exact: ``SpladeEncoder`` with the fused C++ head + max kernel — must match naive to 1e-4;
- SPLADE approx: the same with the LM head restricted to the terms that were active on a
  calibration sample (``--calibration`` documents, disjoint from the timed ones) — reported:
  share of texts whose top-10 terms are unchanged;
- MiniLM naive (``AutoModel`` eager PyTorch + mean pooling) vs ``DenseEncoder`` (ours: the
  same model call on length-sorted, slice-tokenised batches);
- MiniLM int8: ``DenseEncoder(int8=True)``, the model as a fused ONNX Runtime graph with every
  matmul dynamically quantised to int8, per-channel weight scales (``encoders/onnx_graphs.py``;
  converted before timing) — reported: cosine to the naive embeddings (min and mean).

Arms alternate for ``--repeats`` rounds and each keeps its best rate, so a load change on the
machine hits every arm alike. Peak memory is the RSS rise during the arm's first run.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoModelForMaskedLM

from encoders.batching import length_sorted_batches
from encoders.beir import load_corpus
from encoders.dense import DenseEncoder, mean_pool
from encoders.models import DEFAULT_DENSE, DEFAULT_SPLADE, load_model, load_tokenizer
from encoders.profiling import measure_peak
from encoders.sparse_head import naive_splade
from encoders.splade import SpladeEncoder

from .report import machine, write_section


def naive_pipeline(model, tokenizer, texts: list[str], max_length: int, batch_size: int, pool):
    """Tokenise length-sorted batches, run the model eagerly, pool: the plain HF recipe."""
    lengths = [len(x) for x in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    rows: list[np.ndarray | None] = [None] * len(texts)
    with torch.inference_mode():
        for batch in length_sorted_batches(lengths, batch_size):
            enc = tokenizer([texts[i] for i in batch], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            for i, row in zip(batch, pool(out, enc["attention_mask"]).numpy()):
                rows[i] = row
    return np.stack(rows)


def top10_agreement(a, b) -> float:
    """Share of rows whose 10 largest weights sit on the same set of terms."""
    same = 0
    for i in range(a.shape[0]):
        ra, rb = a.getrow(i), b.getrow(i)
        ta = set(ra.indices[np.argsort(-ra.data, kind="stable")[:10]])
        tb = set(rb.indices[np.argsort(-rb.data, kind="stable")[:10]])
        same += ta == tb
    return same / a.shape[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.encoding", description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--n", type=int, default=384, help="documents timed (a seeded sample)")
    ap.add_argument("--calibration", type=int, default=1000,
                    help="first N corpus documents calibrate the approximate SPLADE vocabulary")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vocab-out", type=Path, help="save the calibrated vocabulary (.npy)")
    ap.add_argument("--ndcg", nargs="+", default=[], metavar="ARM=EVAL.json",
                    help="add a whole-corpus nDCG@10 column from `lsr eval --json` outputs, "
                         "e.g. 'MiniLM int8=int8.json'")
    ap.add_argument("--from-json", type=Path, help="print (and --write) the table of an earlier "
                    "--json result instead of measuring again")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--write", action="store_true", help="rewrite the section in BENCHMARKS.md")
    args = ap.parse_args(argv)
    ndcg = parse_ndcg(args.ndcg)
    if args.from_json:
        return report(json.loads(args.from_json.read_text()), ndcg, args.write)
    torch.set_num_threads(args.threads)

    corpus = load_corpus(args.folder)[1]
    calib, rest = corpus[:args.calibration], corpus[args.calibration:]
    texts = random.Random(0).sample(rest, min(args.n, len(rest)))

    splade = SpladeEncoder(DEFAULT_SPLADE, progress=False)
    chunked = SpladeEncoder(DEFAULT_SPLADE, progress=False, fused_head=False)
    approx = SpladeEncoder(DEFAULT_SPLADE, progress=False)
    vocab = splade.calibrate_vocabulary(calib, args.batch_size)
    approx.set_vocabulary(vocab)
    if args.vocab_out:
        np.save(args.vocab_out, vocab)
    mlm = load_model(DEFAULT_SPLADE, AutoModelForMaskedLM)
    dense = DenseEncoder(DEFAULT_DENSE, progress=False)
    dense_int8 = DenseEncoder(DEFAULT_DENSE, progress=False, int8=True)
    minilm = load_model(DEFAULT_DENSE, AutoModel)
    dense_tok = load_tokenizer(DEFAULT_DENSE)

    def splade_pool(out, mask):
        return naive_splade(out.logits, mask)

    def minilm_pool(out, mask):
        return torch.nn.functional.normalize(mean_pool(out.last_hidden_state, mask), dim=-1)

    arms = {
        "SPLADE naive": lambda: naive_pipeline(mlm, splade.tokenizer, texts, splade.max_length,
                                               args.batch_size, splade_pool),
        "SPLADE chunked": lambda: chunked.encode_documents(texts, args.batch_size),
        "SPLADE exact": lambda: splade.encode_documents(texts, args.batch_size),
        "SPLADE approx": lambda: approx.encode_documents(texts, args.batch_size),
        "MiniLM naive": lambda: naive_pipeline(minilm, dense_tok, texts, dense.backbone.max_length,
                                               args.batch_size, minilm_pool),
        "MiniLM ours": lambda: dense.encode_documents(texts, args.batch_size),
        "MiniLM int8": lambda: dense_int8.encode_documents(texts, args.batch_size),
    }
    rate = {name: 0.0 for name in arms}
    peak, out = {}, {}
    for rep in range(args.repeats):
        for name, fn in arms.items():
            t0 = time.perf_counter()
            if rep == 0:
                out[name], peak[name] = measure_peak(fn)
            else:
                fn()
            rate[name] = max(rate[name], len(texts) / (time.perf_counter() - t0))

    exact_dense = out["SPLADE exact"].toarray()
    c = (out["MiniLM int8"] * out["MiniLM naive"]).sum(axis=1)  # both unit-norm
    res = {
        "machine": machine(), "threads": args.threads, "n": len(texts), "repeats": args.repeats,
        "vocabulary": int(len(vocab)), "vocab_size": int(splade.dim),
        "rates": rate, "peak_mb": peak,
        "splade_exact_max_diff": float(np.abs(exact_dense - out["SPLADE naive"]).max()),
        "splade_chunked_max_diff": float(np.abs(out["SPLADE chunked"].toarray() - out["SPLADE naive"]).max()),
        "splade_approx_top10_same": top10_agreement(out["SPLADE approx"], out["SPLADE exact"]),
        "minilm_exact_max_diff": float(np.abs(out["MiniLM ours"] - out["MiniLM naive"]).max()),
        "minilm_int8_cosine": [float(c.min()), float(c.mean())],
    }
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return report(res, ndcg, args.write)


def parse_ndcg(specs: list[str]) -> dict[str, float]:
    """'ARM=eval.json' pairs -> {arm: nDCG@10 of that `lsr eval --json` file}."""
    out = {}
    for spec in specs:
        arm, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"--ndcg expects ARM=EVAL.json, got {spec!r}")
        out[arm] = float(json.loads(Path(path).read_text())["nDCG@10"])
    return out


def report(res: dict, ndcg: dict[str, float], write: bool) -> int:
    unknown = set(ndcg) - set(res["rates"])
    if unknown:
        raise SystemExit(f"--ndcg names unknown arms {sorted(unknown)}; arms: {list(res['rates'])}")
    table = format_table(res, ndcg)
    print(table)
    if write:
        write_section("encoding-speed", table)
    return 0


def format_table(res: dict, ndcg: dict[str, float] | None = None) -> str:
    r, p = res["rates"], res["peak_mb"]
    quality = {
        "SPLADE naive": "reference", "MiniLM naive": "reference",
        "SPLADE chunked": f"max abs diff vs naive {res['splade_chunked_max_diff']:.1e}",
        "SPLADE exact": f"fused C++ head; max abs diff vs naive {res['splade_exact_max_diff']:.1e}",
        "SPLADE approx": f"top-10 terms unchanged for {100 * res['splade_approx_top10_same']:.1f} % of texts "
                         f"({res['vocabulary']:,} of {res['vocab_size']:,} terms kept)",
        "MiniLM ours": f"max abs diff vs naive {res['minilm_exact_max_diff']:.1e}",
        "MiniLM int8": "cosine to naive: min {:.4f}, mean {:.4f}".format(*res["minilm_int8_cosine"]),
    }
    lines = [f"{res['n']} SciFact documents (seeded sample outside the calibration set), batch 32, "
             f"{res['threads']} threads, best of {res['repeats']} alternating rounds; {res['machine']}.", "",
             "| arm | docs/s | × naive | peak RSS rise (MiB) | output |", "|---|---:|---:|---:|---|"]
    ndcg = ndcg or {}
    if ndcg:  # whole-corpus effectiveness from separate `lsr eval` runs
        lines[-2:] = ["| arm | docs/s | × naive | peak RSS rise (MiB) | output | SciFact nDCG@10 |",
                      "|---|---:|---:|---:|---|---:|"]
    for name in r:
        base = r["SPLADE naive" if name.startswith("SPLADE") else "MiniLM naive"]
        row = f"| {name} | {r[name]:.1f} | {r[name] / base:.2f} | {p[name]:.0f} | {quality[name]} |"
        if ndcg:
            row += f" {ndcg[name]:.4f} |" if name in ndcg else " |"
        lines.append(row)
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
