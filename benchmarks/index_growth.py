"""Seismic growth curve: lsr-search and pyseismic-lsr from 20k to 1M documents, in one PNG.

    python -m benchmarks.index --datasets synthetic-20k,synthetic-100k --skip-crossover
    python -m benchmarks.index --datasets synthetic-1m --queries 300 --repeats 1 --skip-crossover
    python -m benchmarks.index_growth [--family synthetic] [--out benchmarks/index_growth.png]

Reads the runs ``benchmarks.index`` left in bench-out/ (index-<family>-<size>.json, one per
size) and plots, per system against the number of documents: mean latency at recall@10 0.95
(interpolated on each run's query_cut x heap_factor frontier, as the index section's table),
index bytes per document and build CPU seconds per document. Every size comes from its own
run, each side by side with pyseismic-lsr in that run; the plot's legend names each run's
commit, so a curve that mixes commits says so. Nothing is measured here.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .report import ROOT, interpolate_latency

OUT = ROOT / "bench-out"
SIZES = ("20k", "100k", "1m")
SYSTEMS = (("lsr", "lsr-search"), ("lsr-knn", "lsr-search κ-NN"), ("pyseismic", "pyseismic-lsr"))


def load_runs(family: str, out: Path = OUT) -> list[dict]:
    """The runs of <family>-<size> that exist, smallest first."""
    runs = []
    for size in SIZES:
        path = out / f"index-{family}-{size}.json"
        if path.is_file():
            runs.append(json.loads(path.read_text()))
    return sorted(runs, key=lambda r: r["docs"])


def growth_rows(runs: list[dict], recall: float = 0.95) -> list[dict]:
    """Per run and system: documents, mean µs at the recall, bytes / doc, build CPU µs / doc."""
    rows = []
    for r in runs:
        for key, label in SYSTEMS:
            s = r.get(key)
            if not s:
                continue
            pts = [(g["recall"], g["mean_us"]) for g in s["grid"]]
            rows.append({"system": label, "docs": r["docs"], "commit": r.get("commit", "?"),
                         "mean_us": interpolate_latency(pts, recall),
                         "bytes_per_doc": s["bytes"] / r["docs"],
                         "build_cpu_us_per_doc": 1e6 * s["build_cpu_s"] / r["docs"]})
    return rows


def plot(rows: list[dict], path: Path, family: str, recall: float = 0.95) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    panels = (("mean_us", f"mean µs per query at recall@10 {recall}"),
              ("bytes_per_doc", "index bytes per document"),
              ("build_cpu_us_per_doc", "build CPU µs per document"))
    for ax, (field, title) in zip(axes, panels):
        for _, label in SYSTEMS:
            pts = [(x["docs"], x[field]) for x in rows if x["system"] == label and x[field] is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("documents")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    commits = [f"{docs:,}: {commit}" for docs, commit in sorted({(x["docs"], x["commit"]) for x in rows})]
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Seismic growth, {family} (runs: {'; '.join(commits)})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="synthetic")
    ap.add_argument("--recall", type=float, default=0.95)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "index_growth.png")
    args = ap.parse_args(argv)
    runs = load_runs(args.family)
    if not runs:
        print(f"no runs of {args.family} in {OUT}: run benchmarks.index first (see this module's doc)")
        return 2
    rows = growth_rows(runs, args.recall)
    print("| documents | system | mean µs @R%.2f | bytes / doc | build CPU µs / doc | commit |" % args.recall)
    print("|---:|---|---:|---:|---:|---|")
    for x in rows:
        lat = "n/a" if x["mean_us"] is None else f"{x['mean_us']:.1f}"
        print(f"| {x['docs']:,} | {x['system']} | {lat} | {x['bytes_per_doc']:,.0f} | "
              f"{x['build_cpu_us_per_doc']:.0f} | {x['commit']} |")
    plot(rows, args.out, args.family, args.recall)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
