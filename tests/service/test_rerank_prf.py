"""MaxSim rerank with alpha / beta pruning, and PRF interpolation: pure functions and via the API."""
import numpy as np
import pytest
import scipy.sparse as sp

from encoders.multivector import maxsim
from service.prf import interpolate, rocchio_dense, rocchio_sparse
from service.rerank import maxsim_rerank


def _unit(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def assert_topk_up_to_ties(got, truth, k, tol=1e-5):
    """got = [(id, score)] is the top k of truth = {id: score}, best first, up to tol.

    MaxSim is one BLAS product per fetched batch, and which batch a document lands in (all at
    once, first k, then chunks) changes its last float bits differently on each CPU, so
    rankings from different batchings are compared up to near-ties, never as an exact order."""
    got = got[:k]
    assert len(got) == min(k, len(truth)) and len({d for d, _ in got}) == len(got)
    np.testing.assert_allclose([s for _, s in got], [truth[d] for d, _ in got], atol=tol)
    assert all(a[1] >= b[1] - tol for a, b in zip(got, got[1:]))
    left_out = [s for d, s in truth.items() if d not in dict(got)]
    assert not left_out or max(left_out) <= min(truth[d] for d, _ in got) + tol


@pytest.fixture
def setup():
    rng = np.random.default_rng(0)
    docs = {f"d{i}": _unit(rng, 5 + i % 4) for i in range(60)}
    q = _unit(rng, 4)
    cands = [(f"d{i}", 100.0 - i) for i in range(60)]  # first-stage order d0, d1, ...
    calls = []

    def fetch(ids):
        calls.extend(ids)
        return [docs[d] for d in ids]
    return docs, q, cands, fetch, calls


def test_no_pruning_equals_exhaustive_maxsim(setup):
    docs, q, cands, fetch, calls = setup
    got, stats = maxsim_rerank(cands, q, fetch, k=10, alpha=0.0, beta=None)
    assert len(got) == 60  # every candidate scored and returned
    assert_topk_up_to_ties(got, {d: maxsim(q, docs[d]) for d, _ in cands}, k=60)
    assert stats.scored == 60 and stats.pruned == 0 and len(calls) == 60


def test_alpha_prunes_low_first_stage_scores(setup):
    docs, q, cands, fetch, calls = setup
    got, stats = maxsim_rerank(cands, q, fetch, k=10, alpha=0.7)
    assert stats.pruned == sum(1 for _, s in cands if s < 70.0)
    assert stats.scored == 60 - stats.pruned and set(calls) == {d for d, s in cands if s >= 70.0}


def test_beta_early_exit_reduces_work(setup):
    docs, q, cands, fetch, calls = setup
    full, _ = maxsim_rerank(cands, q, lambda ids: [docs[d] for d in ids], k=5)
    got, stats = maxsim_rerank(cands, q, fetch, k=5, beta=3)
    assert stats.scored < 60 and len(calls) == stats.scored
    # every document that was scored keeps its exact MaxSim
    assert all(s == pytest.approx(maxsim(q, docs[d])) for d, s in got)
    # the early exit fired right after beta consecutive misses
    top = []
    misses = 0
    for d, _ in cands[:stats.scored]:
        s = maxsim(q, docs[d])
        if len(top) < 5 or s > min(top):
            top = sorted(top + [s], reverse=True)[:5]
            misses = 0
        else:
            misses += 1
    assert misses == 3


def test_rerank_rejects_bad_parameters(setup):
    _, q, cands, fetch, _ = setup
    with pytest.raises(ValueError):
        maxsim_rerank(cands, q, fetch, k=5, alpha=2.0)
    with pytest.raises(ValueError):
        maxsim_rerank(cands, q, fetch, k=5, beta=0)


def test_rocchio_and_interpolation():
    docs = [sp.csr_matrix(np.array([[0, 2.0, 0, 4.0]], np.float32)),
            sp.csr_matrix(np.array([[0, 0, 2.0, 0]], np.float32))]
    ids, vals = rocchio_sparse(np.array([0], np.int32), np.array([1.0], np.float32), docs, 4, 0.5, 3)
    assert ids.tolist() == [0, 1, 3]  # the lightest feedback term (2) is cut by max_terms=3
    assert vals.tolist() == pytest.approx([0.5, 0.5, 1.0])
    v = rocchio_dense(np.array([1.0, 0.0]), [np.array([0.0, 1.0])], 0.5)
    assert v.tolist() == pytest.approx([2 ** -0.5, 2 ** -0.5])
    mixed = interpolate([("a", 4.0), ("b", 2.0)], [("b", 10.0), ("c", 6.0)], 0.5)
    assert dict(mixed) == pytest.approx({"a": 0.5 * 4 + 0.5 * 6, "b": 6.0, "c": 0.5 * 2 + 3.0})
    assert [d for d, _ in mixed] == ["b", "a", "c"]


def test_api_rerank_alpha_beta(client):
    base = {"query": "how do planets and stars form in galaxies", "k": 5, "mode": "hybrid"}
    r = client.post("/collections/demo/search", json={**base, "rerank": {"kappa": 30}}).json()
    assert r["reranked"] == 30 and r["rerank_stats"] == {"candidates": 30, "pruned": 0, "scored": 30}
    scores = [x["score"] for x in r["results"]]
    assert scores == sorted(scores, reverse=True)
    same = client.post("/collections/demo/search",
                       json={**base, "rerank": {"kappa": 30, "alpha": 0.0, "beta": None}}).json()
    assert [x["id"] for x in same["results"]] == [x["id"] for x in r["results"]]
    pruned = client.post("/collections/demo/search",
                         json={**base, "rerank": {"kappa": 30, "alpha": 0.5, "beta": 3}}).json()
    assert pruned["rerank_stats"]["scored"] < 30
    assert pruned["rerank_stats"]["scored"] == pruned["reranked"]


def test_api_prf_changes_ranking_sensibly(client):
    base = {"query": "bread", "k": 5, "mode": "sparse"}
    plain = client.post("/collections/demo/search", json=base).json()["results"]
    fb = client.post("/collections/demo/search", json={**base, "prf": {"docs": 2}}).json()["results"]
    assert plain[0]["id"] == "cooking-01"
    assert fb[0]["id"] == "cooking-01"
    assert len(fb) >= len(plain)  # feedback terms reach documents the bare query missed


def test_api_rerank_pages_are_consistent(client):
    base = {"query": "animals that live in the ocean", "mode": "hybrid",
            "rerank": {"kappa": 20, "alpha": 0.1, "beta": 4, "top": 9}}
    full = client.post("/collections/demo/search", json={**base, "k": 9}).json()["results"]
    pages = []
    for off in (0, 3, 6):
        pages += client.post("/collections/demo/search", json={**base, "k": 3, "offset": off}).json()["results"]
    assert [p["id"] for p in pages] == [f["id"] for f in full]


# ---------------------------------------------------------------- interpolation, batched MaxSim
def test_batched_maxsim_equals_per_document(setup):
    from encoders.multivector import maxsim_scores
    docs, q, _, _, _ = setup
    batch = [docs["d0"], np.empty((0, 16), np.float32), docs["d5"], docs["d7"]]
    got = maxsim_scores(q, batch)
    assert got.tolist() == pytest.approx([maxsim(q, d) for d in batch], abs=1e-5)
    assert got[1] == 0.0 and maxsim_scores(q[:0], batch).tolist() == [0.0] * 4


def test_interpolation_hand_computed():
    from service.rerank import interpolate, normalized_first_stage
    # two query tokens; MaxSim: a = 1 + 0.8 = 1.8, b = 0.6 + 1.0 = 1.6, c = 1 + 1 = 2.0
    q = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    docs = {"a": np.array([[1.0, 0.0], [0.6, 0.8]], np.float32),
            "b": np.array([[0.6, 0.8], [0.0, 1.0]], np.float32),
            "c": np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)}
    cands = [("a", 10.0), ("b", 6.0), ("c", 2.0)]  # min-max: 1, 0.5, 0
    assert normalized_first_stage([10.0, 6.0, 2.0]).tolist() == [1.0, 0.5, 0.0]
    assert normalized_first_stage([3.0, 3.0]).tolist() == [1.0, 1.0]
    assert interpolate(0.5, 1.6, 2, 0.25) == pytest.approx(0.25 * 0.5 + 0.75 * 0.8)
    fetch = lambda ids: [docs[d] for d in ids]  # noqa: E731
    got, _ = maxsim_rerank(cands, q, fetch, k=3, first_stage_weight=0.5)
    # a: .5*1 + .5*.9 = .95; b: .5*.5 + .5*.8 = .65; c: .5*0 + .5*1 = .5
    assert got == [("a", pytest.approx(0.95)), ("b", pytest.approx(0.65)), ("c", pytest.approx(0.5))]
    got, _ = maxsim_rerank(cands, q, fetch, k=3, first_stage_weight=0.0)  # MaxSim / query tokens
    assert got == [("c", pytest.approx(1.0)), ("a", pytest.approx(0.9)), ("b", pytest.approx(0.8))]
    got, _ = maxsim_rerank(cands, q, fetch, k=3, first_stage_weight=1.0)  # first-stage order
    assert [d for d, _ in got] == ["a", "b", "c"]
    got, _ = maxsim_rerank(cands, q, fetch, k=3)  # default: raw MaxSim
    assert got == [("c", pytest.approx(2.0)), ("a", pytest.approx(1.8)), ("b", pytest.approx(1.6))]
    with pytest.raises(ValueError):
        maxsim_rerank(cands, q, fetch, k=3, first_stage_weight=1.5)


@pytest.mark.parametrize("weight", [None, 0.3])
def test_no_pruning_equals_exhaustive_with_interpolation(setup, weight):
    from service.rerank import interpolate, normalized_first_stage
    docs, q, cands, fetch, calls = setup
    norm = normalized_first_stage([s for _, s in cands])
    expect = [(maxsim(q, docs[d]) if weight is None else interpolate(norm[i], maxsim(q, docs[d]), len(q), weight), d)
              for i, (d, _) in enumerate(cands)]
    expect.sort(key=lambda x: -x[0])
    got, stats = maxsim_rerank(cands, q, fetch, k=10, alpha=0.0, beta=None, first_stage_weight=weight)
    assert len(got) == 60
    assert_topk_up_to_ties(got, {d: s for s, d in expect}, k=60)
    assert stats.scored == 60 and len(calls) == 60
    # a beta larger than the list never fires: same ranking (other batches: up to rounding)
    # and the same work
    got_b, stats_b = maxsim_rerank(cands, q, lambda ids: [docs[d] for d in ids], k=10, beta=1000,
                                   first_stage_weight=weight)
    assert_topk_up_to_ties(got_b, dict(got), k=60)
    assert stats_b.scored == 60


def test_beta_with_interpolation_keeps_the_exhaustive_top(setup):
    """A high first-stage weight makes late candidates unable to enter the top-k: the early
    exit then stops early and still returns the exhaustive top-k."""
    docs, q, cands, fetch, calls = setup
    full, _ = maxsim_rerank(cands, q, lambda ids: [docs[d] for d in ids], k=5, first_stage_weight=0.9)
    got, stats = maxsim_rerank(cands, q, fetch, k=5, beta=5, first_stage_weight=0.9)
    assert stats.scored < 60 and len(calls) == stats.scored
    assert_topk_up_to_ties(got, dict(full), k=5)


def test_api_rerank_first_stage_weight(client):
    base = {"query": "how do planets and stars form in galaxies", "k": 5, "mode": "hybrid",
            "fusion": {"method": "convex", "alpha": 0.3}}
    r = client.post("/collections/demo/search", json={**base, "rerank": {"kappa": 20, "first_stage_weight": 0.4}})
    assert r.status_code == 200, r.text
    scores = [x["score"] for x in r.json()["results"]]
    assert scores == sorted(scores, reverse=True) and all(-0.6 <= s <= 1.0 for s in scores)
    top = client.post("/collections/demo/search",
                      json={**base, "rerank": {"kappa": 20, "first_stage_weight": 1.0}}).json()["results"]
    plain = client.post("/collections/demo/search", json=base).json()["results"]
    assert [x["id"] for x in top] == [x["id"] for x in plain]  # weight 1: first-stage order
    bad = client.post("/collections/demo/search", json={**base, "rerank": {"first_stage_weight": 2}})
    assert bad.status_code == 422


def test_cli_rerank_options():
    from service.cli import _search_request, build_parser
    args = build_parser().parse_args(["search", "q", "--collection", "c", "--rerank", "--rerank-weight", "0.4",
                                      "--rerank-alpha", "0.5", "--rerank-beta", "6", "--rerank-top", "10"])
    spec = _search_request(args, "q").rerank
    assert (spec.first_stage_weight, spec.alpha, spec.beta, spec.top) == (0.4, 0.5, 6, 10)


def test_prf_takes_no_feedback_from_documents_an_exclusion_removes(client):
    """Feedback terms come from the documents the search keeps: a removed one (it contains an
    excluded word) would pull that word back into the expanded query."""
    from service.exclusions import Exclusion, Matcher
    from service.schemas import SearchRequest
    pipe, store = client.app.state.pipeline, client.app.state.store
    coll = store.get("demo")
    req = SearchRequest(query="bread", mode="sparse", k=5, prf={"docs": 2})
    vec = pipe._encode_list("sparse", req, store.encoder_set(coll), coll)
    hits: dict = {}
    ranked = pipe._retrieve(coll, "sparse", vec, 20, None, hits)
    assert ranked[0][0] == "cooking-01"
    word = next(w for w in ("sourdough", "starter", "flour", "yeast") if w in coll.get("cooking-01").text.lower())
    excl = [Exclusion(word, None, "must_not")]
    kept = [d for d, _ in ranked if not Matcher(excl).matches(coll.get(d).text)]
    assert "cooking-01" not in kept
    assert [d.id for d in pipe._feedback_docs(coll, ranked, 2, excl)] == kept[:2]
    assert [d.id for d in pipe._feedback_docs(coll, ranked, 2)] == [d for d, _ in ranked[:2]]
    # a demoting exclusion keeps the document as feedback
    demote = [Exclusion(word, 0.5, "must_not")]
    assert [d.id for d in pipe._feedback_docs(coll, ranked, 2, demote)] == [d for d, _ in ranked[:2]]
    # through the API: the search answers, without the excluded word's documents
    r = client.post("/collections/demo/search", json={"query": "bread", "mode": "sparse", "k": 5,
                                                       "prf": {"docs": 2}, "must_not": [word]})
    assert r.status_code == 200 and "cooking-01" not in [h["id"] for h in r.json()["results"]]
