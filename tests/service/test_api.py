"""Every collection, document and search route against a real tiny collection."""
import pytest

from .conftest import make_client


def search(client, **body):
    r = client.post("/collections/demo/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_health_ready_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    client.get("/collections/demo")
    text = client.get("/metrics").text
    assert 'lsr_requests_total{method="GET",route="/collections/{name}",status="200"}' in text
    search(client, query="x", mode="bm25")
    assert 'lsr_search_seconds_count{mode="bm25",rerank="false"}' in client.get("/metrics").text
    key = 'lsr_query_batch_size_count{encoder="DenseEncoder",model="all-MiniLM-L6-v2"} '

    def batches() -> float:
        line = [ln for ln in client.get("/metrics").text.splitlines() if ln.startswith(key)]
        return float(line[0].split()[-1]) if line else 0.0
    before = batches()
    search(client, query="wind turbines", mode="dense")
    assert batches() == before + 1  # a lone request: one batch of one query


def test_readyz_waits_for_preloaded_models(tmp_path):
    import time

    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    with TestClient(create_app(Settings(data_dir=tmp_path, _env_file=None), preload=True)) as c:
        deadline = time.time() + 60
        while c.get("/readyz").status_code != 200 and time.time() < deadline:
            time.sleep(0.05)
        body = c.get("/readyz").json()
        assert body["status"] == "ready" and "sparse:splade-tiny" in body["models"]
        # the dense and multivector query graphs are loaded before ready, not at the first query
        from encoders.onnx_graphs import OnnxTransformer
        from service.encoder_cache import ENCODERS
        for enc in (ENCODERS.dense("all-MiniLM-L6-v2"), ENCODERS.multivector("all-MiniLM-L6-v2")):
            assert isinstance(enc.backbone.shared_queries.model, OnnxTransformer)
        splade = ENCODERS.sparse("splade-tiny")  # and the SPLADE query path (ONNX + MLM transform)
        assert splade._query_hidden is not None and splade._query_hidden != splade.head.hidden


def test_collection_stats_and_list(client, corpus):
    stats = client.get("/collections/demo").json()
    assert stats["documents"] == len(corpus)
    assert set(stats["fields"]) == {"sparse", "bm25", "dense"}
    assert stats["encoders"]["multivector"] == "all-MiniLM-L6-v2"
    names = [c["name"] for c in client.get("/collections").json()["collections"]]
    assert "demo" in names


def test_create_conflict_and_bad_options(client):
    assert client.post("/collections", json={"name": "demo"}).status_code == 409
    r = client.post("/collections", json={"name": "x", "index": {"seismic": {"n_postings": -1}}})
    assert r.status_code == 400 and "n_postings" in r.json()["detail"]
    r = client.post("/collections", json={"name": "x", "sparse_encoder": "no-such-model"})
    assert r.status_code == 400 and "no-such-model" in r.json()["detail"]
    r = client.post("/collections", json={"name": "../etc"})
    assert r.status_code == 422
    r = client.post("/collections", json={"name": "x", "sparse_encoder": None, "dense_encoder": None,
                                          "bm25": False})
    assert r.status_code == 400
    assert "x" not in [c["name"] for c in client.get("/collections").json()["collections"]]


def test_document_lifecycle_in_own_collection(client):
    r = client.post("/collections", json={"name": "crud", "dense_encoder": None,
                                          "multivector_encoder": None})
    assert r.status_code == 201
    assert set(r.json()["fields"]) == {"sparse", "bm25"}
    docs = [{"id": "a", "text": "red apples and green pears", "metadata": {"n": 1}},
            {"id": "b", "text": "fast cars on a race track"}]
    assert client.put("/collections/crud/documents", json={"documents": docs}).json() == {"upserted": 2}
    assert client.get("/collections/crud/documents/a").json() == docs[0]
    assert client.get("/collections/crud/documents/b").json()["metadata"] is None
    # replace: newest version wins
    client.put("/collections/crud/documents", json={"documents": [{"id": "a", "text": "blue plums"}]})
    assert client.get("/collections/crud/documents/a").json()["text"] == "blue plums"
    assert client.delete("/collections/crud/documents/a").status_code == 204
    assert client.get("/collections/crud/documents/a").status_code == 404
    assert client.delete("/collections/crud/documents/a").status_code == 404
    assert client.get("/collections/crud").json()["documents"] == 1
    r = client.post("/collections/crud/search", json={"query": "cars", "mode": "dense"})
    assert r.status_code == 400 and "dense" in r.json()["detail"]
    assert client.delete("/collections/crud").status_code == 204
    assert client.get("/collections/crud").status_code == 404


@pytest.mark.parametrize("mode", ["sparse", "bm25", "dense", "hybrid"])
def test_search_modes_find_the_topic(client, mode):
    res = search(client, query="wind turbines generating electrical power", mode=mode, k=3)
    assert res["mode"] == mode
    ids = [r["id"] for r in res["results"]]
    assert ids[0] == "energy-02", ids
    top = res["results"][0]
    assert "Wind turbines" in top["text"] and top["metadata"]["topic"] == "energy"
    scores = [r["score"] for r in res["results"]]
    assert scores == sorted(scores, reverse=True)


def test_hybrid_fusion_matches_single_lists(client):
    q = "photosynthesis in plants"
    lists = {m: [(r["id"], r["score"]) for r in search(client, query=q, mode=m, k=100)["results"]]
             for m in ("sparse", "bm25", "dense")}
    from service.fusion import convex, rrf
    fused = search(client, query=q, mode="hybrid", k=5)["results"]
    expected = rrf({m: l for m, l in lists.items()}, k=60)[:5]
    assert [r["id"] for r in fused] == [d for d, _ in expected]
    assert [r["score"] for r in fused] == pytest.approx([s for _, s in expected])
    body = {"query": q, "mode": "hybrid", "k": 5,
            "fusion": {"method": "convex", "alpha": 0.7, "normalization": "zscore"}}
    got = search(client, **body)["results"]
    exp = convex(lists, {"sparse": 0.15, "bm25": 0.15, "dense": 0.7}, "zscore")[:5]
    assert [r["id"] for r in got] == [d for d, _ in exp]
    assert [r["score"] for r in got] == pytest.approx([s for _, s in exp], abs=1e-6)


def test_pagination_is_consistent(client):
    q = "energy and climate"
    full = [r["id"] for r in search(client, query=q, k=12)["results"]]
    pages = []
    for offset in range(0, 12, 4):
        pages += [r["id"] for r in search(client, query=q, k=4, offset=offset)["results"]]
    assert pages == full
    assert len(set(full)) == len(full)


def test_filter(client):
    res = search(client, query="energy from the sun", k=10, filter={"topic": "cooking"})
    assert res["results"] and all(r["metadata"]["topic"] == "cooking" for r in res["results"])
    res = search(client, query="energy", k=10, filter={"year": {"gte": 2016, "lt": 2017}})
    assert all(r["metadata"]["year"] == 2016 for r in res["results"])
    r = client.post("/collections/demo/search", json={"query": "x", "filter": {"year": {"near": 3}}})
    assert r.status_code == 400 and "near" in r.json()["detail"]


def test_explain_contributions_sum_to_sparse_score(client):
    res = search(client, query="black holes and gravity", mode="sparse", k=3, explain=True)
    for r in res["results"]:
        e = r["explanation"]["sparse"]
        assert e["score"] == pytest.approx(r["score"], rel=2e-2)
        assert sum(t["contribution"] for t in e["terms"]) <= e["score"] + 1e-6
        assert all(t["contribution"] == pytest.approx(t["query_weight"] * t["doc_weight"], rel=1e-5)
                   for t in e["terms"])
    res = search(client, query="black holes gravity", mode="bm25", k=1, explain=True)
    terms = {t["term"] for t in res["results"][0]["explanation"]["bm25"]["terms"]}
    assert terms <= {"black", "holes", "gravity"} and terms


def test_hybrid_explanation_gives_each_lists_rank_score_and_best(client):
    """Before fusion: the document's rank and score in every list that retrieved it, and each
    list's best score — what the same search in that list's mode alone returns."""
    query = "wind power and energy"
    res = search(client, query=query, mode="hybrid", k=5, explain=True)
    alone = {m: search(client, query=query, mode=m, k=100)["results"] for m in ("sparse", "bm25", "dense")}
    for r in res["results"]:
        e = r["explanation"]
        assert set(e["best"]) == set(alone) and set(e["ranks"]) == set(e["scores"]) and e["ranks"]
        for m, rank in e["ranks"].items():
            assert alone[m][rank - 1]["id"] == r["id"]
            assert e["scores"][m] == pytest.approx(alone[m][rank - 1]["score"], rel=1e-4)
        for m, best in e["best"].items():
            assert best == pytest.approx(alone[m][0]["score"], rel=1e-4)


def test_lists_in_parallel_or_in_turn_give_the_same_answer(client):
    """A lone hybrid search runs its lists side by side; under load they run in turn. Both
    give the same page, scores, explanations and PRF results, and the stage times add up."""
    pipe = client.app.state.pipeline
    saved = pipe.parallel_below
    bodies = [dict(query="wind power and energy", mode="hybrid", k=5, explain=True),
              dict(query="black holes", mode="hybrid", k=5, prf={"docs": 3})]
    try:
        pipe.parallel_below = 0  # never parallel
        in_turn = [search(client, **b) for b in bodies]
        pipe.parallel_below = 10 ** 6  # always parallel
        r = client.post("/collections/demo/search", json=bodies[0])
        side_by_side = [r.json()] + [search(client, **b) for b in bodies[1:]]
    finally:
        pipe.parallel_below = saved
    for a, b in zip(in_turn, side_by_side):
        assert [x["id"] for x in a["results"]] == [x["id"] for x in b["results"]]
        assert [x["score"] for x in a["results"]] == pytest.approx([x["score"] for x in b["results"]], rel=1e-5)
        assert [x["explanation"] for x in a["results"]] == [x["explanation"] for x in b["results"]]
    stages = dict(part.split(";dur=") for part in r.headers["server-timing"].split(", "))
    assert {"encode", "retrieve", "fuse", "fetch", "serialize", "total"} <= set(stages)


def test_the_fast_lane_answers_exactly_as_the_route(client):
    """Searches answered by service/fast_search.py and by the FastAPI route (lane off): the same
    status, body and headers, for successes and for every kind of error; metrics label both
    with the route's template."""
    requests = [
        ("/collections/demo/search", {"query": "wind power", "mode": "bm25", "k": 3}),
        ("/collections/demo/search", {"query": "wind power", "mode": "hybrid", "k": 4, "offset": 2,
                                      "filter": {"topic": "energy"}, "explain": True}),
        ("/collections/demo/search", {"query": "x", "k": 0}),                     # 422
        ("/collections/demo/search", {"query": "x", "k": 900, "offset": 900}),    # 400
        ("/collections/nope/search", {"query": "x"}),                             # 404
        ("/collections/demo/search", {"query": "x", "filter": {"a": {"$bogus": 1}}}),  # 400
        ("/collections/demo/search", "not json"),                                  # 400
    ]
    state = client.app.state

    def run():
        out = []
        for path, body in requests:
            r = (client.post(path, content=body, headers={"content-type": "application/json"})
                 if isinstance(body, str) else client.post(path, json=body))
            headers = {k: v for k, v in r.headers.items() if k not in ("server-timing", "date", "x-request-id")}
            out.append((r.status_code, r.json(), headers, "server-timing" in r.headers))
        return out
    try:
        state.fast_search = False
        by_route = run()
    finally:
        state.fast_search = True
    by_lane = run()
    assert [x[0] for x in by_lane] == [200, 200, 422, 400, 404, 400, 400]
    for lane, route in zip(by_lane, by_route):
        lane_body, route_body = lane[1], route[1]
        assert lane[0] == route[0] and lane[2] == route[2] and lane[3] == route[3]
        if lane[0] == 200:
            assert [r["id"] for r in lane_body["results"]] == [r["id"] for r in route_body["results"]]
            assert [r["score"] for r in lane_body["results"]] == pytest.approx(
                [r["score"] for r in route_body["results"]], rel=1e-5)
        else:
            assert lane_body == route_body
    metrics = client.get("/metrics").text
    assert 'lsr_requests_total{method="POST",route="/collections/{name}/search",status="200"}' in metrics


def test_every_search_example_of_the_api_docs_runs(client):
    """The request examples /docs offers in its drop-down are valid searches that find
    something in the demo collection; the response example has the response's shape."""
    op = client.get("/openapi.json").json()["paths"]["/collections/{name}/search"]["post"]
    examples = op["requestBody"]["content"]["application/json"]["examples"]
    assert {"hybrid", "convex_rerank", "filter", "explain", "prf_page"} <= set(examples)
    for name, ex in examples.items():
        res = search(client, **ex["value"])
        assert res["results"], name
    from service.schemas import SearchResponse
    SearchResponse.model_validate(op["responses"]["200"]["content"]["application/json"]["example"])


def test_search_errors(client):
    assert client.post("/collections/nope/search", json={"query": "x"}).status_code == 404
    for body, status in [({"query": ""}, 422), ({"query": "x", "k": 0}, 422),
                         ({"query": "x", "mode": "magic"}, 422), ({"query": 3}, 422),
                         ({"query": "x", "k": "ten"}, 422), ({"query": "x", "bogus": 1}, 422),
                         ({"query": "x", "k": 900, "offset": 900}, 400)]:
        r = client.post("/collections/demo/search", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["detail"]
    r = client.post("/collections/demo/search", content=b"{not json",
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["detail"]


def test_upsert_errors_store_nothing(client):
    before = client.get("/collections/demo").json()["documents"]
    bad = [{"documents": []}, {"documents": [{"id": "", "text": "x"}]},
           {"documents": [{"id": "z", "text": 5}]}, {"documents": [{"id": "z"}]},
           {"documents": [{"id": "z", "text": "a"}, {"id": "z", "text": "b"}]},
           {"documents": [{"id": "z", "text": "a", "metadata": [1]}]}]
    for body in bad:
        r = client.put("/collections/demo/documents", json=body)
        assert 400 <= r.status_code < 500, (body, r.text)
    assert client.put("/collections/nope/documents",
                      json={"documents": [{"id": "a", "text": "b"}]}).status_code == 404
    assert client.get("/collections/demo").json()["documents"] == before
    assert client.get("/collections/demo/documents/z").status_code == 404


def test_batch_and_body_limits(tmp_path):
    with make_client(tmp_path, max_batch_docs=2, max_body_bytes=2000) as c:
        c.post("/collections", json={"name": "s", "dense_encoder": None, "multivector_encoder": None})
        docs = [{"id": str(i), "text": "t"} for i in range(3)]
        r = c.put("/collections/s/documents", json={"documents": docs})
        assert r.status_code == 413 and "limit is 2" in r.json()["detail"]
        r = c.put("/collections/s/documents", json={"documents": [{"id": "a", "text": "x" * 5000}]})
        assert r.status_code == 413 and "exceeds" in r.json()["detail"]
        assert c.get("/collections/s").json()["documents"] == 0
