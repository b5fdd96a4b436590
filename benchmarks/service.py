"""Service load test: concurrent HTTP clients against a server in a subprocess.

    python -m benchmarks.service [--requests 2000] [--concurrency 16] [--modes sparse bm25 dense hybrid]
    python -m benchmarks.service --beir ../shared/data/scifact --passages 100000 --data-dir data/loadtest
    python -m benchmarks.service --load wrk --seconds 20 [--workers 2] [--beir ... --bm25-only]

By default the server is `python -m service.demo` (the bundled 200-document demo corpus) and
the queries are a fixed list. With ``--beir`` the collection is ``--passages`` passages cut
from the BEIR corpus (titles and windows of 1, 2 and 3 consecutive sentences of every
document, in a fixed order), indexed once through the service's own indexing path with the
default encoders, or with BM25 alone (``--bm25-only``: minutes instead of an hour; then only
the bm25 mode can run), reused when ``--data-dir`` already holds it, served by ``lsr serve``
(``--workers N`` processes), and the queries are the folder's queries.

``--load httpx`` (the default): ``--requests`` searches per mode from ``--concurrency`` httpx
clients. ``--load wrk``: wrk, a C load generator (Debian's package; `make bench-service`
installs it), so that the client does not eat the cores it measures; ``--seconds`` per mode,
wrk's own request count, QPS and latency percentiles. Every run also measures a lone client
(sequential requests) with the server's own split of its time (the Server-Timing header:
encode, retrieve, fuse, rerank, fetch, serialize), the REST overhead of a BM25 search (lone
REST p50 minus the same search in-process on the same data) next to the HTTP floor (the same
wrk against a bare ASGI app under the same uvicorn: what any Python server pays), and the
resident memory of every server process. ``--write`` rewrites the "service-load" section of BENCHMARKS.md. Bounded:
every request has a timeout and each mode stops after its requests or seconds.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
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


def build_passage_collection(beir: Path, limit: int, data_dir: Path, name: str, bm25_only: bool = False,
                             sparse_encoder: str | None = None, dense: bool = True) -> int:
    """Index the passages into ``name`` under ``data_dir`` unless it already holds them all
    (``sparse_encoder``: any registered sparse model, default the server's; ``dense=False``:
    no dense or multivector field)."""
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
            if bm25_only:
                store.create(name, None, None, None)
            else:
                store.create(name, sparse_encoder or settings.sparse_encoder,
                             settings.dense_encoder if dense else None,
                             settings.multivector_encoder if dense else None)
        # Chunks are committed in order, so a killed build resumes after what is stored.
        done = store.stats(name)["documents"]
        if done < len(rows):
            index_records(store, name, ((pid, text, {}) for pid, text in rows[done:]), len(rows) - done,
                          chunk=256)
        # after a bulk load, compact: the small segments left by the last flushes become one
        # Seismic segment (what a fresh build and a resumed one both end with)
        coll = store.get(name)
        coll.flush()
        coll.merge(force=True)
        return store.stats(name)["documents"]
    finally:
        store.close()


def start_server(data_dir: Path, port: int, timeout: float = 600.0, demo: bool = True,
                 workers: int = 1) -> subprocess.Popen:
    cmd = (["-m", "service.demo", "--data-dir", str(data_dir), "--port", str(port)] if demo else
           ["-m", "service.cli", "serve", "--data-dir", str(data_dir), "--port", str(port), "--preload",
            "--workers", str(workers)])
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


WRK_SCRIPT = """
local bodies = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[(i %% #bodies) + 1])
end
"""


def _lua_string(text: str) -> str:
    level = "=" * 4
    assert f"]{level}]" not in text
    return f"[{level}[{text}]{level}]"


def wrk_load(url: str, mode: str, seconds: int, concurrency: int, queries: list[str], tmp: Path) -> dict:
    """wrk against the search route for `seconds`: its request count, QPS, p50/p99, errors
    (concurrency 1: a lone client, timed by C code rather than by a Python client)."""
    bodies = [json.dumps({"query": q, "k": 10, "mode": mode}) for q in queries[:2000]]
    script = tmp / f"wrk-{mode}.lua"
    script.write_text(WRK_SCRIPT % ", ".join(_lua_string(b) for b in bodies))
    out = subprocess.run(["wrk", f"-t{min(2, concurrency)}", f"-c{concurrency}", f"-d{seconds}s", "--latency",
                          "--timeout", "30s", "-s", str(script), url], capture_output=True, text=True,
                         check=True).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {"mode": mode, "requests": requests, "concurrency": concurrency,
            "qps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": ms("50%"), "p99_ms": ms("99%"), "errors": errors}


def lone_client(url: str, mode: str, queries: list[str], n: int = 200) -> dict:
    """Sequential requests: p50 / p99 (including this Python client's own time) and the
    server's mean time per stage (Server-Timing)."""
    lat, stages = [], {}
    with httpx.Client(timeout=30.0) as http:
        for i in range(n + 10):
            t0 = time.perf_counter()
            r = http.post(url, json={"query": queries[i % len(queries)], "k": 10, "mode": mode})
            if i < 10:
                continue  # warm-up
            lat.append(time.perf_counter() - t0)
            r.raise_for_status()
            for part in r.headers.get("server-timing", "").split(","):
                name, _, dur = part.strip().partition(";dur=")
                if dur:
                    stages[name] = stages.get(name, 0.0) + float(dur) / n
    ms = np.array(lat) * 1000
    return {"mode": mode, "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "stages_ms": stages}


def in_process_p50(data_dir: Path, name: str, mode: str, queries: list[str], n: int = 200) -> float:
    """The same searches without HTTP: the pipeline on a read-only open of the data directory."""
    from service.encoder_cache import ENCODERS
    from service.pipeline import SearchPipeline
    from service.schemas import SearchRequest
    from service.store import Store
    store = Store(data_dir, ENCODERS, read_only=True)
    try:
        pipe, lat = SearchPipeline(store), []
        for i in range(n + 10):
            req = SearchRequest(query=queries[i % len(queries)], k=10, mode=mode)
            t0 = time.perf_counter()
            pipe.search(name, req).model_dump_json()
            if i >= 10:
                lat.append(time.perf_counter() - t0)
        return float(np.percentile(np.array(lat) * 1000, 50))
    finally:
        store.close()


BARE_APP = """
import sys, uvicorn
body = b'{"results": []}'
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def http_floor(queries: list[str], tmp: Path) -> float:
    """Lone wrk p50 against a bare ASGI app (a fixed answer) under uvicorn: the HTTP floor."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                httpx.post(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/collections/x/search"
        wrk_load(url, "bm25", 1, 1, queries, tmp)
        return wrk_load(url, "bm25", 5, 1, queries, tmp)["p50_ms"]
    finally:
        proc.terminate()
        proc.wait(30)


def rss_mib(pid: int, field: str = "Rss") -> dict[int, float]:
    """Memory of a process and its children (the server's workers), MiB: ``Rss`` (resident,
    shared pages counted in every process that maps them) or ``Pss`` (shared pages divided
    among the processes that share them: what each worker really adds)."""
    out = {}
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                      text=True).stdout.split()]
    for p in pids:
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith(field + ":"):
                    out[p] = int(line.split()[1]) / 1024
        except OSError:
            pass
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="per mode (--load httpx)")
    ap.add_argument("--seconds", type=int, default=20, help="per mode (--load wrk)")
    ap.add_argument("--rounds", type=int, default=1, help="the modes take turns this many times; each mode's "
                    "row is its median-QPS round, and the ratios to bm25 are printed per round")
    ap.add_argument("--load", choices=["httpx", "wrk"], default="httpx")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1, help="server processes (with --beir)")
    ap.add_argument("--modes", nargs="+", default=["sparse", "bm25", "dense", "hybrid"])
    ap.add_argument("--data-dir", type=Path, help="default: a temporary directory")
    ap.add_argument("--beir", type=Path, help="serve passages of this BEIR folder and use its queries")
    ap.add_argument("--passages", type=int, default=100_000, help="with --beir: collection size")
    ap.add_argument("--bm25-only", action="store_true", help="with --beir: a BM25-only collection")
    ap.add_argument("--sparse-encoder", help="with --beir: the collection's sparse model (any registered "
                    "sparse kind, e.g. splade-tiny-inference-free; GET /models lists them)")
    ap.add_argument("--no-dense", action="store_true", help="with --beir: no dense / multivector field")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--write", action="store_true", help="rewrite the 'service-load' section of BENCHMARKS.md")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if args.load == "wrk" and shutil.which("wrk") is None:
        ap.error("wrk is not installed: apt-get install wrk (make bench-service does)")
    if args.bm25_only:
        args.modes = ["bm25"]
    with tempfile.TemporaryDirectory(prefix="lsr-bench-") as tmp:
        data = args.data_dir or Path(tmp) / "data"
        queries, name, n_docs = QUERIES, "demo", 200
        if args.beir:
            name = "passages"
            n_docs = build_passage_collection(args.beir, args.passages, data, name, args.bm25_only,
                                              args.sparse_encoder, not args.no_dense)
            queries = [json.loads(line)["text"] for line in open(args.beir / "queries.jsonl")]
        port = free_port()
        proc = start_server(data, port, demo=args.beir is None, workers=args.workers)
        rows, lone, rounds = [], {}, []
        try:
            url = f"http://127.0.0.1:{port}/collections/{name}/search"
            # --rounds: the modes take turns, so that a drift of the machine (another job, a
            # frequency change) falls on all of them alike; ratios are taken within a round
            for rnd in range(args.rounds):
                got = {}
                for mode in args.modes:
                    one = lone_client(url, mode, queries)
                    if args.load == "wrk":
                        alone = wrk_load(url, mode, 5, 1, queries, Path(tmp))
                        one.update(p50_ms=alone["p50_ms"], p99_ms=alone["p99_ms"])
                        row = wrk_load(url, mode, args.seconds, args.concurrency, queries, Path(tmp))
                    else:
                        asyncio.run(load(url, mode, min(32, args.requests), args.concurrency, queries))  # warm-up
                        row = asyncio.run(load(url, mode, args.requests, args.concurrency, queries))
                    got[mode] = (one, row)
                    print(f"{mode:7s} {row['requests']:7d} req {row['qps']:8.1f} QPS  p50 {row['p50_ms']:7.1f} ms  "
                          f"p99 {row['p99_ms']:7.1f} ms  errors {row['errors']}  lone p50 {one['p50_ms']:.2f} ms "
                          f"{ {k: round(v, 2) for k, v in one['stages_ms'].items()} }", flush=True)
                rounds.append(got)
            for mode in args.modes:  # the round of the median QPS stands for the mode
                runs = sorted((got[mode] for got in rounds), key=lambda g: g[1]["qps"])
                lone[mode], row = runs[len(runs) // 2]
                rows.append(row)
            if args.rounds > 1 and "bm25" in args.modes:
                for mode in (m for m in args.modes if m != "bm25"):
                    p50 = [g[mode][0]["p50_ms"] / g["bm25"][0]["p50_ms"] for g in rounds]
                    qps = [g[mode][1]["qps"] / g["bm25"][1]["qps"] for g in rounds]
                    print(f"{mode} / bm25 by round: lone p50 {[round(x, 3) for x in p50]} (median "
                          f"{np.median(p50):.3f}), QPS {[round(x, 3) for x in qps]} (median {np.median(qps):.3f})")
            memory, pss = rss_mib(proc.pid), rss_mib(proc.pid, "Pss")
        finally:
            proc.terminate()
            proc.wait(30)
        overhead = floor = None
        if "bm25" in args.modes:
            overhead = lone["bm25"]["p50_ms"] - in_process_p50(data, name, "bm25", queries)
            floor = http_floor(queries, Path(tmp))
            print(f"REST overhead of a lone BM25 search (p50): {overhead:.2f} ms; HTTP floor {floor:.3f} ms")
    load_avg = os.getloadavg()[0]
    print(f"server RSS MiB per process: { {p: round(m) for p, m in memory.items()} }; PSS: "
          f"{ {p: round(m) for p, m in pss.items()} }; load average {load_avg:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "lone": lone, "rest_overhead_ms": overhead,
                                         "rounds": [{m: {"lone": g[m][0], "load": g[m][1]} for m in g}
                                                    for g in rounds],
                                         "http_floor_ms": floor, "pss_mib": pss,
                                         "rss_mib": memory, "load": load_avg}, indent=2) + "\n")
    if args.write:
        write_section("service-load", report(args, rows, lone, overhead, memory, n_docs, queries, load_avg,
                                             floor, pss))
    return 0


def report(args, rows, lone, overhead, memory, n_docs, queries, load_avg, floor=None, pss=None) -> str:
    what = (f"{n_docs:,} passages of {args.beir.name}{' (BM25 only)' if args.bm25_only else ''}, its "
            f"{len(queries):,} queries" if args.beir else "the 200-document demo collection, 16 fixed queries")
    load = (f"wrk, {args.concurrency} connections, {args.seconds} s per mode" if args.load == "wrk" else
            f"{args.concurrency} httpx clients, {args.requests} requests per mode")
    table = ["| mode | requests | QPS | p50 ms | p99 ms | errors | lone p50 ms | server ms by stage (lone) |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in lone[r["mode"]]["stages_ms"].items())
        table.append(f"| {r['mode']} | {r['requests']:,} | {r['qps']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r['errors']} | {lone[r['mode']]['p50_ms']:.2f} | {stages} |")
    extra = [] if overhead is None else [f"REST overhead of a lone BM25 search: {overhead:.2f} ms (lone REST p50 "
                                         "minus the same searches in-process on the same data)" +
                                         ("." if floor is None else f"; the HTTP floor (a bare ASGI app under the "
                                          f"same uvicorn, the same wrk) is {floor:.3f} ms of it.")]
    extra.append("Server RSS per process (MiB): " + ", ".join(f"{m:.0f}" for m in memory.values()) + ".")
    if pss:
        extra.append("PSS (shared pages split among the processes): " +
                     ", ".join(f"{m:.0f}" for m in pss.values()) + ".")
    return ("## Service load test\n\n"
            f"`python -m benchmarks.service {' '.join(sys.argv[1:])}`: {what}; {args.workers} server "
            f"process(es); load by {load} on the same machine ({machine()}; load average {load_avg:.2f} "
            "at the end).\n\n" + "\n".join(table) + "\n\n" + " ".join(extra) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
