"""Instruction counts of the native Seismic kernel (callgrind), per document scorer and per build:
the "profile of one query before and after" that issue 17 asks for, stable on a noisy machine.

    # the index and its queries (synthetic: query sample 1, never the reported queries)
    python -m benchmarks.kernel_profile build --dataset synthetic-100k --out /tmp/cg
    # one callgrind run per (native module, scorer); the module may come from another commit's
    # portable build (git worktree add /tmp/before <commit>; cmake -DLSR_PORTABLE=ON ...)
    python -m benchmarks.kernel_profile count --out /tmp/cg \\
        --module after=build/portable/lsr_native_v3.cpython-311-x86_64-linux-gnu.so \\
        --modes scalar,gather,insert

Valgrind (3.19) cannot decode AVX-512, so the x86-64-v3 (AVX2) portable build is the one counted.
Only the kernel's search call is counted (--toggle-collect), not Python or the index load.
Prints instructions a query per (module, scorer), and the kernel's share by source file and function.
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

QUERY_CUT, HEAP_FACTOR = 10, 0.9  # a point near recall 0.9 on the synthetic collections


def build(dataset: str, out: Path, n_queries: int) -> None:
    import scipy.sparse as sp
    from indexer import SeismicIndex
    from .index import load_dataset, side_study_sample
    docs, queries, params = load_dataset(dataset, n_queries, side_study_sample(dataset))
    out.mkdir(parents=True, exist_ok=True)
    SeismicIndex.build(docs, **params).save(out / "index")
    sp.save_npz(out / "queries.npz", sp.csr_matrix(queries))
    print(f"{dataset}: {docs.shape[0]} docs, {queries.shape[0]} queries, {params} -> {out}")


def run_queries(module_path: str, out: Path, mode: str, n: int) -> None:
    """(Under callgrind.) Load `module_path` as the native module, then search n queries."""
    import numpy as np
    import scipy.sparse as sp
    name = re.match(r"(lsr_native\w*?)\.cpython", Path(module_path).name).group(1)
    spec = importlib.util.spec_from_file_location(name, module_path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import encoders.native
    encoders.native.MODULE = mod  # before indexer imports it
    from indexer import SeismicIndex
    if hasattr(mod, "set_scorer"):
        mod.set_scorer(mode)
    elif mode in ("scalar", "gather"):  # builds before set_scorer (26b4305)
        mod.set_gathers(mode == "gather")
    else:
        raise SystemExit(f"{module_path} has no scorer {mode!r}")
    index = SeismicIndex.load(out / "index")
    q = sp.load_npz(out / "queries.npz").tocsr()
    for i in range(n):
        index.search(q[i].indices.astype(np.int32), q[i].data.astype(np.float32), k=10,
                     query_cut=QUERY_CUT, heap_factor=HEAP_FACTOR)


def count(out: Path, modules: list[str], modes: list[str], n: int) -> None:
    if not (out / "index").is_dir() or not (out / "queries.npz").is_file():
        raise SystemExit(f"{out} holds no index and queries: run the build step first")
    if not modules:
        raise SystemExit("--module label=path: at least one native module to count")
    for spec in modules:
        label, path = spec.split("=", 1)
        for mode in modes:
            cg = out / f"{label}-{mode}.callgrind"
            proc = subprocess.run(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}",
                 "--toggle-collect=*SeismicImpl*::search(*", sys.executable, "-m", "benchmarks.kernel_profile",
                 "_run", "--out", str(out), "--module", f"{label}={path}", "--modes", mode, "--queries", str(n)],
                capture_output=True, text=True)
            refs = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
            if proc.returncode or not refs:
                print(f"{label} {mode}: failed\n{proc.stderr[-2000:]}")
                continue
            total = int(refs.group(1).replace(",", ""))
            print(f"{label} {mode}: {total / n:,.0f} instructions a query ({n} queries)")
            ann = subprocess.run(["callgrind_annotate", str(cg)], capture_output=True, text=True).stdout
            for line in ann.splitlines():
                m = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(\S+?):(.*)", line)
                if m and "PROGRAM TOTALS" not in line and float(m.group(2)) >= 2:
                    print(f"    {m.group(2):>6}%  {Path(m.group(3)).name} in {_function(m.group(4))}")


def _function(signature: str) -> str:
    """'float lsr::score_doc<unsigned short, lsr::Half>(float const*, ...) [...]' -> 'score_doc'."""
    name = signature.split("(")[0]
    while re.search(r"<[^<>]*>", name):
        name = re.sub(r"<[^<>]*>", "", name)
    words = [w for w in name.split("::")[-1].split() if not w.startswith("[")]  # drop "[/lib.so]"
    return words[-1] if words else "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=["build", "count", "_run"])
    ap.add_argument("--dataset", default="synthetic-100k")
    ap.add_argument("--out", type=Path, default=Path("/tmp/lsr-kernel-profile"))
    ap.add_argument("--module", action="append", default=[], help="label=path of a native module (.so)")
    ap.add_argument("--modes", default="scalar,gather,insert")
    ap.add_argument("--queries", type=int, default=50)
    args = ap.parse_args()
    if args.step == "build":
        build(args.dataset, args.out, args.queries)
    elif args.step == "count":
        count(args.out, args.module, args.modes.split(","), args.queries)
    else:
        run_queries(args.module[0].split("=", 1)[1], args.out, args.modes, args.queries)


if __name__ == "__main__":
    main()
