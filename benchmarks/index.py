"""Seismic index benchmark: lsr-search vs pyseismic-lsr on the same data in the same run.

    python -m benchmarks.index                 # synthetic 100k + SciFact SPLADE (if encoded)
    python -m benchmarks.index --datasets synthetic-1m
    python -m benchmarks.index --datasets synthetic-100k,synthetic-100k-flat --skip-crossover
    python -m benchmarks.index --datasets synthetic-1m --queries 300 --repeats 1 --skip-crossover
    python -m benchmarks.index --quick         # a 20k-document smoke run

Each system builds in its own subprocess, so build time and peak RSS are its own. Both indexes
are then loaded in this process and every grid point is timed for both back to back (best of
--repeats passes per query), so load from other processes hits them alike. Queries run one at
a time on one thread through each library's Python API; recall@10 is against exact top-10.
Synthetic datasets are synthetic-<20k|100k|1m>[-<flat|long|topical>] (benchmarks/synthetic.py
VARIANTS: other Zipf exponents, topic structures and document lengths), so that a gain can be
checked on more than one distribution. Each run records build CPU seconds and the load average
before and after. Results go to bench-out/index-<dataset>.json, the section "index" of
BENCHMARKS.md and benchmarks/index_recall_latency.png.

The κ-NN arm ("lsr-knn") is the lsr-search index plus a κ-NN graph (KNN neighbours a document,
added to the saved plain index in its own subprocess: its build CPU is the plain build's plus the
graph's, its peak RSS the larger of the two) searched with knn_expand = KNN_EXPAND over the same
grid. KNN and KNN_EXPAND were chosen with --tune-knn on another query sample of the synthetic
generator (query sample 1), never on the queries reported:

    python -m benchmarks.index --tune-knn --datasets synthetic-100k,synthetic-100k-flat

--pyseismic-knn adds pyseismic-lsr with its own κ-NN graph (SeismicIndex.build_knn on its saved
index, searched with n_knn = KNN_EXPAND), counted the same way.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .report import ROOT, fmt, interpolate_latency, machine, write_section

OUT = ROOT / "bench-out"
GRID_QC = (2, 3, 5, 8, 10, 15, 20, 30)
GRID_HF = (0.5, 0.7, 0.8, 0.9, 1.0)
SCIFACT_NPZ = ROOT / ".cache" / "scifact-splade-tiny.npz"
SYSTEMS = (("lsr", "lsr-search"), ("lsr-knn", "lsr-search κ-NN"), ("pyseismic", "pyseismic-lsr 0.5.4"),
           ("pyseismic-knn", "pyseismic-lsr 0.5.4 κ-NN"))
KNN, KNN_EXPAND = 10, 10  # the κ-NN arm: neighbours stored, neighbours scored a top hit (--tune-knn)
TUNE_KNN = (10, 20)  # --tune-knn: neighbours stored ...
TUNE_EXPAND = (2, 4, 10, 20)  # ... and scored a top hit


# ----------------------------------------------------------------------------- data
def side_study_sample(name: str) -> int:
    """The query sample of A/B runs and profiles: synthetic query sample 1, never the reported
    queries (sample 0); SciFact has only its test queries."""
    return 0 if name == "scifact" else 1


def load_dataset(name: str, n_queries: int, query_sample: int = 0):
    """(docs csr, queries csr, build params) for a dataset name."""
    if name.startswith("synthetic"):
        from .synthetic import dataset
        docs, queries = dataset(name, n_queries, query_sample)
        return docs, queries, dict(n_postings=1000, centroid_fraction=0.1, summary_energy=0.4)
    if name == "scifact":
        if not SCIFACT_NPZ.exists():
            raise FileNotFoundError(
                f"{SCIFACT_NPZ} is missing: encode SciFact first with `python -m encoders.evaluate "
                f"../shared/data/scifact --encoder splade --export {SCIFACT_NPZ}`")
        if query_sample:
            raise ValueError("SciFact has one query sample (its test queries)")
        z = np.load(SCIFACT_NPZ, allow_pickle=False)
        dim = int(z["dim"])
        docs = sp.csr_matrix((z["doc_data"], z["doc_indices"], z["doc_indptr"]),
                             shape=(len(z["doc_indptr"]) - 1, dim))
        q = sp.csr_matrix((z["q_data"], z["q_indices"], z["q_indptr"]), shape=(len(z["q_indptr"]) - 1, dim))
        return docs, q, dict(n_postings=3500, centroid_fraction=0.1, summary_energy=0.4)
    raise ValueError(f"unknown dataset {name!r}")


# ----------------------------------------------------------------------------- runners
def _time_queries(search, queries, repeats: int = 1) -> tuple[list, np.ndarray]:
    """Per-query latency in µs (best of `repeats` passes, to shed noise from other processes)."""
    for i in range(min(50, len(queries))):  # warm caches and lazy initialisation
        search(*queries[i])
    results, lat = [], np.full(len(queries), np.inf)
    for rep in range(repeats):
        for i, q in enumerate(queries):
            t0 = time.perf_counter_ns()
            r = search(*q)
            lat[i] = min(lat[i], (time.perf_counter_ns() - t0) / 1e3)
            if rep == 0:
                results.append(r)
    return results, lat


def build_lsr(docs, params, path, out):
    from indexer import SeismicIndex
    t0, c0 = time.perf_counter(), time.process_time()
    idx = SeismicIndex.build(docs, **params)
    out.update(build_s=time.perf_counter() - t0, build_cpu_s=time.process_time() - c0,
               bytes=idx.nbytes, space=idx.space_usage(), stats=idx.stats())
    idx.save(path)


def add_knn_graph(plain_path, knn, path, out):
    """The κ-NN arm: the saved plain index plus its graph (build CPU and time of the graph alone)."""
    from indexer import SeismicIndex
    t0, c0 = time.perf_counter(), time.process_time()
    idx = SeismicIndex.load(plain_path, mmap=False).with_knn_graph(knn)
    out.update(graph_s=time.perf_counter() - t0, graph_cpu_s=time.process_time() - c0,
               bytes=idx.nbytes, space=idx.space_usage(), stats=idx.stats())
    idx.save(path)


def add_pyseismic_knn(index_path, knn, path, out):
    """pyseismic-lsr's own κ-NN graph (SeismicIndex.build_knn) on its saved index."""
    import seismic
    t0, c0 = time.perf_counter(), time.process_time()
    idx = seismic.SeismicIndex.load(str(index_path) + ".index.seismic")
    idx.build_knn(knn)
    out.update(graph_s=time.perf_counter() - t0, graph_cpu_s=time.process_time() - c0)
    idx.save_knn(str(path))  # it appends .knn.seismic
    out["knn_bytes"] = Path(str(path) + ".knn.seismic").stat().st_size


def build_pyseismic(docs, params, path, out):
    import seismic
    S = seismic.get_seismic_string()
    t0, c0 = time.perf_counter(), time.process_time()
    ds = seismic.SeismicDataset()
    ds.add_documents_by_id(np.array([str(i) for i in range(docs.shape[0])], dtype=S),
                           docs.indices.astype(np.int64), docs.data.astype(np.float32),
                           docs.indptr.astype(np.int64))
    idx = seismic.SeismicIndex.build_from_dataset(ds, **params)
    out["build_s"], out["build_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    # its space report goes to the process's stdout (Rust println): capture the file descriptor
    with tempfile.TemporaryFile(mode="w+") as f:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(f.fileno(), 1)
        try:
            idx.print_space_usage_byte()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        f.seek(0)
        report = f.read()
    lines = report.splitlines()
    out["bytes"] = next(int(x.split()[1]) for x in lines if x.strip().startswith("Total:"))
    out["summaries_bytes"] = next((int(x.split("summaries:")[1].split()[0]) for x in lines
                                   if "summaries:" in x), None)
    idx.save(str(path))


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM belongs to the address space created at exec; ru_maxrss
    would also count the parent's peak before the spawned child exec'd."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(builder, docs, params, path, conn):
    try:
        out = {}
        builder(docs, params, path, out)
        out["peak_rss_mb"] = peak_rss_mb()
        conn.send(out)
    except BaseException as exc:  # report, don't hang the parent
        conn.send({"error": repr(exc)})
    finally:
        conn.close()


def in_subprocess(builder, *args):
    """Run a build in a fresh process, so its peak RSS is its own."""
    ctx = mp.get_context("spawn")  # fork is unsafe once Numba has started OpenMP threads
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(builder, *args, child))
    p.start()
    child.close()
    out = parent.recv()
    p.join()
    if "error" in out:
        raise RuntimeError(f"{builder.__name__} failed: {out['error']}")
    return out


def lsr_searcher(path: Path, knn_expand: int = 0):
    """search(qi, qv, k, qc, hf) -> ids over the lsr-search index saved at path."""
    from indexer import SeismicIndex
    idx = SeismicIndex.load(path, mmap=False)

    def search(qi, qv, k, qc, hf):
        return idx.search(qi, qv, k=k, query_cut=qc, heap_factor=hf, knn_expand=knn_expand)[0].tolist()
    return search


def searchers(tmp: Path, queries, have_pyseismic: bool, knn_expand: int = 0, knn: int = 0):
    """Loaded indexes as name -> (search(q..., k, qc, hf) -> ids, prepared queries)."""
    lsr_qs = [(q.indices.astype(np.int32), q.data.astype(np.float32)) for q in queries]
    out = {"lsr": (lsr_searcher(tmp / "lsr"), lsr_qs)}
    if (tmp / "lsr-knn").exists():
        out["lsr-knn"] = (lsr_searcher(tmp / "lsr-knn", knn_expand), lsr_qs)
    if have_pyseismic:
        import seismic
        S = seismic.get_seismic_string()
        ps = seismic.SeismicIndex.load(str(tmp / "pyseismic") + ".index.seismic")

        def ps_search(comps, qv, k, qc, hf):
            r = ps.search(query_id="q", query_components=comps, query_values=qv, k=k, query_cut=qc,
                          heap_factor=hf)
            return [int(x[2]) for x in r]
        ps_qs = [(np.array([str(t) for t in q.indices], dtype=S), q.data.astype(np.float32)) for q in queries]
        out["pyseismic"] = (ps_search, ps_qs)
        if (tmp / "pyseismic.knn.seismic").exists():
            psk = seismic.SeismicIndex.load(str(tmp / "pyseismic") + ".index.seismic")
            psk.load_knn(str(tmp / "pyseismic.knn.seismic"), knn)

            def psk_search(comps, qv, k, qc, hf):
                r = psk.search(query_id="q", query_components=comps, query_values=qv, k=k, query_cut=qc,
                               heap_factor=hf, n_knn=knn_expand)
                return [int(x[2]) for x in r]
            out["pyseismic-knn"] = (psk_search, ps_qs)
    return out


def interleaved_grid(systems: dict, gt, repeats: int, k: int = 10, grid_qc=GRID_QC,
                     grid_hf=GRID_HF) -> dict[str, list]:
    """Every grid point is timed for all systems back to back, so load from other processes
    hits them alike; each query's latency is its best of `repeats` passes."""
    rows = {name: [] for name in systems}
    for qc in grid_qc:
        for hf in grid_hf:
            for name, (search, qs) in systems.items():
                res, lat = _time_queries(lambda a, b: search(a, b, k, qc, hf), qs, repeats)
                rec = float(np.mean([len(set(r) & g) / k for r, g in zip(res, gt)]))
                rows[name].append({"query_cut": qc, "heap_factor": hf, "recall": rec,
                                   "mean_us": float(lat.mean()), "p99_us": float(np.percentile(lat, 99))})
    return rows


# ----------------------------------------------------------------------------- exact
def exact_vs_numpy(docs, queries, k=10):
    """ExactIndex (C++ TAAT) vs numpy TAAT over the query's CSC columns, one thread, per query."""
    from indexer import ExactIndex
    ex = ExactIndex.build(docs)
    csc = docs.tocsc()
    ptr, rows, vals = csc.indptr, csc.indices, csc.data.astype(np.float32)
    n = docs.shape[0]

    def numpy_taat(qi, qv):
        acc = np.zeros(n, np.float32)
        for t, w in zip(qi, qv):
            acc[rows[ptr[t]:ptr[t + 1]]] += w * vals[ptr[t]:ptr[t + 1]]
        top = np.argpartition(-acc, k)[:k]
        return top[np.argsort(-acc[top])]
    qs = [(q.indices.astype(np.int32), q.data.astype(np.float32)) for q in queries]
    lat_np = lat_ex = np.inf
    for _ in range(3):  # alternate passes so both see the same background load
        lat_np = np.minimum(lat_np, _time_queries(numpy_taat, qs)[1])
        lat_ex = np.minimum(lat_ex, _time_queries(lambda qi, qv: ex.search(qi, qv, k=k), qs)[1])
    return {"numpy_us": float(lat_np.mean()), "exact_us": float(lat_ex.mean())}


def crossover(sizes=(1_000, 2_000, 5_000, 10_000, 20_000, 50_000), query_cut=10, heap_factor=0.9):
    """Per-query latency of ExactIndex vs SeismicIndex on growing synthetic collections: below
    the crossover a segment is cheaper to search exactly (and exact is never wrong)."""
    from indexer import ExactIndex, SeismicIndex
    from .synthetic import SyntheticSplade
    gen = SyntheticSplade()
    all_docs, queries = gen.documents(max(sizes)), gen.queries(200)
    qs = [(q.indices.astype(np.int32), q.data.astype(np.float32)) for q in queries]
    rows = []
    for n in sizes:
        docs = all_docs[:n]
        ex, se = ExactIndex.build(docs), SeismicIndex.build(docs, n_postings=1000)
        lat_ex = lat_se = np.inf
        for _ in range(3):
            lat_ex = np.minimum(lat_ex, _time_queries(lambda a, b: ex.search(a, b, k=10), qs)[1])
            lat_se = np.minimum(lat_se, _time_queries(
                lambda a, b: se.search(a, b, k=10, query_cut=query_cut, heap_factor=heap_factor), qs)[1])
        rows.append({"docs": n, "exact_us": float(lat_ex.mean()), "seismic_us": float(lat_se.mean())})
        print(f"[crossover] {rows[-1]}", flush=True)
    return rows


def git_commit() -> str:
    import subprocess
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def saved_results() -> list[dict]:
    """Every dataset's latest run (bench-out/index-<dataset>.json), so runs of different datasets
    add up in BENCHMARKS.md instead of replacing each other."""
    order = ["synthetic-20k", "synthetic-100k", "synthetic-100k-flat", "synthetic-100k-long",
             "synthetic-100k-topical", "synthetic-1m", "scifact"]
    found = {p.stem.removeprefix("index-"): json.loads(p.read_text()) for p in OUT.glob("index-*.json")
             if p.stem != "index-crossover"}
    return [found[n] for n in sorted(found, key=lambda n: order.index(n) if n in order else 99)
            if n != "synthetic-20k"]


# ----------------------------------------------------------------------------- main
def bench(name: str, n_queries: int, repeats: int, knn: int = KNN, knn_expand: int = KNN_EXPAND,
          pyseismic_knn: bool = False) -> dict:
    from indexer import ExactIndex
    docs, queries, params = load_dataset(name, n_queries)
    docs = docs.tocsr().astype(np.float32)
    docs.sort_indices()
    print(f"[{name}] {docs.shape[0]} docs, {docs.nnz / docs.shape[0]:.0f} nnz/doc, "
          f"{queries.shape[0]} queries, {queries.nnz / queries.shape[0]:.0f} nnz/query", flush=True)
    gt_ids, _ = ExactIndex.build(docs).search_batch(queries, k=10)
    gt = [set(r[r >= 0].tolist()) for r in gt_ids]
    res = {"dataset": name, "docs": docs.shape[0], "queries": queries.shape[0],
           "doc_nnz": docs.nnz / docs.shape[0], "query_nnz": queries.nnz / queries.shape[0],
           "params": params, "machine": machine(), "commit": git_commit(),
           "date": time.strftime("%Y-%m-%d"), "repeats": repeats,
           "load_before": os.getloadavg()[0]}
    res["exact"] = exact_vs_numpy(docs, queries)
    print(f"[{name}] exact: {res['exact']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="lsr-bench-") as tmp:
        tmp = Path(tmp)
        res["lsr"] = in_subprocess(build_lsr, docs, params, tmp / "lsr")
        print(f"[{name}] lsr-search: build {res['lsr']['build_s']:.1f}s, "
              f"{res['lsr']['bytes'] / 1e6:.1f} MB", flush=True)
        if knn:
            g = in_subprocess(add_knn_graph, tmp / "lsr", knn, tmp / "lsr-knn")
            res["lsr-knn"] = {**g, "knn": knn, "knn_expand": knn_expand,
                              "build_s": res["lsr"]["build_s"] + g["graph_s"],
                              "build_cpu_s": res["lsr"]["build_cpu_s"] + g["graph_cpu_s"],
                              "peak_rss_mb": max(res["lsr"]["peak_rss_mb"], g["peak_rss_mb"])}
            print(f"[{name}] lsr-search κ-NN graph (κ={knn}): {g['graph_s']:.1f}s, "
                  f"{g['graph_cpu_s']:.1f} CPU s, {g['space']['knn_bytes'] / 1e6:.1f} MB", flush=True)
        have_ps = importlib.util.find_spec("seismic") is not None
        if not have_ps:
            print("pyseismic-lsr is not installed (pip install -e '.[bench]'); skipping it", flush=True)
        if have_ps:
            res["pyseismic"] = in_subprocess(build_pyseismic, docs, params, tmp / "pyseismic")
            print(f"[{name}] pyseismic: build {res['pyseismic']['build_s']:.1f}s, "
                  f"{res['pyseismic']['bytes'] / 1e6:.1f} MB", flush=True)
            if knn and pyseismic_knn:
                g = in_subprocess(add_pyseismic_knn, tmp / "pyseismic", knn, tmp / "pyseismic")
                ps = res["pyseismic"]
                res["pyseismic-knn"] = {**g, "knn": knn, "knn_expand": knn_expand,
                                        "bytes": ps["bytes"] + g["knn_bytes"],
                                        "build_s": ps["build_s"] + g["graph_s"],
                                        "build_cpu_s": ps["build_cpu_s"] + g["graph_cpu_s"],
                                        "peak_rss_mb": max(ps["peak_rss_mb"], g["peak_rss_mb"])}
                print(f"[{name}] pyseismic κ-NN graph (κ={knn}): {g['graph_s']:.1f}s, "
                      f"{g['graph_cpu_s']:.1f} CPU s, {g['knn_bytes'] / 1e6:.1f} MB", flush=True)
        grids = interleaved_grid(searchers(tmp, queries, have_ps, knn_expand, knn), gt, repeats=repeats)
        for sysname, rows in grids.items():
            res[sysname]["grid"] = rows
    res["load_after"] = os.getloadavg()[0]
    OUT.mkdir(exist_ok=True)
    (OUT / f"index-{name}.json").write_text(json.dumps(res, indent=1))
    return res


def tune_knn(name: str, n_queries: int, repeats: int, query_sample: int = 1) -> dict:
    """Frontier of the κ-NN arm for every (κ, knn_expand) of TUNE_KNN x TUNE_EXPAND on another
    query sample, against the plain index: what KNN and KNN_EXPAND were chosen from."""
    from indexer import ExactIndex
    docs, queries, params = load_dataset(name, n_queries, query_sample)
    docs = docs.tocsr().astype(np.float32)
    docs.sort_indices()
    gt_ids, _ = ExactIndex.build(docs).search_batch(queries, k=10)
    gt = [set(r[r >= 0].tolist()) for r in gt_ids]
    res = {"dataset": name, "query_sample": query_sample, "queries": queries.shape[0],
           "load_before": os.getloadavg()[0], "graphs": {}, "frontier": {}}
    with tempfile.TemporaryDirectory(prefix="lsr-tune-") as tmp:
        tmp = Path(tmp)
        res["plain"] = in_subprocess(build_lsr, docs, params, tmp / "lsr")
        qs = [(q.indices.astype(np.int32), q.data.astype(np.float32)) for q in queries]
        systems = {"plain": (lsr_searcher(tmp / "lsr"), qs)}
        for knn in TUNE_KNN:
            g = in_subprocess(add_knn_graph, tmp / "lsr", knn, tmp / f"knn{knn}")
            res["graphs"][knn] = {"graph_cpu_s": g["graph_cpu_s"], "knn_bytes": g["space"]["knn_bytes"]}
            print(f"[{name}] κ={knn}: graph {g['graph_cpu_s']:.1f} CPU s", flush=True)
            for kx in TUNE_EXPAND:
                if kx <= knn:
                    systems[f"knn{knn}-x{kx}"] = (lsr_searcher(tmp / f"knn{knn}", kx), qs)
        grids = interleaved_grid(systems, gt, repeats=repeats)
    for sysname, rows in grids.items():
        mean_pts = [(g["recall"], g["mean_us"]) for g in rows]
        res["frontier"][sysname] = {
            "mean_us@0.90": interpolate_latency(mean_pts, 0.90), "mean_us@0.95": interpolate_latency(mean_pts, 0.95),
            "mean_us@0.99": interpolate_latency(mean_pts, 0.99),
            "p99_us@0.95": interpolate_latency([(g["recall"], g["p99_us"]) for g in rows], 0.95),
            "max_recall": max(g["recall"] for g in rows)}
        print(f"[{name}] {sysname}: " + ", ".join(f"{k} {fmt(v)}" if "us" in k else f"{k} {v:.4f}"
                                                  for k, v in res["frontier"][sysname].items()), flush=True)
    res["grids"] = grids
    res["load_after"] = os.getloadavg()[0]
    OUT.mkdir(exist_ok=True)
    (OUT / f"knn-tune-{name}.json").write_text(json.dumps(res, indent=1))
    return res


def _ratio(x, y):
    return None if x is None or y is None else x / y


def summarise(results: list[dict], cross: list[dict] | None = None) -> str:
    lines = ["## Seismic index vs pyseismic-lsr", "",
             f"Machine: {results[0]['machine']}. Reproduce: `make bench-index` "
             "(`python -m benchmarks.index`). Both systems get the same vectors, the same build "
             "parameters, and one thread per query through their Python APIs; recall@10 is against "
             "exact top-10. Latency interpolated on each system's recall/latency frontier over the "
             f"grid query_cut ∈ {list(GRID_QC)} × heap_factor ∈ {list(GRID_HF)}.", "",
             "Each dataset's row comes from its latest run (commit and date in the table).", "",
             "| dataset | system | build s | index MB | peak RSS MB | mean µs @R0.90 | mean µs @R0.95 "
             "| p99 µs @R0.95 | max recall |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    ratios = []
    for r in results:
        per = {}
        for sysname, label in SYSTEMS:
            s = r.get(sysname)
            if not s:
                continue
            mean_pts = [(g["recall"], g["mean_us"]) for g in s["grid"]]
            p99_pts = [(g["recall"], g["p99_us"]) for g in s["grid"]]
            at90, at95 = interpolate_latency(mean_pts, 0.90), interpolate_latency(mean_pts, 0.95)
            p99 = interpolate_latency(p99_pts, 0.95)
            per[sysname] = (at90, at95, p99, s.get("build_cpu_s"), s["bytes"], s["peak_rss_mb"])
            if sysname.endswith("-knn"):
                label += f" (κ={s['knn']}, knn_expand={s['knn_expand']})"
            lines.append(f"| {r['dataset']} ({r.get('commit', '?')}, {r.get('date', '?')}) | {label} | "
                         f"{s['build_s']:.1f} | {s['bytes'] / 1e6:.1f} | "
                         f"{s['peak_rss_mb']:.0f} | {fmt(at90)} | {fmt(at95)} | {fmt(p99)} | "
                         f"{max(g['recall'] for g in s['grid']):.4f} |")
        for arm in ("lsr", "lsr-knn"):
            if arm in per and "pyseismic" in per:
                a, b = per[arm], per["pyseismic"]
                load = (f"{r['load_before']:.1f} → {r['load_after']:.1f}" if "load_before" in r else "?")
                ratios.append((r["dataset"] + (" κ-NN" if arm == "lsr-knn" else ""),
                               *(_ratio(x, y) for x, y in zip(a, b)),
                               r["exact"]["exact_us"] / r["exact"]["numpy_us"], load))
    lines += ["", "Ratios lsr-search / pyseismic-lsr, measured side by side in one run (goals of issue 17: "
              "latency ≤ 0.65, p99 ≤ 0.8, build CPU ≤ 0.5, bytes ≤ 0.6, peak RSS ≤ 1.0; "
              "ExactIndex / numpy term-at-a-time ≤ 0.2); rows marked κ-NN are the κ-NN arm, its graph "
              "counted in its build CPU and bytes. The load average (1 min) at the start and "
              "end of each run is given because the 2-core machine is shared:", "",
              "| dataset | latency @R0.90 | latency @R0.95 | p99 @R0.95 | build CPU | index bytes | peak build RSS "
              "| exact / numpy TAAT | load avg |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for d, l90, l95, p99, cpu, by, rss, ex, load in ratios:
        lines.append(f"| {d} | {fmt(l90, '.2f')} | {fmt(l95, '.2f')} | {fmt(p99, '.2f')} | {fmt(cpu, '.2f')} | "
                     f"{by:.2f} | {rss:.2f} | {ex:.2f} | {load} |")
    lines += ["", "![recall vs latency](benchmarks/index_recall_latency.png)"]
    if cross:
        lines += ["", "Exact vs Seismic on small synthetic segments (mean µs per query, one thread; "
                  "Seismic at query_cut=10, heap_factor=0.9):", "",
                  "| docs | " + " | ".join(f"{r['docs']:,}" for r in cross) + " |",
                  "|---|" + "---:|" * len(cross),
                  "| ExactIndex | " + " | ".join(f"{r['exact_us']:.0f}" for r in cross) + " |",
                  "| SeismicIndex | " + " | ".join(f"{r['seismic_us']:.0f}" for r in cross) + " |"]
    for r in results:
        s = r.get("lsr", {}).get("space")
        if s:
            lines.append(f"\n{r['dataset']}: lsr-search bytes by part: " +
                         ", ".join(f"{k.replace('_bytes', '')} {v / 1e6:.1f} MB" for k, v in s.items() if v) +
                         (f"; pyseismic summaries {r['pyseismic']['summaries_bytes'] / 1e6:.1f} MB"
                          if r.get("pyseismic", {}).get("summaries_bytes") else ""))
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, r in zip(axes[0], results):
        for (sysname, label), color in zip(SYSTEMS, ("tab:blue", "tab:green", "tab:orange", "tab:red")):
            s = r.get(sysname)
            if not s:
                continue
            pts = sorted((g["mean_us"], g["recall"]) for g in s["grid"])
            ax.scatter([p[1] for p in pts], [p[0] for p in pts], s=8, color=color, alpha=0.35)
            front, best = [], -1
            for lat, rec in pts:
                if rec > best:
                    front.append((rec, lat))
                    best = rec
            ax.plot([f[0] for f in front], [f[1] for f in front], "-o", ms=3, color=color, label=label)
        ax.set_xlabel("recall@10 vs exact")
        ax.set_ylabel("mean latency per query (µs, 1 thread)")
        ax.set_yscale("log")
        ax.set_xlim(left=max(0.5, ax.get_xlim()[0]))
        ax.set_title(f"{r['dataset']} ({r['docs']:,} docs)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=None,
                    help="comma-separated: synthetic-<20k|100k|1m>[-<flat|long|topical>], scifact")
    ap.add_argument("--quick", action="store_true", help="small smoke run; does not touch BENCHMARKS.md")
    ap.add_argument("--queries", type=int, default=None,
                    help="synthetic queries (default 1000, 300 with --quick; SciFact has its 300)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed passes per grid point, best kept (default 3, 1 with --quick)")
    ap.add_argument("--skip-crossover", action="store_true",
                    help="reuse the last exact/Seismic crossover measurement")
    ap.add_argument("--no-knn", action="store_true",
                    help="leave out the κ-NN arm (its graph is the slowest part of a 1M run)")
    ap.add_argument("--pyseismic-knn", action="store_true",
                    help="also time pyseismic-lsr with its own κ-NN graph (KNN, KNN_EXPAND)")
    ap.add_argument("--tune-knn", action="store_true",
                    help="choose the κ-NN arm's KNN and KNN_EXPAND on query sample 1 (default 500 queries, "
                         "1 repeat); writes bench-out/knn-tune-<dataset>.json only")
    args = ap.parse_args(argv)
    if args.tune_knn:
        for n in (args.datasets or "synthetic-100k").split(","):
            tune_knn(n, args.queries or 500, args.repeats or 1)
        return
    if args.datasets:
        names = args.datasets.split(",")
    elif args.quick:
        names = ["synthetic-20k"]
    else:
        names = ["synthetic-100k"] + (["scifact"] if SCIFACT_NPZ.exists() else [])
    n_queries = args.queries or (300 if args.quick else 1000)
    repeats = args.repeats or (1 if args.quick else 3)
    results = [bench(n, n_queries, repeats, knn=0 if args.no_knn else KNN, pyseismic_knn=args.pyseismic_knn)
               for n in names]
    if args.quick:
        print(summarise(results))
        return
    if args.skip_crossover and (OUT / "index-crossover.json").exists():
        cross = json.loads((OUT / "index-crossover.json").read_text())
    else:
        cross = crossover()
        (OUT / "index-crossover.json").write_text(json.dumps(cross, indent=1))
    results = saved_results()
    plot(results, ROOT / "benchmarks" / "index_recall_latency.png")
    write_section("index", summarise(results, cross))
    print(f"wrote {ROOT / 'BENCHMARKS.md'} and benchmarks/index_recall_latency.png")


if __name__ == "__main__":
    main()
