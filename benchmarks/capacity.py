"""Capacity model: shards, replicas, machines and indexing time for 100M and 1B documents, from
per-unit figures measured on this project's own runs (the inputs, each with where it comes from).

    python -m benchmarks.capacity [--cluster bench-out/cluster.json] [--qps 1000] [--write]

It is arithmetic, not a measurement: the projection is only as good as its inputs and its
stated assumptions (below), and its GPU row stays empty until a GPU figure is measured.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from .report import ROOT


@dataclass
class Inputs:
    # BENCHMARKS.md "Growth curve", 1M (derived) passages, all fields (SPLADE, BM25, MiniLM
    # dense float32 + int8 codes, text): 3,263 MiB on disk, 4,806 MiB RSS of one `lsr serve`
    # (models, ~1 GiB, included)
    disk_bytes_per_doc: float = 3263 * 2**20 / 1e6
    rss_bytes_per_doc: float = (4806 - 1024) * 2**20 / 1e6
    # "Serving engine", 100k passages: the sparse list's retrieve stage 2.87 ms; growth: SPLADE
    # flat from 100k to 1M (Seismic's posting budget is fixed), so taken as the per-shard cost
    sparse_retrieve_ms: float = 2.87
    # SPLADE query encoding on one core (the same run's encode stage, ~4.3 ms of 8.15)
    sparse_encode_ms: float = 4.3
    bm25_ms: float = 0.7  # growth 1M lone p50 1.10 ms minus the REST overhead 0.41 ms
    # the cluster benchmark (benchmarks/cluster.py): docs/s of one encoder actor on 2 cores
    cpu_docs_s_per_actor: float | None = None
    cores_per_actor: int = 2
    gpu_docs_s_per_actor: float | None = None  # unmeasured: no GPU was available to these runs
    router_overhead_ms: float | None = None


@dataclass
class Plan:
    docs: int
    docs_per_shard: int = 10_000_000
    target_qps: float = 1000.0
    cores_per_machine: int = 32
    ram_per_machine_gib: int = 256

    def rows(self, i: Inputs) -> dict:
        shards = math.ceil(self.docs / self.docs_per_shard)
        shard_rss_gib = self.docs_per_shard * i.rss_bytes_per_doc / 2**30 + 0.5  # + a reader's own
        # every query searches every shard: reader CPU per query = shards x per-shard retrieve
        reader_cores = self.target_qps * shards * i.sparse_retrieve_ms / 1000
        # replicas per shard: enough cores for the load, at least 2 for availability, each with
        # its shard resident in RAM
        replicas = max(2, math.ceil(reader_cores / shards))
        encoder_cores = self.target_qps * i.sparse_encode_ms / 1000
        machines_by_ram = math.ceil(shards * replicas * shard_rss_gib / (0.8 * self.ram_per_machine_gib))
        machines_by_cpu = math.ceil((reader_cores + encoder_cores) / (0.7 * self.cores_per_machine))
        out = {"documents": self.docs, "shards": shards, "reader replicas per shard": replicas,
               "RSS per shard replica GiB": round(shard_rss_gib, 1),
               "index on shared storage TB": round(self.docs * i.disk_bytes_per_doc / 1e12, 2),
               "reader cores at target QPS": round(reader_cores, 1),
               "query-encoder cores at target QPS": round(encoder_cores, 1),
               "machines (RAM-bound, CPU-bound)": f"{max(machines_by_ram, machines_by_cpu)} "
                                                  f"({machines_by_ram}, {machines_by_cpu})"}
        if i.router_overhead_ms is not None:
            # a lone search: encode, the slowest shard's retrieve, and the router's own hops
            out["lone sparse search p50 ms (estimate)"] = round(i.sparse_encode_ms + i.sparse_retrieve_ms
                                                                + i.router_overhead_ms, 1)
        if i.cpu_docs_s_per_actor:
            per_core = i.cpu_docs_s_per_actor / i.cores_per_actor
            cores = 1000
            out["indexing hours on 1,000 CPU cores"] = round(self.docs / (per_core * cores) / 3600, 1)
        out["indexing hours on 8 GPUs"] = (round(self.docs / (i.gpu_docs_s_per_actor * 8) / 3600, 1)
                                           if i.gpu_docs_s_per_actor else "unmeasured (no GPU)")
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cluster", type=Path, help="benchmarks/cluster.py --out JSON (docs/s, router overhead)")
    ap.add_argument("--qps", type=float, default=1000.0, help="target sparse searches per second")
    ap.add_argument("--write", action="store_true", help="rewrite SCALING.md's projection section")
    args = ap.parse_args(argv)
    inputs = Inputs()
    if args.cluster:
        c = json.loads(args.cluster.read_text())
        inputs.cpu_docs_s_per_actor = c["bulk_docs_s"].get("1") or c["bulk_docs_s"].get(1)
        one = next(p for p in c["points"] if p["shards"] == 1 and p["replicas"] == 1)
        inputs.router_overhead_ms = round(one["sparse"]["lone_p50_ms"] - c["single_node"]["sparse"]["lone_p50_ms"], 2)
    plans = [Plan(100_000_000, target_qps=args.qps), Plan(1_000_000_000, target_qps=args.qps)]
    rows = [p.rows(inputs) for p in plans]
    print(json.dumps({"inputs": asdict(inputs), "plans": rows}, indent=2))
    if args.write:
        keys = list(rows[0])
        table = ["| | " + " | ".join(f"{r['documents']:,} documents" for r in rows) + " |",
                 "|---|" + "---:|" * len(rows)]
        table += [f"| {k} | " + " | ".join(str(r[k]) for r in rows) + " |" for k in keys[1:]]
        body = ["## Projection", "", f"`python -m benchmarks.capacity --cluster {args.cluster} --qps {args.qps:g} "
                "--write`; inputs (per unit, measured — see the Inputs class for where each comes from):", "",
                "```json", json.dumps(asdict(inputs), indent=1), "```", "", *table]
        path = ROOT / "SCALING.md"
        text = path.read_text()
        start, end = "<!-- projection:start -->", "<!-- projection:end -->"
        block = start + "\n" + "\n".join(body) + "\n" + end
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):] if start in text else \
            text.rstrip() + "\n\n" + block + "\n"
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
