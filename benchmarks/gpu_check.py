"""GPU check: SciFact documents encoded on the GPU against the same documents on the CPU.

    python -m benchmarks.gpu_check [--data ../shared/data/scifact] [--device cuda] [--cpu-docs 1000]
                                   [--model splade-tiny] [--dense all-MiniLM-L6-v2] [--json out.json]

SPLADE (``--model``) runs on ``--device`` the way the service runs it there — documents in
bf16/fp16, the chunked torch head (``encoders.sparse_head._indexed_max``) in float32, batches
sized by tokens — and on the CPU with the fused C++ head in float32 (the reference). For the
first ``--cpu-docs`` documents (the CPU is the slow side) it checks, per document, the cosine of
the two sparse vectors (must be >= ``--min-cosine``, default 0.999) and that the 10 largest
terms are the same set; the dense model (``--dense``, optional) is compared by cosine alike.
Throughput (docs/s) is measured over the whole corpus on the device and over the compared
documents on the CPU. Exit status 0 when every check passes, 1 when one fails, 2 when the
device is not available (the message says so; nothing is measured then).
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

from encoders.models import DEFAULT_DENSE, DEFAULT_SPLADE, REPO_ROOT  # noqa: E402

DATA = REPO_ROOT.parent / "shared" / "data" / "scifact"


def load_texts(folder: Path) -> list[str]:
    texts = []
    with open(folder / "corpus.jsonl") as f:
        for line in f:
            d = json.loads(line)
            texts.append(f"{d.get('title', '')} {d.get('text', '')}".strip())
    return texts


def sparse_agreement(a, b, top: int = 10) -> dict:
    """Per-row cosine of two CSR matrices and whether their top-``top`` term sets agree."""
    na = np.sqrt(np.asarray(a.multiply(a).sum(axis=1)).ravel())
    nb = np.sqrt(np.asarray(b.multiply(b).sum(axis=1)).ravel())
    dots = np.asarray(a.multiply(b).sum(axis=1)).ravel()
    both = (na > 0) & (nb > 0)
    cos = np.where(both, dots / np.where(both, na * nb, 1.0), (na == 0) & (nb == 0)).astype(np.float64)
    same_top = []
    for i in range(a.shape[0]):
        ra, rb = a[i], b[i]
        ta = set(ra.indices[np.argsort(-ra.data, kind="stable")[:top]].tolist())
        tb = set(rb.indices[np.argsort(-rb.data, kind="stable")[:top]].tolist())
        same_top.append(ta == tb)
    return {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
            "top10_same_fraction": float(np.mean(same_top)), "top10_differs": int(len(same_top) - sum(same_top))}


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="a BEIR folder (corpus.jsonl)")
    ap.add_argument("--device", default="cuda", help="the accelerator to check (cuda, cuda:N, mps)")
    ap.add_argument("--model", default=DEFAULT_SPLADE)
    ap.add_argument("--dense", default=DEFAULT_DENSE, help="also compare this dense model ('' to skip)")
    ap.add_argument("--cpu-docs", type=int, default=1000, help="documents compared (encoded on the CPU too)")
    ap.add_argument("--gpu-docs", type=int, default=0, help="documents timed on the device; 0 = all")
    ap.add_argument("--min-cosine", type=float, default=0.999)
    ap.add_argument("--min-top10", type=float, default=0.99,
                    help="fraction of documents whose 10 largest terms must be the same set (near-ties "
                    "at rank 10 may swap under half precision)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import torch

    from encoders import device as devices
    from encoders.splade import SpladeEncoder
    try:
        dev = devices.resolve(args.device)
    except devices.DeviceError as exc:
        print(f"gpu_check: no accelerator to check: {exc}", file=sys.stderr)
        return 2
    texts = load_texts(args.data)
    gpu_texts = texts[:args.gpu_docs] if args.gpu_docs else texts
    cpu_texts = texts[:args.cpu_docs]
    res: dict = {"device": str(dev), "dtype": str(devices.half_dtype(dev)), "corpus": args.data.name,
                 "gpu_docs": len(gpu_texts), "cpu_docs": len(cpu_texts), "torch": torch.__version__,
                 "cpu_threads": torch.get_num_threads()}
    if dev.type == "cuda":
        res["gpu_name"] = torch.cuda.get_device_name(dev)
    gpu = SpladeEncoder(args.model, device=str(dev), progress=False)
    cpu = SpladeEncoder(args.model, device="cpu", progress=False)
    gpu.encode_documents(texts[:64])  # warm-up: kernels, allocator
    if dev.type == "cuda":
        torch.cuda.synchronize()
    g_all, g_s = timed(gpu.encode_documents, gpu_texts)
    c_m, c_s = timed(cpu.encode_documents, cpu_texts)
    res["splade"] = {"gpu_docs_per_s": len(gpu_texts) / g_s, "cpu_docs_per_s": len(cpu_texts) / c_s,
                     **sparse_agreement(g_all[:len(cpu_texts)], c_m)}
    if dev.type == "cuda":
        res["splade"]["gpu_peak_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    ok = (res["splade"]["cosine_min"] >= args.min_cosine and res["splade"]["top10_same_fraction"] >= args.min_top10)
    if args.dense:
        from encoders.dense import DenseEncoder
        gd = DenseEncoder(args.dense, device=str(dev), progress=False)
        cd = DenseEncoder(args.dense, device="cpu", progress=False, fast_queries=False)
        gd.encode_documents(texts[:64])
        g_v, gd_s = timed(gd.encode_documents, gpu_texts)
        c_v, cd_s = timed(cd.encode_documents, cpu_texts)
        cos = np.sum(g_v[:len(cpu_texts)] * c_v, axis=1)  # unit rows
        res["dense"] = {"gpu_docs_per_s": len(gpu_texts) / gd_s, "cpu_docs_per_s": len(cpu_texts) / cd_s,
                        "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean())}
        ok = ok and res["dense"]["cosine_min"] >= args.min_cosine
    res["pass"] = bool(ok)
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
