"""Cluster benchmark: the Ray deployment against a single node, side by side in one run.

    tests/loopback.sh python -m benchmarks.cluster --beir ../shared/data/scifact \\
        [--passages 2000] [--seconds 10] [--write]

(tests/loopback.sh: a loopback-only network namespace, where Ray binds 127.0.0.1.) On one
machine, with a single-node Ray started here with explicit CPUs:

1. Bulk indexing docs/s: `lsr index` (one process, the service's own indexing path) against
   `lsr cluster index` (Ray Data) with 1 and 2 encoder actors, the same passages, all encoders.
2. Router overhead: a lone client's p50 of the same searches against `lsr serve` on shard 0's
   directory of an S=1 cluster (the same files) and against the S=1 / R=1 router.
3. Throughput: wrk (32 connections, ``--seconds`` per point) for S in {1, 2} x R in {1, 2},
   bm25 and sparse, with the lone-client p50 of each.
Writes the "cluster" section of BENCHMARKS.md with ``--write``; the load average is recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from .report import ROOT, machine, write_section
from .service import free_port, lone_client, passages, start_server, wrk_load

CONCURRENCY = 32


def _wait_ready(url: str, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not become ready")


def _lsr_index(jsonl: Path, data_dir: Path) -> float:
    """docs/s of `lsr index` into a fresh data directory."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "service.cli", "index", str(jsonl), "--collection", "p",
                    "--data-dir", str(data_dir), "--no-progress"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - t0


def _search_point(url: str, queries: list[str], seconds: int, tmp: Path) -> dict:
    out = {}
    for mode in ("bm25", "sparse"):
        lone = lone_client(f"{url}/collections/p/search", mode, queries, n=100)
        load = wrk_load(f"{url}/collections/p/search", mode, seconds, CONCURRENCY, queries, tmp)
        out[mode] = {"lone_p50_ms": round(lone["p50_ms"], 2), "qps": round(load["qps"], 1),
                     "p50_ms": round(load["p50_ms"], 2), "p99_ms": round(load["p99_ms"], 2),
                     "errors": load["errors"]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", type=Path, required=True)
    ap.add_argument("--passages", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--num-cpus", type=int, default=8, help="Ray's logical CPUs (replicas reserve 0.1 each)")
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    ap.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md's cluster section")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray
    from ray import serve

    from service.cluster import bulk, ray_app
    from service.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="lsr-cluster-bench-"))
    rows = list(passages(args.beir, args.passages))
    jsonl = tmp / "passages.jsonl"
    jsonl.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in rows))
    queries = [json.loads(line)["text"] for line in (args.beir / "queries.jsonl").read_text().splitlines()][:300]
    load_before = os.getloadavg()
    result: dict = {"passages": len(rows), "machine": machine(), "num_cpus": args.num_cpus}

    # 1. bulk indexing: lsr index first (no Ray running), then the cluster
    seconds = _lsr_index(jsonl, tmp / "single")
    result["lsr_index_docs_s"] = round(len(rows) / seconds, 1)
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, namespace=ray_app.NAMESPACE,
             log_to_driver=False, configure_logging=False)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    roots = {s: tmp / f"cluster-s{s}" for s in (1, 2)}
    try:
        bulk_rates = {}
        for shards in (1, 2):
            settings = Settings(data_dir=roots[shards], _env_file=None)
            ray_app.deploy(settings, roots[shards], shards, 1, port=port)
            _wait_ready(url)
            for actors in ((1, 2) if shards == 1 else (2,)):
                name = "p2" if (shards, actors) == (1, 2) else "p"  # "p": the collection searched
                httpx.post(f"{url}/collections", json={"name": name}, timeout=600).raise_for_status()
                out = bulk.bulk_index(str(jsonl), name, root=roots[shards], settings=settings,
                                      encoder_actors=actors)
                if shards == 1:
                    bulk_rates[actors] = round(out["documents"] / out["seconds"], 1)
            ray_app.shutdown(roots[shards], shards)
            serve.shutdown()
        result["bulk_docs_s"] = bulk_rates

        # 2. router overhead: the same files served by lsr serve and by an S=1 / R=1 router
        single = start_server(roots[1] / "shard-000", port, demo=False)
        try:
            result["single_node"] = _search_point(url, queries, args.seconds, tmp)
        finally:
            single.terminate()
            single.wait(60)
        # 3. S x R
        points = []
        for shards in (1, 2):
            for replicas in (1, 2):
                settings = Settings(data_dir=roots[shards], _env_file=None)
                ray_app.deploy(settings, roots[shards], shards, replicas, port=port)
                _wait_ready(url)
                if shards == 2 and not httpx.get(f"{url}/collections/p", timeout=60).is_success:
                    raise RuntimeError("collection p missing on the S=2 cluster")
                points.append({"shards": shards, "replicas": replicas,
                               **_search_point(url, queries, args.seconds, tmp)})
                ray_app.shutdown(roots[shards], shards)
                serve.shutdown()
        result["points"] = points
    finally:
        ray.shutdown()
    result["load_avg"] = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    if args.write:
        write_section("cluster", report(result, args))
    return 0


def report(r: dict, args) -> str:
    single = r["single_node"]
    rates = {int(k): v for k, v in r["bulk_docs_s"].items()}  # JSON makes the keys strings
    one = next(p for p in r["points"] if p["shards"] == 1 and p["replicas"] == 1)
    lines = [
        "## Cluster (Ray Serve + Ray Data) on one machine", "",
        f"`tests/loopback.sh python -m benchmarks.cluster --beir {args.beir} --passages {r['passages']} "
        f"--seconds {args.seconds}`; {r['machine']}; Ray with {r['num_cpus']} logical CPUs on this one "
        f"machine; load average before {r['load_avg']['before']}, after {r['load_avg']['after']}.", "",
        f"**Bulk indexing** ({r['passages']} SciFact passages, SPLADE + BM25 + MiniLM): `lsr index` "
        f"{r['lsr_index_docs_s']} docs/s; `lsr cluster index` with 1 encoder actor "
        f"{rates.get(1)} docs/s, with 2 actors {rates.get(2)} docs/s (Ray start-up, "
        "reading, grouping and installing included).", "",
        "**Router overhead** (lone client, p50 ms, the same files): "
        + "; ".join(f"{m}: `lsr serve` {single[m]['lone_p50_ms']}, S=1/R=1 router {one[m]['lone_p50_ms']} "
                    f"(+{one[m]['lone_p50_ms'] - single[m]['lone_p50_ms']:.2f})" for m in ("bm25", "sparse")),
        "",
        f"**Throughput** (wrk, {CONCURRENCY} connections, {args.seconds} s per cell):", "",
        "| setup | bm25 QPS | bm25 p50 / p99 ms | bm25 lone p50 | sparse QPS | sparse p50 / p99 ms "
        "| sparse lone p50 | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        _row("single node (`lsr serve`)", single)]
    for p in r["points"]:
        lines.append(_row(f"S={p['shards']} R={p['replicas']}", p))
    lines += ["", "On 2 cores every replica, writer, encoder and the router share the same two cores, so "
              "more shards or replicas add hops and processes without adding compute; the figures "
              "measure the overhead of the distribution, and SCALING.md projects what adding machines buys."]
    return "\n".join(lines)


def _row(label: str, p: dict) -> str:
    b, s = p["bm25"], p["sparse"]
    return (f"| {label} | {b['qps']} | {b['p50_ms']} / {b['p99_ms']} | {b['lone_p50_ms']} | {s['qps']} | "
            f"{s['p50_ms']} / {s['p99_ms']} | {s['lone_p50_ms']} | {b['errors'] + s['errors']} |")


if __name__ == "__main__":
    raise SystemExit(main())
