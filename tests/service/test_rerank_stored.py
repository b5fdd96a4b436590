"""Stored token vectors for MaxSim reranking (index.store_token_vectors) against the on-demand
path (token vectors encoded from the stored text per query): same rankings up to tolerances,
persistence through a flush, a merge, a reopen and WAL replay, and the on-demand path kept for
collections that store none."""
import numpy as np
import pytest

from service.pipeline import SearchPipeline
from service.schemas import SearchRequest
from service.store import Store

from .conftest import make_client

QUERIES = ["how do batteries store energy", "protein folding in cells", "ocean currents and climate",
           "neural networks learn representations", "vaccines and the immune system"]
SEARCH = {"k": 10, "mode": "hybrid", "rerank": {"kappa": 20}}
# the on-demand path's reference: every stored variant must stay this close to it
MIN_OVERLAP = {"fp16": 0.9, "int8": 0.9, "int8-128": 0.6}
MAX_SCORE_DIFF = {"fp16": 0.02, "int8": 0.1}


def _top(client, name, q):
    r = client.post(f"/collections/{name}/search", json={"query": q, **SEARCH})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reranked"] > 0 and body["rerank_stats"]["scored"] == body["reranked"]
    return [(x["id"], x["score"]) for x in body["results"]]


@pytest.fixture(scope="module")
def stored_client(tmp_path_factory, corpus):
    """One on-demand collection and three that store token vectors, same documents."""
    with make_client(tmp_path_factory.mktemp("stored")) as c:
        for name, index in [("od", None), ("fp16", {"store_token_vectors": "fp16"}),
                            ("int8", {"store_token_vectors": "int8"}),
                            ("int8-128", {"store_token_vectors": "int8", "token_dim": 128})]:
            r = c.post("/collections", json={"name": name, **({"index": index} if index else {})})
            assert r.status_code == 201, r.text
            r = c.put(f"/collections/{name}/documents", json={"documents": corpus})
            assert r.status_code == 200, r.text
        yield c


def test_stored_tokens_rank_like_on_demand(stored_client):
    for name in ("fp16", "int8", "int8-128"):
        overlaps = []
        for q in QUERIES:
            ref, got = _top(stored_client, "od", q), _top(stored_client, name, q)
            overlaps.append(len({d for d, _ in ref} & {d for d, _ in got}) / len(ref))
            if name in MAX_SCORE_DIFF:  # same dimension: MaxSim itself close to the reference
                ref_s = dict(ref)
                for d, s in got:
                    if d in ref_s:
                        assert abs(s - ref_s[d]) <= MAX_SCORE_DIFF[name], (name, q, d)
        assert np.mean(overlaps) >= MIN_OVERLAP[name], (name, overlaps)


def test_stats_report_memory_per_document(stored_client, corpus):
    od = stored_client.get("/collections/od").json()
    assert od.get("token_vectors") is None
    s8 = stored_client.get("/collections/int8-128").json()["token_vectors"]
    s16 = stored_client.get("/collections/fp16").json()["token_vectors"]
    assert s8["dtype"] == "int8" and s8["dim"] == 128 and s16["dim"] == 384
    assert s8["tokens"] == s16["tokens"] > len(corpus)
    assert s8["bytes_per_token"] == pytest.approx(128 + 4, abs=1)  # codes + one scale
    assert s16["bytes_per_token"] == pytest.approx(384 * 2 + 4, abs=1)
    assert s8["bytes_per_document"] == pytest.approx(s8["bytes"] / len(corpus))


def test_bad_token_options(stored_client):
    for body, msg in [({"multivector_encoder": None, "index": {"store_token_vectors": "int8"}}, "multivector"),
                      ({"index": {"store_token_vectors": "int8", "token_dim": 1000}}, "token_dim"),
                      ({"index": {"token_dim": 64}}, "store_token_vectors"),
                      ({"index": {"store_token_vectors": "int4"}}, "store_token_vectors")]:
        r = stored_client.post("/collections", json={"name": "bad", **body})
        assert r.status_code in (400, 422), (body, r.text)
        assert msg in r.text
    assert stored_client.get("/collections/bad").status_code == 404


def test_persistence_reopen_merge_and_replay(tmp_path, corpus):
    """Tokens read back after a reopen (WAL replay), a flush and a merge rank as before."""
    from service.encoder_cache import ENCODERS
    store = Store(tmp_path, ENCODERS)
    store.create("c", "splade-tiny", "all-MiniLM-L6-v2", "all-MiniLM-L6-v2",
                 index={"store_token_vectors": "int8", "token_dim": 128, "flush_docs": 1000})
    half = len(corpus) // 2
    for part in (corpus[:half], corpus[half:]):
        store.upsert("c", [d["id"] for d in part], [d["text"] for d in part], [d.get("metadata") for d in part])
    req = SearchRequest(query=QUERIES[0], **SEARCH)

    def top(st):
        res = SearchPipeline(st).search("c", req)
        assert res.reranked > 0
        return [(r.id, r.score) for r in res.results]

    before = top(store)
    store.close()
    store = Store(tmp_path, ENCODERS)  # everything from the WAL
    assert _close(top(store), before)
    coll = store.get("c")
    coll.flush()
    store.upsert("c", [corpus[0]["id"]], [corpus[0]["text"]], [corpus[0].get("metadata")])
    coll.flush()
    assert coll.merge(force=True) >= 2
    assert _close(top(store), before)
    store.close()
    store = Store(tmp_path, ENCODERS)
    assert _close(top(store), before)
    store.close()


def _close(got, ref, min_overlap=0.9, tol=1e-3):
    ref_s = dict(ref)
    shared = [d for d, _ in got if d in ref_s]
    assert len(shared) >= min_overlap * len(ref), (got, ref)
    for d, s in got:
        if d in ref_s:
            assert abs(s - ref_s[d]) <= tol, (d, s, ref_s[d])
    return True


def test_documents_without_stored_tokens_fall_back_to_encoding(tmp_path, corpus):
    """A document that stored no tokens (upserted without them) is encoded on demand."""
    from service.encoder_cache import ENCODERS
    store = Store(tmp_path, ENCODERS)
    coll = store.create("c", None, None, "all-MiniLM-L6-v2", bm25=True,
                        index={"store_token_vectors": "fp16"})
    store.upsert("c", [d["id"] for d in corpus], [d["text"] for d in corpus], [None] * len(corpus))
    doc = corpus[0]
    # the same document again, through the indexer directly: no tokens stored for it
    coll.upsert([doc["id"]], {"bm25": coll.get(doc["id"]).vectors["bm25"]}, texts=[doc["text"]])
    assert coll.token_vectors([doc["id"]]).ptr.tolist() == [0, 0]
    res = SearchPipeline(store).search("c", SearchRequest(query=doc["text"][:80], k=5, mode="bm25",
                                                          rerank={"kappa": 10}))
    assert res.results[0].id == doc["id"] and res.reranked > 0
    store.close()


def test_maxsim_over_stored_codes_matches_float32():
    """MaxSim scored on the stored int8 / fp16 block equals MaxSim of the float vectors, up to
    quantisation; the fixed projection is deterministic with orthonormal rows."""
    from encoders.multivector import StackedTokens, fixed_projection, maxsim_scores, project_tokens
    from indexer.token_store import quantize_tokens
    rng = np.random.default_rng(0)
    docs = [rng.standard_normal((int(rng.integers(0, 30)), 64)).astype(np.float32) for _ in range(25)]
    docs = [d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12) for d in docs]
    q = rng.standard_normal((7, 64)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    ref = maxsim_scores(q, docs)
    for dtype, tol in (("fp16", 2e-3), ("int8", 3e-2)):
        rows = quantize_tokens(docs, dtype, 64)
        got = maxsim_scores(q, StackedTokens(rows.codes, np.diff(rows.ptr),
                                             rows.scales if dtype == "int8" else None))
        np.testing.assert_allclose(got, ref, atol=tol)
    w = fixed_projection(64, 16)
    np.testing.assert_array_equal(w, fixed_projection(64, 16))
    np.testing.assert_allclose(w @ w.T, np.eye(16), atol=1e-5)
    p = project_tokens(docs[1], w)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
