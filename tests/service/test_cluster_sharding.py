"""The sharding logic without Ray: a router over two in-process shards (cluster/backend.py
local_backend) answers every request as a single node holding the same documents — the same
results and scores in every mode (BM25 included: global statistics), the same documents, the
same errors for bad input."""
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.cluster.backend import local_backend
from service.cluster.placement import shard_dir, shard_of
from service.settings import Settings

SEARCHES = [
    {"query": "renewable energy from wind", "mode": "sparse", "k": 8},
    {"query": "renewable energy from wind", "mode": "bm25", "k": 8},
    {"query": "how do vaccines train the immune system", "mode": "dense", "k": 8},
    {"query": "ocean tides and the moon", "mode": "hybrid", "k": 8},
    {"query": "ocean tides and the moon", "mode": "hybrid", "k": 5, "offset": 3},
    {"query": "solar panels", "mode": "hybrid", "k": 6,
     "fusion": {"method": "convex", "normalization": "minmax"}},
    {"query": "solar panels", "mode": "bm25", "k": 6, "filter": {"topic": "energy"}},
    {"query": "history of computing machines", "mode": "hybrid", "k": 4, "rerank": {"kappa": 12}},
    {"query": "the immune system", "mode": "sparse", "k": 3, "explain": True},
]


def _pairs(body: dict) -> list[tuple[str, float]]:
    return [(r["id"], r["score"]) for r in body["results"]]


def assert_same_ranking(got: list, want: list, tol: float = 2e-4) -> None:
    """The same scores, and the same ids wherever a score is not tied with a neighbour."""
    assert len(got) == len(want), (got, want)
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=tol, atol=tol)
    for j, (doc_id, score) in enumerate(want):
        if sum(abs(s - score) <= tol * max(1, abs(score)) for _, s in want) == 1:
            assert got[j][0] == doc_id, (j, got, want)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, corpus):
    """(single node, two-shard router), both holding the corpus written in the same batches."""
    single = create_app(Settings(data_dir=tmp_path_factory.mktemp("single"), _env_file=None))
    root = tmp_path_factory.mktemp("cluster")
    sharded = create_app(Settings(data_dir=root, _env_file=None), backend=local_backend(root, 2))
    with TestClient(single) as a, TestClient(sharded) as b:
        for c in (a, b):
            assert c.post("/collections", json={"name": "docs"}).status_code == 201
            # three batches: BM25's average length moves between them, on both alike
            for lo, hi in ((0, 10), (10, 25), (25, len(corpus))):
                r = c.put("/collections/docs/documents", json={"documents": corpus[lo:hi]})
                assert r.status_code == 200, r.text
        yield a, b, root


def test_documents_are_spread_over_both_shards(pair, corpus):
    _, b, root = pair
    owners = {shard_of(d["id"], 2) for d in corpus}
    assert owners == {0, 1}
    for s in (0, 1):
        assert (shard_dir(root, s) / "docs").is_dir()
    stats = b.get("/collections/docs").json()
    assert stats["documents"] == len(corpus) and stats.get("shards") == 2


@pytest.mark.parametrize("req", SEARCHES, ids=lambda r: f"{r['mode']}-{r.get('fusion', r.get('rerank', ''))}")
def test_sharded_search_equals_single_node(pair, req):
    a, b, _ = pair
    ra, rb = a.post("/collections/docs/search", json=req), b.post("/collections/docs/search", json=req)
    assert ra.status_code == rb.status_code == 200, (ra.text, rb.text)
    assert_same_ranking(_pairs(rb.json()), _pairs(ra.json()))
    for x, y in zip(ra.json()["results"], rb.json()["results"]):
        if x["id"] == y["id"]:
            assert (x["text"], x["metadata"]) == (y["text"], y["metadata"])
            if req.get("explain"):
                assert [t["term"] for t in x["explanation"]["sparse"]["terms"]] == \
                    [t["term"] for t in y["explanation"]["sparse"]["terms"]]
    assert ra.json()["candidates"] == rb.json()["candidates"]


def test_documents_scroll_and_writes_agree(pair, corpus):
    a, b, _ = pair
    ids = [corpus[0]["id"], corpus[7]["id"], "missing"]
    for c in (a, b):
        got = c.post("/collections/docs/documents/get", json={"ids": ids}).json()
        assert [d["id"] for d in got["documents"]] == ids[:2] and got["missing"] == ["missing"]
    scroll = [[d["id"] for d in c.get("/collections/docs/documents", params={"limit": 7}).json()["documents"]]
              for c in (a, b)]
    assert scroll[0] == scroll[1] == sorted(d["id"] for d in corpus)[:7]
    # a metadata patch, a delete by id and one by filter: the same outcome on both
    patch = {"documents": [{"id": corpus[1]["id"], "metadata": {"star": True}}]}
    for c in (a, b):
        assert c.patch("/collections/docs/documents", json=patch).json()["updated"] == 1
        r = c.patch("/collections/docs/documents", json={"documents": [{"id": "nope", "metadata": {}}]})
        assert r.status_code == 404 and "nope" in r.json()["detail"]
    deleted = [c.post("/collections/docs/documents/delete", json={"filter": {"star": True}}).json()["deleted"]
               for c in (a, b)]
    assert deleted == [1, 1]
    for c in (a, b):
        assert c.delete(f"/collections/docs/documents/{corpus[2]['id']}").status_code == 204
        assert c.get(f"/collections/docs/documents/{corpus[2]['id']}").status_code == 404
    req = {"query": "renewable energy from wind", "mode": "bm25", "k": 10}
    assert_same_ranking(_pairs(b.post("/collections/docs/search", json=req).json()),
                        _pairs(a.post("/collections/docs/search", json=req).json()))
    assert a.get("/collections/docs").json()["documents"] == b.get("/collections/docs").json()["documents"]


BAD = [
    ("put", "/collections/docs/documents", {"documents": [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}]}),
    ("put", "/collections/docs/documents", {"documents": [{"id": "v", "vectors": {"dense": [0.1, 0.2]}}]}),
    ("put", "/collections/nope/documents", {"documents": [{"id": "x", "text": "a"}]}),
    ("post", "/collections/docs/search", {"query": "x", "filter": {"topic": {"$near": 1}}}),
    ("post", "/collections/docs/search", {"query": "x", "k": 5000}),
    ("post", "/collections/docs/search", {"query": "x", "mode": "bogus"}),
    ("post", "/collections/nope/search", {"query": "x"}),
    ("post", "/collections", {"name": "docs"}),
    ("post", "/collections", {"name": "bad name!"}),
    ("post", "/collections/docs/documents/delete", {"filter": {}}),
]


@pytest.mark.parametrize("method,path,body", BAD, ids=[f"{m}-{p}-{i}" for i, (m, p, _) in enumerate(BAD)])
def test_bad_input_gets_the_same_answer(pair, method, path, body):
    a, b, _ = pair
    before = b.get("/collections/docs").json()["documents"]
    ra, rb = (getattr(c, method)(path, json=body) for c in (a, b))
    assert 400 <= ra.status_code < 500
    assert (rb.status_code, rb.json()["detail"]) == (ra.status_code, ra.json()["detail"])
    assert b.get("/collections/docs").json()["documents"] == before  # nothing stored anywhere


def test_facets_and_stored_token_reranking_agree(pair, corpus):
    """Facet counts add up over the shards; stored token vectors (store_token_vectors) come
    from each document's shard, in order, and rerank as on a single node."""
    a, b, _ = pair
    for c in (a, b):
        r = c.post("/collections", json={"name": "tok", "index": {"store_token_vectors": "int8"}})
        assert r.status_code == 201, r.text
        assert c.put("/collections/tok/documents", json={"documents": corpus}).status_code == 200
    reqs = [{"query": "energy", "mode": "bm25", "k": 5,
             "facets": [{"key": "topic", "scope": "hits"}, {"key": "year", "scope": "collection", "size": 3}]},
            {"query": "ocean tides and the moon", "mode": "hybrid", "k": 5, "rerank": {"kappa": 15}}]
    for req in reqs:
        ra, rb = (c.post("/collections/tok/search", json=req) for c in (a, b))
        assert ra.status_code == rb.status_code == 200, (ra.text, rb.text)
        assert_same_ranking(_pairs(rb.json()), _pairs(ra.json()))
        assert rb.json().get("facets") == ra.json().get("facets")
        assert rb.json()["reranked"] == ra.json()["reranked"]
    # the token vectors' stats are the whole collection's, summed over the shards
    ta, tb = (c.get("/collections/tok").json()["token_vectors"] for c in (a, b))
    assert tb["tokens"] == ta["tokens"] > 0
    assert tb["bytes_per_token"] == pytest.approx(ta["bytes_per_token"], rel=0.05)
    assert tb["tokens_per_document"] == pytest.approx(ta["tokens_per_document"], rel=1e-6)
