"""Service load test: concurrent HTTP clients against `python -m service.demo` in a subprocess.

    python -m benchmarks.service [--requests 2000] [--concurrency 16] [--modes sparse bm25 dense hybrid]

The server indexes the bundled 200-document demo corpus (or reuses it), then each mode gets
``--requests`` searches from ``--concurrency`` httpx clients, cycling over a fixed query list.
Prints QPS, p50 / p99 latency and the error count per mode; ``--write`` also rewrites the
"service" section of BENCHMARKS.md. Bounded: every request has a timeout and the run stops
after the requests asked for.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

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


def start_server(data_dir: Path, port: int, timeout: float = 600.0) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "service.demo", "--data-dir", str(data_dir),
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
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


async def load(url: str, mode: str, n: int, concurrency: int) -> dict:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(n))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            body = {"query": QUERIES[i % len(QUERIES)], "k": 10, "mode": mode}
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
    ap.add_argument("--json", type=Path)
    ap.add_argument("--write", action="store_true", help="rewrite the 'service' section of BENCHMARKS.md")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lsr-bench-") as tmp:
        data = args.data_dir or Path(tmp) / "data"
        port = free_port()
        proc = start_server(data, port)
        try:
            url = f"http://127.0.0.1:{port}/collections/demo/search"
            rows = []
            for mode in args.modes:
                asyncio.run(load(url, mode, min(32, args.requests), args.concurrency))  # warm-up
                rows.append(asyncio.run(load(url, mode, args.requests, args.concurrency)))
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
        write_section("service", "## Service load test\n\n"
                      f"`python -m benchmarks.service --requests {args.requests} --concurrency "
                      f"{args.concurrency}`: the 200-document demo collection, one uvicorn worker, "
                      f"clients on the same machine ({machine()}).\n\n" + "\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
