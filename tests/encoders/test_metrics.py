import math
import random

import pytest
import pytrec_eval

from encoders.beir import BeirDataset, load_qrels
from encoders.metrics import evaluate, ndcg_at_k, ranked, recall_at_k


def test_ndcg_hand_computed():
    rels = {"d1": 1, "d2": 2, "d9": 1}
    results = {"d1": 3.0, "d3": 2.0, "d2": 1.0}
    # DCG = 1/log2(2) + 2/log2(4) = 2; IDCG = 2/1 + 1/log2(3) + 1/log2(4)
    idcg = 2 + 1 / math.log2(3) + 0.5
    assert ndcg_at_k(results, rels, 10) == pytest.approx(2 / idcg)
    assert ndcg_at_k(results, rels, 1) == pytest.approx(1 / 2)  # ideal@1 is d2 (gain 2)
    assert ndcg_at_k({}, rels, 10) == 0.0
    assert ndcg_at_k(results, {"d1": 0}, 10) == 0.0  # judged non-relevant only


def test_recall_hand_computed_and_trec_tie_order():
    rels = {"a": 1, "b": 1, "c": 1, "z": 0}
    assert recall_at_k({"a": 1.0, "x": 0.9, "b": 0.5}, rels, 2) == pytest.approx(1 / 3)
    # Equal scores: trec_eval ranks the larger doc id first.
    assert ranked({"a": 1.0, "c": 1.0, "b": 2.0}) == ["b", "c", "a"]
    assert recall_at_k({"a": 1.0, "c": 1.0}, rels, 1) == pytest.approx(1 / 3)


def test_mean_counts_queries_without_results_as_zero():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    got = evaluate({"q1": {"d1": 1.0}}, qrels)
    assert got == {"nDCG@10": 0.5, "R@100": 0.5}


def test_matches_pytrec_eval_on_random_runs():
    rng = random.Random(7)
    docs = [f"d{i}" for i in range(300)]
    qrels = {f"q{q}": {d: rng.choice([0, 1, 1, 2]) for d in rng.sample(docs, rng.randint(1, 8))}
             for q in range(40)}
    # Rounded scores force ties, which trec_eval breaks by doc id.
    run = {q: {d: round(rng.random(), 1) for d in rng.sample(docs, 150)} for q in qrels}
    for q in list(qrels)[:10]:  # make some queries easy
        run[q].update({d: 5.0 for d in qrels[q]})
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_100"}).evaluate(run)
    ours = evaluate(run, qrels)
    assert ours["nDCG@10"] == pytest.approx(sum(r["ndcg_cut_10"] for r in ref.values()) / len(ref), abs=1e-9)
    assert ours["R@100"] == pytest.approx(sum(r["recall_100"] for r in ref.values()) / len(ref), abs=1e-9)


def test_beir_loader_on_scifact(scifact_dir):
    ds = BeirDataset.load(scifact_dir)
    assert len(ds.doc_ids) == 5183 and len(ds.query_ids) == 300
    assert sum(len(v) for v in ds.qrels.values()) == 339
    assert ds.corpus_sha256.startswith("dec31c8182f3d744")
    assert ds.doc_texts[0].startswith("Microstructural development of human newborn")
    assert len(load_qrels(scifact_dir, "train")) == 809


def test_beir_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus.jsonl"):
        BeirDataset.load(tmp_path)
