"""Raw vectors over REST: documents upserted with precomputed vectors per field, searches by
query vectors per list (service/raw_vectors.py). Vectors equal to the encoders' own output give
what the text gives; every bad vector is a 4xx naming the field and stores nothing."""
import json

import numpy as np
import pytest
import scipy.sparse as sp

from service.encoder_cache import ENCODERS

SPLADE, DENSE = "splade-tiny", "all-MiniLM-L6-v2"
QUERY = "wind turbines and electricity"


def post_search(client, name, **body):
    r = client.post(f"/collections/{name}/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def ranking(res):
    return [r["id"] for r in res["results"]], [r["score"] for r in res["results"]]


def same_results(a, b, rel=1e-4):
    ids_a, scores_a = ranking(a)
    ids_b, scores_b = ranking(b)
    assert ids_a == ids_b
    assert scores_a == pytest.approx(scores_b, rel=rel, abs=1e-6)


def document_vectors(client, texts):
    """What the collection's encoders make of these texts, in the REST forms: SPLADE as
    {token: weight} (/encode, documents), BM25 as word counts (/encode bm25, queries), dense
    as lists (the dense encoder's document vectors, batched as the store batches them)."""
    r = client.post("/encode", json={"texts": texts, "kind": "documents"})
    assert r.status_code == 200, r.text
    splade = r.json()["vectors"]
    r = client.post("/encode", json={"texts": texts, "encoder": "bm25", "kind": "queries"})
    assert r.status_code == 200, r.text
    counts = r.json()["vectors"]
    dense = ENCODERS.dense(DENSE).encode_documents(texts, batch_size=32)
    return [{"sparse": s, "bm25": c, "dense": d.tolist()} for s, c, d in zip(splade, counts, dense)]


def query_vectors(client, query):
    row = ENCODERS.sparse(SPLADE).encode_queries([query])[0]
    r = client.post("/encode", json={"texts": [query], "encoder": "bm25", "kind": "queries"})
    return {"sparse": {"indices": row.indices.tolist(), "values": row.data.tolist()},
            "bm25": r.json()["vectors"][0],
            "dense": ENCODERS.dense(DENSE).encode_queries([query])[0].tolist()}


def count(client, name):
    return client.get(f"/collections/{name}").json()["documents"]


@pytest.fixture(scope="module")
def twins(client, corpus):
    """Collection rv-text indexed from text, rv-vec from the same documents' vectors alone."""
    docs = corpus[:12]
    texts = [d["text"] for d in docs]
    for name in ("rv-text", "rv-vec"):
        assert client.post("/collections", json={"name": name}).status_code == 201
    r = client.put("/collections/rv-text/documents", json={"documents": docs})
    assert r.status_code == 200, r.text
    vecs = document_vectors(client, texts)
    body = {"documents": [{"id": d["id"], "metadata": d["metadata"], "vectors": v}
                          for d, v in zip(docs, vecs)]}
    r = client.put("/collections/rv-vec/documents", json=body)
    assert r.status_code == 200 and r.json() == {"upserted": len(docs)}, r.text
    return docs


def test_vector_documents_store_what_the_text_would(client, twins):
    store = client.app.state.store
    text_coll, vec_coll = store.get("rv-text"), store.get("rv-vec")
    for d in twins:
        a, b = text_coll.get(d["id"]), vec_coll.get(d["id"])
        assert b.text is None and b.metadata == d["metadata"]
        for field in ("sparse", "bm25"):  # SPLADE weights as given; BM25 saturated alike
            va, vb = sp.csr_matrix(a.vectors[field]), sp.csr_matrix(b.vectors[field])
            assert np.array_equal(va.indices, vb.indices), field
            np.testing.assert_allclose(va.data, vb.data, rtol=1e-6, err_msg=field)
        np.testing.assert_allclose(np.asarray(a.vectors["dense"]).ravel(),
                                   np.asarray(b.vectors["dense"]).ravel(), rtol=1e-5, atol=1e-6)
    got = client.get(f"/collections/rv-vec/documents/{twins[0]['id']}").json()
    assert got["text"] is None and got["metadata"] == twins[0]["metadata"]


@pytest.mark.parametrize("mode", ["sparse", "bm25", "dense", "hybrid"])
def test_vector_documents_are_found_by_text_as_text_documents_are(client, twins, mode):
    a = post_search(client, "rv-text", query=QUERY, mode=mode, k=5)
    b = post_search(client, "rv-vec", query=QUERY, mode=mode, k=5)
    same_results(a, b)
    assert a["results"][0]["id"].startswith("energy")
    assert all(r["text"] is None for r in b["results"])


@pytest.mark.parametrize("mode", ["sparse", "bm25", "dense"])
def test_query_vectors_give_what_the_query_text_gives(client, mode):
    qv = query_vectors(client, QUERY)
    by_text = post_search(client, "demo", query=QUERY, mode=mode, k=8)
    by_vector = post_search(client, "demo", vector={mode: qv[mode]}, mode=mode, k=8)
    same_results(by_text, by_vector)
    assert by_vector["results"][0]["id"].startswith("energy")


def test_hybrid_from_vectors_text_or_both(client, twins):
    qv = query_vectors(client, QUERY)
    by_text = post_search(client, "demo", query=QUERY, k=8)
    same_results(by_text, post_search(client, "demo", vector=qv, k=8))
    # some lists from vectors, the others from the text
    same_results(by_text, post_search(client, "demo", query=QUERY, vector={"dense": qv["dense"]}, k=8))
    same_results(by_text, post_search(client, "demo", query=QUERY,
                                      vector={"sparse": qv["sparse"], "bm25": qv["bm25"]}, k=8))
    # vectors only, over documents given as vectors only
    same_results(post_search(client, "rv-text", query=QUERY, k=5), post_search(client, "rv-vec", vector=qv, k=5))
    # sparse as {token: weight}: the same query
    row = ENCODERS.sparse(SPLADE).encode_queries([QUERY])[0]
    terms = {t: float(w) for t, w in ENCODERS.sparse(SPLADE).decode(row)}
    same_results(post_search(client, "demo", vector={"sparse": qv["sparse"]}, mode="sparse", k=8),
                 post_search(client, "demo", vector={"sparse": terms}, mode="sparse", k=8))


def test_prf_convex_fusion_and_explanations_work_on_vectors(client):
    qv = query_vectors(client, QUERY)
    opts = {"k": 6, "prf": {"docs": 3, "terms": 32}, "fusion": {"method": "convex", "alpha": 0.4},
            "explain": True}
    by_text = post_search(client, "demo", query=QUERY, **opts)
    by_vector = post_search(client, "demo", vector=qv, **opts)
    same_results(by_text, by_vector)
    for a, b in zip(by_text["results"], by_vector["results"]):
        ea, eb = a["explanation"], b["explanation"]
        assert set(ea["ranks"]) == set(eb["ranks"]) and ea["ranks"] == eb["ranks"]
        for field in ("sparse", "bm25"):  # term names: the tokenizer's tokens, BM25's words
            assert [t["term"] for t in ea[field]["terms"]] == [t["term"] for t in eb[field]["terms"]]
    words = {t["term"] for r in by_vector["results"] for t in r["explanation"]["bm25"]["terms"]}
    assert words and words <= set(qv["bm25"])


def test_bm25_query_counts_are_weighted_by_idf(client):
    """A bm25 query vector holds counts: a repeated word counts twice, as in the text."""
    a = post_search(client, "demo", query="wind wind power", mode="bm25", k=5)
    b = post_search(client, "demo", vector={"bm25": {"wind": 2, "power": 1}}, mode="bm25", k=5)
    same_results(a, b)
    # words that no document has drop out, like unseen words of a text
    c = post_search(client, "demo", vector={"bm25": {"wind": 2, "power": 1, "qqqzzz": 5}}, mode="bm25", k=5)
    same_results(a, c)


def test_the_fast_lane_and_the_route_agree_on_vector_searches(client):
    qv = query_vectors(client, QUERY)
    bodies = [{"vector": qv, "k": 4}, {"vector": {"dense": [0.1] * 12}, "mode": "dense"},
              {"vector": {"sparse": {"indices": [1], "values": [1, 2]}}, "mode": "sparse"}]
    state = client.app.state
    try:
        state.fast_search = False
        by_route = [client.post("/collections/demo/search", json=b) for b in bodies]
    finally:
        state.fast_search = True
    by_lane = [client.post("/collections/demo/search", json=b) for b in bodies]
    assert [r.status_code for r in by_lane] == [r.status_code for r in by_route] == [200, 400, 400]
    same_results(by_lane[0].json(), by_route[0].json(), rel=1e-5)
    assert [r.json() for r in by_lane[1:]] == [r.json() for r in by_route[1:]]


# ---------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def guarded(client, corpus):
    """A collection with every field, holding two documents, and one without a dense field."""
    assert client.post("/collections", json={"name": "rv-bad"}).status_code == 201
    assert client.put("/collections/rv-bad/documents", json={"documents": corpus[:2]}).status_code == 200
    assert client.post("/collections", json={"name": "rv-lexical", "dense_encoder": None,
                                              "multivector_encoder": None}).status_code == 201
    return "rv-bad"


GOOD = {"id": "good", "text": "a fine document about wind"}
BAD_DOCUMENTS = [
    # (document, status, what the message must name)
    ({"id": "x", "text": "t", "vectors": {"dense": [0.1] * 12}}, 400,
     "documents[1].vectors.dense: expected 384 numbers, got 12"),
    ({"id": "x", "text": "t", "vectors": {"sparse": {"indices": [1, 2], "values": [1.0]}}}, 400,
     "documents[1].vectors.sparse: 2 indices but 1 values"),
    ({"id": "x", "text": "t", "vectors": {"sparse": {"indices": [30522], "values": [1.0]}}}, 400,
     "documents[1].vectors.sparse.indices: 30522 is outside [0, 30522)"),
    ({"id": "x", "text": "t", "vectors": {"sparse": {"indices": [7, 7], "values": [1.0, 2.0]}}}, 400,
     "documents[1].vectors.sparse.indices: 7 appears more than once"),
    ({"id": "x", "text": "t", "vectors": {"bm25": {"indices": [1 << 18], "values": [1.0]}}}, 400,
     "documents[1].vectors.bm25.indices"),
    ({"id": "x", "text": "t", "vectors": {"sparse": {"wind": 1.0, "notatokenqqq": 2.0}}}, 400,
     "documents[1].vectors.sparse: term 'notatokenqqq'"),
    ({"id": "x", "vectors": {"sparse": {"wind": 1.0}, "dense": [0.0] * 384}}, 400,
     "documents[1].vectors.bm25: the document has no text"),
    ({"id": "x"}, 400, "documents[1].vectors.sparse: the document has no text"),
    ({"id": "x", "text": "t", "vectors": {"dense": ["a"] * 384}}, 422, "documents.1.vectors.dense.0"),
    ({"id": "x", "text": "t", "vectors": {"dense": [True] * 384}}, 422, "documents.1.vectors.dense.0"),
    ({"id": "x", "text": "t", "vectors": {"dense": [2e6] * 384}}, 422, "documents.1.vectors.dense.0"),
    ({"id": "x", "text": "t", "vectors": {"sparse": {"indices": [1], "values": [-1.0]}}}, 422,
     "documents.1.vectors.sparse.SparseVector.values.0"),
    ({"id": "x", "text": "t", "vectors": {"sparse": {"indices": [1.5], "values": [1.0]}}}, 422,
     "documents.1.vectors.sparse.SparseVector.indices.0"),
    ({"id": "x", "text": "t", "vectors": {"bm25": {"wind": "two"}}}, 422, "documents.1.vectors.bm25.terms.wind"),
    ({"id": "x", "text": "t", "vectors": {"colbert": [1.0]}}, 422, "documents.1.vectors.colbert"),
]


@pytest.mark.parametrize("doc,status,named", BAD_DOCUMENTS, ids=[b[2] for b in BAD_DOCUMENTS])
def test_bad_document_vectors_are_refused_naming_the_field(client, guarded, doc, status, named):
    before = count(client, guarded)
    r = client.put(f"/collections/{guarded}/documents", json={"documents": [GOOD, doc]})
    assert r.status_code == status, r.text
    assert named in r.json()["detail"]
    assert count(client, guarded) == before
    assert client.get(f"/collections/{guarded}/documents/good").status_code == 404


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused(client, guarded, literal):
    before = count(client, guarded)
    dense = "[" + ", ".join(["0.1"] * 383 + [literal]) + "]"
    body = '{"documents": [{"id": "good", "text": "t", "vectors": {"dense": %s}}]}' % dense
    r = client.put(f"/collections/{guarded}/documents", content=body.encode(),
                   headers={"content-type": "application/json"})
    assert r.status_code == 422 and "documents.0.vectors.dense.383" in r.json()["detail"], r.text
    body = '{"vector": {"dense": %s}, "mode": "dense"}' % dense
    r = client.post(f"/collections/{guarded}/search", content=body.encode(),
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and "vector.dense.383" in r.json()["detail"], r.text
    assert count(client, guarded) == before


def test_a_field_the_collection_lacks_is_named(client, guarded):
    doc = {"id": "x", "text": "t", "vectors": {"dense": [0.0] * 384}}
    r = client.put("/collections/rv-lexical/documents", json={"documents": [doc]})
    assert r.status_code == 400 and "documents[0].vectors.dense" in r.json()["detail"], r.text
    assert count(client, "rv-lexical") == 0
    r = client.post("/collections/rv-lexical/search", json={"vector": {"dense": [0.0] * 384}, "mode": "bm25"})
    assert r.status_code == 400 and "vector.dense" in r.json()["detail"], r.text


BAD_SEARCHES = [
    ({"vector": {"dense": [0.1] * 12}, "mode": "dense"}, "vector.dense: expected 384 numbers, got 12"),
    ({"query": "x", "vector": {"dense": [0.1] * 12}}, "vector.dense: expected 384 numbers, got 12"),
    ({"mode": "dense"}, "query"),
    ({"vector": {}, "mode": "bm25"}, "query"),
    ({"vector": {"dense": [0.0] * 384}}, "vector.sparse: no query text"),
    ({"vector": {"dense": [0.0] * 384}, "mode": "sparse"}, "vector.dense: mode 'sparse'"),
    ({"vector": {"bm25": {"wind": 1}}, "mode": "bm25", "rerank": {"kappa": 5}}, "rerank"),
    ({"vector": {"sparse": {"indices": [40000], "values": [1.0]}}, "mode": "sparse"},
     "vector.sparse.indices: 40000 is outside [0, 30522)"),
    ({"vector": {"sparse": {"indices": [1, 2], "values": [1.0]}}, "mode": "sparse"},
     "vector.sparse: 2 indices but 1 values"),
    ({"vector": {"sparse": {"qqqnotatoken": 1.0}}, "mode": "sparse"}, "vector.sparse: term 'qqqnotatoken'"),
]


@pytest.mark.parametrize("body,named", BAD_SEARCHES, ids=[b[1] for b in BAD_SEARCHES])
def test_bad_query_vectors_are_400_naming_the_field(client, body, named):
    r = client.post("/collections/demo/search", json=body)
    assert r.status_code == 400, r.text
    assert named in r.json()["detail"]


def test_rerank_works_beside_vectors_given_the_query_text(client):
    qv = query_vectors(client, QUERY)
    a = post_search(client, "demo", query=QUERY, rerank={"kappa": 10}, k=3)
    b = post_search(client, "demo", query=QUERY, vector=qv, rerank={"kappa": 10}, k=3)
    same_results(a, b)
    assert a["reranked"] == b["reranked"] > 0


def test_vector_requests_are_in_the_openapi_document(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "vector" in schemas["SearchRequest"]["properties"]
    assert "query" not in schemas["SearchRequest"].get("required", [])
    assert "vectors" in schemas["DocumentIn"]["properties"]
    assert set(schemas["FieldVectors"]["properties"]) == {"sparse", "bm25", "dense"}
    json.dumps(schemas)  # serialisable as is
