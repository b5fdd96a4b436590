import json
import re

import bm25s
import numpy as np
import pytest
import scipy.sparse as sp

from encoders.beir import BeirDataset
from encoders.evaluate import exact_search, load_vectors, main, run_eval, to_run
from encoders.metrics import evaluate
from encoders.splade import SpladeEncoder


def test_to_run_keeps_negative_dense_scores_only():
    idx, scores = np.array([[0, 1, 2]]), np.array([[0.5, 0.0, -0.2]])
    assert to_run(["q"], ["a", "b", "c"], idx, scores) == {"q": {"a": 0.5}}
    assert to_run(["q"], ["a", "b", "c"], idx, scores, sparse=False) == {"q": {"a": 0.5, "b": 0.0, "c": -0.2}}


@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_exact_search_matches_full_sort(kind):
    rng = np.random.default_rng(0)
    docs = rng.random((200, 50)).astype(np.float32) * (rng.random((200, 50)) < 0.2)
    qs = rng.random((7, 50)).astype(np.float32)
    if kind == "sparse":
        docs, qs = sp.csr_matrix(docs), sp.csr_matrix(qs)
    idx, scores = exact_search(qs, docs, k=10, block=3)
    full = np.asarray((qs @ docs.T).toarray() if kind == "sparse" else qs @ docs.T)
    for i in range(7):
        assert np.allclose(scores[i], np.sort(full[i])[::-1][:10], atol=1e-6)
        assert np.allclose(full[i, idx[i]], scores[i])


def test_cli_prints_metric_lines_and_writes_json(mini_beir, tmp_path, capsys):
    assert main([str(mini_beir), "--encoder", "bm25", "--cache-dir", str(tmp_path),
                 "--json", str(tmp_path / "r.json"), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"nDCG@10 \d\.\d{4}", lines[0]) and re.fullmatch(r"R@100 \d\.\d{4}", lines[1])
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["n_queries"] == 12 and f"{res['nDCG@10']:.4f}" == lines[0].split()[1]
    assert res["nDCG@10"] > 0.3


def test_splade_eval_caches_corpus_and_exports(splade_tiny_path, mini_beir, tmp_path):
    export = tmp_path / "vecs.npz"
    first = run_eval(mini_beir, "splade", cache_dir=tmp_path / "cache", progress=False, export=export)
    second = run_eval(mini_beir, "splade", cache_dir=tmp_path / "cache", progress=False)
    assert not first["cached"] and second["cached"]
    assert second["nDCG@10"] == first["nDCG@10"] and first["nDCG@10"] > 0.3
    (entry,) = (tmp_path / "cache").glob("splade-*.npz")
    cached_docs, _ = load_vectors(entry)

    ds = BeirDataset.load(mini_beir)
    z = np.load(export)
    docs = sp.csr_matrix((z["doc_data"], z["doc_indices"], z["doc_indptr"]), shape=(len(ds.doc_ids), int(z["dim"])))
    qs = sp.csr_matrix((z["q_data"], z["q_indices"], z["q_indptr"]), shape=(12, int(z["dim"])))
    assert z["doc_ids"].tolist() == ds.doc_ids and z["query_ids"].tolist() == ds.query_ids
    assert (docs != cached_docs).nnz == 0
    enc = SpladeEncoder(progress=False)
    assert np.allclose(qs.toarray(), enc.encode_queries(ds.query_texts).toarray(), atol=1e-6)
    # The metric the CLI reports is what pytrec_eval-equivalent metrics give on the exported vectors.
    idx, scores = exact_search(qs, docs, 100)
    assert evaluate(to_run(ds.query_ids, ds.doc_ids, idx, scores), ds.qrels)["nDCG@10"] == first["nDCG@10"]


def test_bm25_ndcg_on_scifact_matches_bm25s(scifact_dir, tmp_path):
    ours = run_eval(scifact_dir, "bm25", cache_dir=None, progress=False)
    ds = BeirDataset.load(scifact_dir)
    ref = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
    ref.index(bm25s.tokenize(ds.doc_texts, stopwords="en", show_progress=False), show_progress=False)
    docs, scores = ref.retrieve(bm25s.tokenize(ds.query_texts, stopwords="en", show_progress=False),
                                k=100, show_progress=False, n_threads=1)
    run = {q: {ds.doc_ids[d]: float(s) for d, s in zip(docs[i], scores[i]) if s > 0}
           for i, q in enumerate(ds.query_ids)}
    ref_ndcg = evaluate(run, ds.qrels)["nDCG@10"]
    assert abs(ours["nDCG@10"] - ref_ndcg) < 0.01 and ours["nDCG@10"] > 0.6


def test_inference_free_and_dense_run_through_the_same_cli(splade_tiny_path, minilm_path, mini_beir, tmp_path):
    free = run_eval(mini_beir, "inference-free", cache_dir=tmp_path, progress=False)
    dense = run_eval(mini_beir, "dense", cache_dir=tmp_path, progress=False)
    assert free["nDCG@10"] > 0.2 and dense["nDCG@10"] > 0.4
    assert {p.name.split("-")[0] for p in tmp_path.glob("*.npz")} == {"splade", "dense"}
    # Inference-free documents are SPLADE documents: the SPLADE run reuses them.
    assert run_eval(mini_beir, "splade", cache_dir=tmp_path, progress=False)["cached"]


def test_encoding_benchmark_table_takes_ndcg_from_eval_json(tmp_path, capsys):
    """`benchmarks.encoding --from-json R --ndcg ARM=eval.json` adds the whole-corpus column."""
    from benchmarks.encoding import main as bench_main
    res = {"machine": "m", "threads": 2, "n": 4, "repeats": 1, "vocabulary": 10, "vocab_size": 30,
           "rates": {"MiniLM naive": 10.0, "MiniLM ours": 10.0, "MiniLM int8": 16.0},
           "peak_mb": {"MiniLM naive": 1, "MiniLM ours": 1, "MiniLM int8": 1},
           "splade_exact_max_diff": 0.0, "splade_chunked_max_diff": 0.0, "splade_approx_top10_same": 1.0,
           "minilm_exact_max_diff": 0.0, "minilm_int8_cosine": [0.99, 0.995]}
    (tmp_path / "r.json").write_text(json.dumps(res))
    (tmp_path / "e.json").write_text(json.dumps({"nDCG@10": 0.64351}))
    assert bench_main(["x", "--from-json", str(tmp_path / "r.json"),
                       "--ndcg", f"MiniLM int8={tmp_path / 'e.json'}"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[2].endswith("| SciFact nDCG@10 |")
    assert [r for r in rows if r.startswith("| MiniLM int8 |")][0].endswith("| 1.60 | 1 | "
                                                                          "cosine to naive: min 0.9900, mean 0.9950 | 0.6435 |")
    assert [r for r in rows if r.startswith("| MiniLM ours |")][0].endswith("| |")
    with pytest.raises(SystemExit, match="unknown arms"):
        bench_main(["x", "--from-json", str(tmp_path / "r.json"), "--ndcg", f"nope={tmp_path / 'e.json'}"])
    with pytest.raises(SystemExit, match="ARM=EVAL.json"):
        bench_main(["x", "--from-json", str(tmp_path / "r.json"), "--ndcg", "no-equals-sign"])
