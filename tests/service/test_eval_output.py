"""`lsr eval` output for outside tools: the TREC run file (--run-file) scores the same in
pytrec_eval as in our metrics, and a reranked eval reports the candidates scored per query."""
import json

import pytest

from encoders.metrics import write_trec_run
from service.cli import main

from .test_cli import _tiny_beir


def _read_run(path):
    run = {}
    for line in path.read_text().splitlines():
        qid, q0, doc, rank, score, tag = line.split()
        assert q0 == "Q0" and int(rank) >= 1
        run.setdefault(qid, {})[doc] = float(score)
    return run


def _qrels(beir):
    out = {}
    for line in (beir / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, r = line.split("\t")
        out.setdefault(q, {})[d] = int(r)
    return out


def _trec_ndcg10(run, qrels):
    import pytrec_eval
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"})
    per = ev.evaluate(run)
    return sum(per[q]["ndcg_cut_10"] for q in qrels) / len(qrels)


def test_run_file_scores_the_same_outside(tmp_path, capsys):
    beir = _tiny_beir(tmp_path)
    run_file, out = tmp_path / "runs" / "sparse.trec", tmp_path / "res.json"
    assert main(["eval", str(beir), "--data-dir", str(tmp_path / "data"), "--mode", "sparse", "--no-dense",
                 "--no-progress", "--json", str(out), "--run-file", str(run_file)]) == 0
    assert "TREC run" in capsys.readouterr().err
    run = _read_run(run_file)
    assert set(run) == {"q1", "q2"} and all(len(r) >= 1 for r in run.values())
    assert _trec_ndcg10(run, _qrels(beir)) == pytest.approx(json.loads(out.read_text())["nDCG@10"], abs=1e-4)


def test_rerank_eval_reports_candidates_scored(tmp_path, capsys):
    beir = _tiny_beir(tmp_path)
    out, run_file = tmp_path / "res.json", tmp_path / "rerank.trec"
    assert main(["eval", str(beir), "--data-dir", str(tmp_path / "data"), "--mode", "hybrid", "--rerank",
                 "--kappa", "5", "--rerank-alpha", "0.5", "--store-tokens", "int8", "--token-dim", "128",
                 "--no-progress", "--json", str(out), "--run-file", str(run_file)]) == 0
    printed = capsys.readouterr().out
    assert "rerank per query:" in printed and "scored" in printed
    res = json.loads(out.read_text())
    rr = res["rerank_per_query"]
    assert rr["queries"] == 2 and rr["candidates"] == 5.0
    assert 1 <= rr["scored"] <= rr["candidates"] - rr["pruned"] + 1e-9
    assert _trec_ndcg10(_read_run(run_file), _qrels(beir)) == pytest.approx(res["nDCG@10"], abs=1e-4)


def test_encoder_eval_writes_a_run_file(tmp_path, capsys):
    beir = _tiny_beir(tmp_path)
    run_file, out = tmp_path / "bm25.trec", tmp_path / "res.json"
    assert main(["eval", str(beir), "--encoder", "bm25", "--no-cache", "--no-progress",
                 "--json", str(out), "--run-file", str(run_file)]) == 0
    capsys.readouterr()
    assert _trec_ndcg10(_read_run(run_file), _qrels(beir)) == pytest.approx(
        json.loads(out.read_text())["nDCG@10"], abs=1e-4)


def test_write_trec_run_orders_like_trec_eval(tmp_path):
    path = tmp_path / "r.trec"
    assert write_trec_run(path, {"q": {"a": 1.0, "b": 3.0, "c": 1.0}}, tag="t") == 3
    lines = [ln.split() for ln in path.read_text().splitlines()]
    assert [x[2] for x in lines] == ["b", "c", "a"] and [x[3] for x in lines] == ["1", "2", "3"]
    with pytest.raises(ValueError, match="whitespace"):
        write_trec_run(path, {"q": {"a b": 1.0}})
