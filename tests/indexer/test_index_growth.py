"""benchmarks/index_growth.py: per-document figures and the recall-0.95 latency of each run."""
import json

import pytest

from benchmarks import index_growth


def _run(docs: int, lsr_us: float, commit: str) -> dict:
    def system(us, nbytes, cpu):
        # two grid points bracketing recall 0.95: latency interpolated halfway
        return {"bytes": nbytes, "build_cpu_s": cpu, "grid": [
            {"recall": 0.90, "mean_us": us, "p99_us": 2 * us},
            {"recall": 1.00, "mean_us": 3 * us, "p99_us": 6 * us}]}
    return {"docs": docs, "commit": commit, "lsr": system(lsr_us, 300 * docs, docs * 1e-4),
            "pyseismic": system(2 * lsr_us, 500 * docs, docs * 2e-4)}


def test_growth_rows_and_plot(tmp_path, monkeypatch):
    for size, docs in (("1m", 1_000_000), ("20k", 20_000)):
        (tmp_path / f"index-synthetic-{size}.json").write_text(json.dumps(_run(docs, 100.0, f"c{size}")))
    runs = index_growth.load_runs("synthetic", tmp_path)
    assert [r["docs"] for r in runs] == [20_000, 1_000_000]  # smallest first, whatever the file order
    rows = index_growth.growth_rows(runs)
    lsr = [x for x in rows if x["system"] == "lsr-search"]
    assert [x["docs"] for x in lsr] == [20_000, 1_000_000]
    assert lsr[0]["mean_us"] == pytest.approx(200.0)  # halfway between 100 @0.90 and 300 @1.00
    assert lsr[0]["bytes_per_doc"] == pytest.approx(300) and lsr[0]["build_cpu_us_per_doc"] == pytest.approx(100)
    py = [x for x in rows if x["system"] == "pyseismic-lsr"]
    assert py[1]["mean_us"] == pytest.approx(400.0) and py[1]["commit"] == "c1m"
    assert index_growth.growth_rows(runs, recall=1.01)[0]["mean_us"] is None  # never reached
    out = tmp_path / "growth.png"
    index_growth.plot(rows, out, "synthetic")
    assert out.stat().st_size > 10_000
    assert index_growth.load_runs("other", tmp_path) == []
