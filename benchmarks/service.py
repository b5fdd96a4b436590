"""Service load test: concurrent HTTP clients against a server in a subprocess.

    python -m benchmarks.service [--requests 2000] [--concurrency 16] [--modes sparse bm25 dense hybrid]
    python -m benchmarks.service --beir ../shared/data/scifact --passages 100000 --data-dir data/loadtest

By default the server is `python -m service.demo` (the bundled 200-document demo corpus) and
the queries are a fixed list. With ``--beir`` the collection is ``--passages`` passages cut
from the BEIR corpus (titles and windows of 1, 2 and 3 consecutive sentences of every
document, in a fixed order), indexed once through the service's own indexing path with the
default encoders (reused when ``--data-dir`` already holds it), served by ``lsr serve``, and
the queries are the folder's queries. Each mode gets ``--requests`` searches from
``--concurrency`` httpx clients. Prints QPS, p50 / p99 latency and the error count per mode;
``--write`` also rewrites the "service-load" section of BENCHMARKS.md. Bounded: every request has
a timeout and the run stops after the requests asked for.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from encoders.beir import load_titled_corpus

from .report import ROOT, machine, write_section

QUERIES = ["how do wind turbines make electricity", "baking sourdough bread", "black holes and gravity",
           "benefits of regular exercise", "what is an inverted index", "history of the printing press",
           "growing tomatoes in the garden", "compound interest explained", "how bats find insects",
           "melting glaciers and sea level", "jazz improvisation", "marathon distance",
           "reusable rockets", "transformers self-attention", "cheese making", "volcano formation"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


def passages(folder: Path, limit: int):
    """(id, text) passages of a BEIR corpus: every title, then sentence windows of width 1, 2
    and 3 of every document, until ``limit``. Deterministic, so a rerun reuses the index."""
    ids, titles, texts = load_titled_corpus(folder)
    sentences = [[s for s in SENTENCE_END.split(text) if len(s.split()) >= 4] for text in texts]
    n = 0
    for doc_id, title in zip(ids, titles):
        if title:
            yield f"{doc_id}-t", title
            n += 1
            if n >= limit:
                return
    for width in (1, 2, 3):
        for doc_id, sents in zip(ids, sentences):
            for i in range(len(sents) - width + 1):
                yield f"{doc_id}-w{width}-{i}", " ".join(sents[i:i + width])
                n += 1
                if n >= limit:
                    return


def build_passage_collection(beir: Path, limit: int, data_dir: Path, name: str) -> int:
    """Index the passages into ``name`` under ``data_dir`` unless it already holds them all."""
    from service.errors import NotFound
    from service.indexing import index_records
    from service.settings import Settings
    from service.store import Store
    rows = list(passages(beir, limit))
    settings = Settings(data_dir=data_dir)
    store = Store(data_dir, batch_size=settings.encode_batch_size)
    try:
        try:
            store.get(name)
        except NotFound:
            store.create(name, settings.sparse_encoder, settings.dense_encoder, settings.multivector_encoder)
        # Chunks are committed in order, so a killed build resumes after what is stored.
        done = store.stats(name)["documents"]
        if done < len(rows):
            index_records(store, name, ((pid, text, {}) for pid, text in rows[done:]), len(rows) - done,
                          chunk=256)
        # after a bulk load, compact: the small segments left by the last flushes become one
        # Seismic segment (what a fresh build and a resumed one both end with)
        store.get(name).merge()
        return store.stats(name)["documents"]
    finally:
        store.close()


def start_server(data_dir: Path, port: int, timeout: float = 600.0, demo: bool = True) -> subprocess.Popen:
    cmd = (["-m", "service.demo", "--data-dir", str(data_dir), "--port", str(port)] if demo else
           ["-m", "service.cli", "serve", "--data-dir", str(data_dir), "--port", str(port), "--preload"])
    proc = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("server did not become ready")


async def load(url: str, mode: str, n: int, concurrency: int, queries: list[str]) -> dict:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(n))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            body = {"query": queries[i % len(queries)], "k": 10, "mode": mode}
            t0 = time.perf_counter()
            try:
                r = await http.post(url, json=body)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"mode": mode, "requests": n, "concurrency": concurrency, "qps": n / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "errors": errors}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="per mode")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--modes", nargs="+", default=["sparse", "bm25", "dense", "hybrid"])
    ap.add_argument("--data-dir", type=Path, help="default: a temporary directory")
    ap.add_argument("--beir", type=Path, help="serve passages of this BEIR folder and use its queries")
    ap.add_argument("--passages", type=int, default=100_000, help="with --beir: collection size")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--write", action="store_true", help="rewrite the 'service-load' section of BENCHMARKS.md")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lsr-bench-") as tmp:
        data = args.data_dir or Path(tmp) / "data"
        queries, name, n_docs = QUERIES, "demo", 200
        if args.beir:
            name = "passages"
            n_docs = build_passage_collection(args.beir, args.passages, data, name)
            queries = [json.loads(line)["text"] for line in open(args.beir / "queries.jsonl")]
        port = free_port()
        proc = start_server(data, port, demo=args.beir is None)
        try:
            url = f"http://127.0.0.1:{port}/collections/{name}/search"
            rows = []
            for mode in args.modes:
                asyncio.run(load(url, mode, min(32, args.requests), args.concurrency, queries))  # warm-up
                rows.append(asyncio.run(load(url, mode, args.requests, args.concurrency, queries)))
                r = rows[-1]
                print(f"{mode:7s} {r['qps']:8.1f} QPS  p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
                      f"errors {r['errors']}", flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if args.write:
        table = ["| mode | QPS | p50 ms | p99 ms | errors |", "|---|---|---|---|---|"]
        table += [f"| {r['mode']} | {r['qps']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |"
                  for r in rows]
        what = (f"{n_docs:,} passages of {args.beir.name} (`--beir {args.beir} --passages {args.passages}`), "
                f"its {len(queries):,} queries" if args.beir else "the 200-document demo collection")
        write_section("service-load", "## Service load test\n\n"
                      f"`python -m benchmarks.service --requests {args.requests} --concurrency "
                      f"{args.concurrency}`: {what}, one uvicorn worker, "
                      f"clients on the same machine ({machine()}).\n\n" + "\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
