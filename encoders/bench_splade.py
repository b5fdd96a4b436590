"""SPLADE encoding: the naive HF pipeline vs our chunked LM-head pooling, side by side.

    python -m encoders.bench_splade <beir-folder> [--n 512] [--batch-size 32]

Both paths get the same length-sorted batches under ``torch.inference_mode``; the naive one
materialises batch x seq x vocab logits and applies log(1+ReLU)/max to all of it. Reports
texts/s, the peak RSS rise of the encoding call, and the largest weight difference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from transformers import AutoModelForMaskedLM

from encoders.batching import length_sorted_batches
from encoders.beir import load_corpus
from encoders.models import DEFAULT_SPLADE, load_model
from encoders.profiling import measure_peak
from encoders.sparse_head import naive_splade
from encoders.splade import SpladeEncoder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m encoders.bench_splade", description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--n", type=int, default=512, help="first n corpus documents")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--model", default=DEFAULT_SPLADE)
    args = ap.parse_args(argv)

    texts = load_corpus(args.folder)[1][:args.n]
    enc = SpladeEncoder(args.model, progress=False)
    naive_model = load_model(args.model, AutoModelForMaskedLM)
    ids = enc._tokenize(texts, enc.max_length)
    batches = length_sorted_batches([len(x) for x in ids], args.batch_size)
    pad = enc.tokenizer.pad_token_id or 0

    @torch.inference_mode()
    def naive() -> np.ndarray:
        out = np.zeros((len(texts), enc.dim), np.float32)
        for b in batches:
            width = max(len(ids[i]) for i in b)
            x = torch.full((len(b), width), pad, dtype=torch.long)
            m = torch.zeros_like(x)
            for r, i in enumerate(b):
                x[r, :len(ids[i])] = torch.tensor(ids[i])
                m[r, :len(ids[i])] = 1
            out[b] = naive_splade(naive_model(input_ids=x, attention_mask=m).logits, m).numpy()
        return out

    def chunked() -> np.ndarray:
        out = np.zeros((len(texts), enc.dim), np.float32)
        for b in batches:
            out[b] = enc.weights([ids[i] for i in b]).numpy()
        return out

    results = {}
    for name, fn in (("naive", naive), ("chunked", chunked)):
        t0 = time.perf_counter()
        w, peak = measure_peak(fn)
        results[name] = (w, len(texts) / (time.perf_counter() - t0), peak)
    diff = float(np.abs(results["naive"][0] - results["chunked"][0]).max())
    print(f"{len(texts)} docs, {sum(map(len, ids))} tokens, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads")
    for name, (_, rate, peak) in results.items():
        print(f"{name:8s} {rate:6.1f} docs/s  peak RSS rise {peak:7.0f} MiB")
    print(f"max |naive - chunked| = {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
