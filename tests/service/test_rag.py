"""OpenAI-compatible embeddings and /encode term maps."""
import numpy as np
import pytest


def test_embeddings_openai_shape(client):
    r = client.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": ["hello world", "solar power"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "all-MiniLM-L6-v2"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 384 for d in body["data"])
    assert np.linalg.norm(body["data"][0]["embedding"]) == pytest.approx(1.0, abs=1e-4)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 4
    single = client.post("/v1/embeddings", json={"input": "hello world"}).json()
    assert single["data"][0]["embedding"] == pytest.approx(body["data"][0]["embedding"], abs=1e-5)


def test_embeddings_sparse_extension(client):
    body = client.post("/v1/embeddings", json={"input": "sparse retrieval", "encoding_format": "sparse"}).json()
    emb = body["data"][0]["embedding"]
    assert len(emb["indices"]) == len(emb["values"]) > 0 and all(v > 0 for v in emb["values"])


def test_embeddings_errors(client):
    assert client.post("/v1/embeddings", json={"input": []}).status_code == 400
    assert client.post("/v1/embeddings", json={"input": [""]}).status_code == 400
    r = client.post("/v1/embeddings", json={"input": [1, "a"]})  # neither texts nor token ids
    assert r.status_code == 422 and "input" in r.json()["detail"]
    r = client.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-3-large"})
    assert r.status_code == 400 and "text-embedding-3-large" in r.json()["detail"]
    r = client.post("/v1/embeddings", json={"input": ["x"] * 300})
    assert r.status_code == 413


def test_encode_term_maps(client):
    body = client.post("/encode", json={"texts": ["what is learned sparse retrieval"], "top_k": 5}).json()
    terms = body["vectors"][0]
    assert body["encoder"] == "splade-tiny" and len(terms) == 5
    assert "retrieval" in terms and list(terms.values()) == sorted(terms.values(), reverse=True)
    docs = client.post("/encode", json={"texts": ["cats and dogs"], "kind": "documents"}).json()
    assert docs["vectors"][0]
    bm = client.post("/encode", json={"texts": ["the cat and the cat"], "encoder": "bm25"}).json()
    assert bm["vectors"] == [{"cat": 2.0}]  # stopwords dropped, query weight = count
    assert client.post("/encode", json={"texts": []}).status_code == 422
    assert client.post("/encode", json={"texts": ["x"], "encoder": "nope"}).status_code == 400


def test_lone_surrogates_are_a_400_not_a_500(client):
    import json
    for url, body in [("/v1/embeddings", {"input": "bad \ud800"}), ("/encode", {"texts": ["bad \ud800"]}),
                      ("/collections/demo/search", {"query": "bad \ud800"})]:
        r = client.post(url, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500 and "nicode" in r.json()["detail"], (url, r.text)


def _serve_with(data_dir, corpus, texts, query, **settings):
    """A fresh app with these settings over ``corpus``: (embeddings of ``texts`` through
    /v1/embeddings, the search's results, the models /readyz lists)."""
    import numpy as np
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    with TestClient(create_app(Settings(data_dir=data_dir, _env_file=None, **settings))) as c:
        assert c.post("/collections", json={"name": "d"}).status_code == 201
        assert c.put("/collections/d/documents", json={"documents": corpus}).status_code == 200
        r = c.post("/v1/embeddings", json={"input": texts})
        assert r.status_code == 200, r.text
        emb = np.array([d["embedding"] for d in r.json()["data"]])
        r = c.post("/collections/d/search", json=query)
        assert r.status_code == 200, r.text
        return emb, r.json()["results"], c.get("/readyz").json()["models"]


def test_dense_int8_setting_indexes_documents_in_int8_and_keeps_queries_exact(tmp_path, corpus):
    """LSR_DENSE_INT8: documents are encoded by the fused int8 ONNX graph (dense scores close to,
    not equal to, float32); queries and /v1/embeddings by the fused float32 graph (equal to
    PyTorch's up to float rounding)."""
    import numpy as np

    from service.encoder_cache import ENCODERS
    texts = ["wind turbines make electricity", "sourdough bread needs a starter"]
    query = {"query": "renewable energy", "mode": "dense", "k": 5}
    try:
        emb_int8, results, models = _serve_with(tmp_path / "a", corpus, texts, query, dense_int8=True)
    finally:
        ENCODERS.dense_int8 = False  # process-wide: the other tests' apps use float32
    assert "dense-int8:all-MiniLM-L6-v2" in models
    hits_int8 = {h["id"]: h["score"] for h in results}
    emb, results, _ = _serve_with(tmp_path / "b", corpus, texts, query)
    hits = {h["id"]: h["score"] for h in results}
    np.testing.assert_allclose(emb_int8, emb, atol=1e-5)  # queries: the fused float32 graph
    # documents: int8, so scores are close, not equal, and near-ties may swap: tolerances only
    # (the exact order depends on the CPU's int8 kernels and on the thread count)
    assert len(set(hits_int8) & set(hits)) >= 4  # top-5 overlap
    diffs = [abs(hits_int8[d] - hits[d]) for d in hits if d in hits_int8]
    assert max(diffs) < 0.03 and max(diffs) > 1e-5


def test_query_int8_setting_serves_int8_queries_and_is_checked(tmp_path, corpus):
    """LSR_QUERY_INT8: dense and multivector queries (and /v1/embeddings) through the int8 ONNX
    graph: close to the float32 vectors, not equal; a reranked hybrid search ranks alike; and
    the setting is refused without the ONNX query path."""
    import numpy as np

    from service.encoder_cache import ENCODERS
    from service.settings import Settings
    texts = ["wind turbines make electricity", "sourdough bread needs a starter"]
    query = {"query": "renewable energy from wind", "mode": "hybrid", "k": 5, "rerank": {"kappa": 10}}
    try:
        emb8, results, models8 = _serve_with(tmp_path / "a", corpus, texts, query, query_int8=True)
    finally:
        ENCODERS.query_int8 = False  # process-wide: the other tests' apps use float32
    top8 = [h["id"] for h in results]
    emb, results, _ = _serve_with(tmp_path / "b", corpus, texts, query)
    top = [h["id"] for h in results]
    assert "dense-onnx-int8q:all-MiniLM-L6-v2" in models8
    cos = (emb8 * emb).sum(axis=1)
    assert cos.min() > 0.97 and np.abs(emb8 - emb).max() > 1e-5  # int8: close, not equal
    assert top8[0] == top[0] and len(set(top8) & set(top)) >= 4  # tolerances: near-ties may swap
    with pytest.raises(ValueError, match="onnx_queries"):
        Settings(data_dir=tmp_path / "c", _env_file=None, query_int8=True, onnx_queries=False)
