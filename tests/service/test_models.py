"""The model registry in the service: GET /models, collections over every sparse kind
(SPLADE, inference-free with live or file IDF, echo SPLADE, CSR), kinds recorded and enforced,
and the device plumbing (LSR_DEVICE) on a CPU-only machine.

Real small models throughout: splade-tiny and MiniLM (linked into a temporary models cache),
a tiny randomly initialised Mistral for echo SPLADE, and a CSR autoencoder trained here on
MiniLM embeddings of the corpus (a few seconds)."""
import json
import os

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from encoders import device as devices
from encoders import registry
from encoders.batching import length_sorted_batches
from encoders.models import models_dir as default_models_dir
from indexer.query import DEFAULTS
from service import lexical, models
from service.app import create_app
from service.encoder_cache import EncoderCache
from service.errors import Conflict
from service.settings import Settings
from service.store import SPARSE_KIND, Store

SPARSE_MODELS = ["splade-tiny", "splade-tiny-inference-free", "if-idf", "tiny-echo", "csr-mini"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, corpus):
    """A models cache: the two real models (linked), an inference-free model with an IDF file,
    a tiny echo-SPLADE Mistral, a CSR checkpoint over MiniLM, and one broken manifest."""
    from transformers import MistralConfig, MistralForCausalLM

    from encoders.dense import DenseEncoder
    from encoders.inference_free import IdfTable
    from encoders.models import load_tokenizer
    from training.csr import CSRTrainConfig, train_sae

    root = tmp_path_factory.mktemp("models")
    src = default_models_dir()
    for name in ("splade-tiny", "all-MiniLM-L6-v2"):
        (root / name).symlink_to(src / name)
    texts = [d["text"] for d in corpus]
    tok = load_tokenizer(str(src / "splade-tiny"))
    (root / "if-idf").mkdir()
    IdfTable.fit(tok, texts).save(root / "if-idf" / "idf.npy")
    registry.write_manifest(root / "if-idf", "inference-free", base="splade-tiny", files={"idf": "idf.npy"},
                            description="splade-tiny documents, IDF of the test corpus")
    # echo SPLADE: a plain causal-LM directory, no manifest needed
    tok.bos_token = "[CLS]"
    torch.manual_seed(0)
    cfg = MistralConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                        pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, tie_word_embeddings=False)
    MistralForCausalLM(cfg).save_pretrained(root / "tiny-echo")
    tok.save_pretrained(root / "tiny-echo")
    # CSR: a top-k autoencoder trained on MiniLM embeddings of the corpus
    emb = DenseEncoder(str(src / "all-MiniLM-L6-v2"), progress=False).encode_documents(texts)
    sae, _ = train_sae(emb, CSRTrainConfig(k=8, hidden_mult=2, steps=60, batch_size=32, k_start=32),
                       progress=False)
    (root / "csr-mini").mkdir()
    sae.save(root / "csr-mini" / "csr.pt", {"dense_model": "all-MiniLM-L6-v2"})
    registry.write_manifest(root / "csr-mini", "csr", base="all-MiniLM-L6-v2", files={"checkpoint": "csr.pt"})
    (root / "broken").mkdir()
    (root / "broken" / registry.MANIFEST).write_text(json.dumps({"kind": "word2vec"}))
    (root / "escapes").mkdir()
    (root / "escapes" / registry.MANIFEST).write_text(json.dumps(
        {"kind": "inference-free", "base": "splade-tiny", "files": {"idf": "../if-idf/idf.npy"}}))
    return root


@pytest.fixture(scope="module")
def client(tmp_path_factory, models_dir, corpus):
    old = os.environ.get("LSR_MODELS_DIR")
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("data"), models_dir=models_dir, _env_file=None))
    try:
        with TestClient(app) as c:
            for name in SPARSE_MODELS:
                r = c.post("/collections", json={"name": f"c-{name}", "sparse_encoder": name,
                                                 "dense_encoder": None, "multivector_encoder": None})
                assert r.status_code == 201, r.text
                r = c.put(f"/collections/c-{name}/documents", json={"documents": corpus})
                assert r.status_code == 200, r.text
            yield c
    finally:
        if old is None:
            os.environ.pop("LSR_MODELS_DIR", None)
        else:
            os.environ["LSR_MODELS_DIR"] = old


def test_get_models_lists_kinds_dimensions_and_devices(client):
    r = client.get("/models")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["device"] == "cpu"  # auto, on this CPU-only machine
    by = {m["name"]: m for m in body["models"]}
    assert {n: by[n]["kind"] for n in by} == {
        "all-MiniLM-L6-v2": "dense", "bm25-hashed": "bm25", "csr-mini": "csr", "if-idf": "inference-free",
        "splade-tiny": "splade", "splade-tiny-inference-free": "inference-free", "tiny-echo": "echo-splade"}
    assert "broken" not in by and "escapes" not in by  # invalid manifests register nothing
    assert by["all-MiniLM-L6-v2"]["kinds"] == ["dense", "multivector"]
    assert by["splade-tiny"]["dimension"] == 30522 and by["all-MiniLM-L6-v2"]["dimension"] == 384
    assert by["csr-mini"]["dimension"] == 768 and by["bm25-hashed"]["dimension"] == lexical.DIM
    assert by["if-idf"]["idf"] == "file" and by["splade-tiny-inference-free"]["idf"] == "collection"
    assert by["if-idf"]["files"] == {"idf": "idf.npy"} and by["if-idf"]["base"] == "splade-tiny"
    assert by["if-idf"]["query_side"].startswith("tokenizer")
    assert all(m["device"] == "cpu" for m in body["models"])
    assert by["splade-tiny"]["default_for"] == ["sparse"] and by["splade-tiny"]["roles"] == ["sparse"]
    assert "sparse" in by["csr-mini"]["loaded"]
    assert str(default_models_dir()) not in r.text and "/tmp" not in r.text  # no server paths
    one = client.get("/models/tiny-echo").json()
    assert one["kind"] == "echo-splade" and one["dimension"] == 30522
    assert client.get("/models/nope").status_code == 404
    ready = client.get("/readyz").json()
    assert {m["name"]: m["device"] for m in ready["registry"]}["splade-tiny"] == "cpu"
    assert "/models" in client.get("/openapi.json").json()["paths"]


def test_registry_explains_invalid_manifests(models_dir):
    problems = registry.problems()
    assert "word2vec" in problems["broken"] and "plain file name" in problems["escapes"]


@pytest.mark.parametrize("name", SPARSE_MODELS)
def test_every_sparse_kind_fills_and_searches_a_collection(client, name):
    stats = client.get(f"/collections/c-{name}").json()
    assert stats["encoders"]["sparse"] == name
    assert stats["encoders"][SPARSE_KIND] == registry.get(name).kind
    r = client.post(f"/collections/c-{name}/search", json={"query": "how do wind turbines make electricity",
                                                            "mode": "sparse", "k": 5, "explain": True})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert 1 <= len(results) <= 5  # CSR: k=8 latents per text, so few documents share one
    terms = results[0]["explanation"]["sparse"]["terms"]
    assert terms and all(isinstance(t["term"], str) for t in terms)
    if name != "tiny-echo":  # a random model ranks at random; the trained ones find the topic
        assert results[0]["metadata"]["topic"] == "energy", results[0]


def test_inference_free_queries_are_tokens_weighted_by_live_idf(client):
    """No model at query time: the query vector is the distinct tokens, each weighted by the
    Lucene IDF of the collection's own sparse field — and it follows the collection's growth."""
    from service.encoder_cache import ENCODERS
    enc = ENCODERS.sparse("splade-tiny-inference-free")
    query = "solar panels and wind turbines"
    ids = enc.query_terms([query])[0]

    def explained():
        r = client.post("/collections/c-splade-tiny-inference-free/search",
                        json={"query": query, "mode": "sparse", "k": 1, "explain": True})
        return {t["term"]: t["query_weight"] for t in r.json()["results"][0]["explanation"]["sparse"]["terms"]}

    stats = client.app.state.store.get("c-splade-tiny-inference-free").term_stats("sparse", ids)
    expected = dict(zip(enc.tokenizer.convert_ids_to_tokens(ids.tolist()), lexical.idf(stats.df, stats.n_docs)))
    got = explained()
    assert got and all(abs(w - expected[t]) < 1e-5 for t, w in got.items())
    # more documents with the word "wind": its IDF falls
    r = client.put("/collections/c-splade-tiny-inference-free/documents", json={"documents": [
        {"id": f"wind-{i}", "text": f"wind number {i}"} for i in range(8)]})
    assert r.status_code == 200
    coll = client.app.state.store.get("c-splade-tiny-inference-free")
    wind = enc.tokenizer.convert_tokens_to_ids("wind")
    q_ids, q_w = models.sparse_query(enc, query, coll, batcher=None)  # no batcher: no model runs
    after = dict(zip(q_ids.tolist(), q_w.tolist()))
    assert after[wind] < expected["wind"] - 0.1


def test_inference_free_fields_record_their_operating_point(client):
    """An inference-free sparse field is built and searched at its own operating point
    (service/models.py FIELD_PROFILES), recorded in the collection's config: it survives a
    reopen, a client's index.seismic overrides the build parameters, other kinds get none."""
    store = client.app.state.store
    spec = store.get("c-splade-tiny-inference-free").config.fields["sparse"]
    profile = models.FIELD_PROFILES["inference-free"]
    assert spec.params == profile["params"] and spec.params["knn"] > 0
    assert spec.search_defaults() == (profile["search"]["query_cut"], profile["search"]["heap_factor"])
    splade = store.get("c-splade-tiny").config.fields["sparse"]
    assert splade.params == {} and splade.search_defaults() == (DEFAULTS.query_cut, DEFAULTS.heap_factor)
    saved = json.loads((store.data_dir / "c-splade-tiny-inference-free" / "collection.json").read_text())
    assert saved["config"]["fields"]["sparse"]["search"] == profile["search"]
    assert "search" not in saved["config"]["fields"]["bm25"]  # a file without them reads as before
    r = client.post("/collections", json={"name": "if-own", "sparse_encoder": "splade-tiny-inference-free",
                                          "dense_encoder": None, "index": {"seismic": {"n_postings": 500}}})
    assert r.status_code == 201, r.text
    own = store.get("if-own").config.fields["sparse"]
    assert own.params == {**profile["params"], "n_postings": 500}
    assert own.search == profile["search"]
    assert store.get("if-own").config.fields["bm25"].params == {"n_postings": 500}
    assert client.delete("/collections/if-own").status_code in (200, 204)


def test_inference_free_with_idf_file_uses_the_file(client, models_dir):
    from encoders.inference_free import IdfTable
    from service.encoder_cache import ENCODERS
    enc = ENCODERS.sparse("if-idf")
    assert not enc.live_idf
    table = IdfTable.load(models_dir / "if-idf" / "idf.npy").idf
    row = enc.encode_queries(["solar power"])[0]
    assert np.allclose(row.data, table[row.indices])
    # the service's query path looks the weights up directly: the same vector
    ids, w = models.sparse_query(enc, "solar power", None, batcher=None)
    assert ids.tolist() == row.indices.tolist() and np.allclose(w, row.data)


def test_encode_route_with_each_kind(client):
    r = client.post("/encode", json={"texts": ["wind power"], "encoder": "csr-mini", "kind": "documents"})
    assert r.status_code == 200 and all(t.startswith("latent_") for t in r.json()["vectors"][0])
    r = client.post("/encode", json={"texts": ["wind power"], "encoder": "splade-tiny-inference-free"})
    assert r.status_code == 400 and "inference-free" in r.json()["detail"]
    r = client.post("/encode", json={"texts": ["wind power"], "encoder": "if-idf"})
    assert r.status_code == 200 and r.json()["vectors"][0]


@pytest.mark.parametrize("body, words", [
    ({"sparse_encoder": "all-MiniLM-L6-v2"}, "dense model"),
    ({"sparse_encoder": "bm25-hashed"}, "bm25 model"),
    ({"dense_encoder": "splade-tiny"}, "splade model"),
    ({"multivector_encoder": "csr-mini"}, "csr model"),
    ({"sparse_encoder": "broken"}, "unknown model"),
    ({"sparse_encoder": "../splade-tiny"}, "unknown model"),
    ({"sparse_encoder": "/work/main/models/splade-tiny"}, "unknown model"),
])
def test_models_in_the_wrong_role_or_unregistered_are_400(client, body, words):
    r = client.post("/collections", json={"name": "wrong", **body})
    assert r.status_code == 400 and words in r.json()["detail"], r.text
    assert client.get("/collections/wrong").status_code == 404


def test_csr_raw_vectors_by_term_are_refused_clearly(client):
    r = client.put("/collections/c-csr-mini/documents", json={"documents": [
        {"id": "raw", "text": "x", "vectors": {"sparse": {"latent_3": 1.0}}}]})
    assert r.status_code == 400 and "indices" in r.json()["detail"]
    r = client.put("/collections/c-csr-mini/documents", json={"documents": [
        {"id": "raw", "text": "x", "vectors": {"sparse": {"indices": [3, 700], "values": [1.0, 0.5]}}}]})
    assert r.status_code == 200, r.text


def test_a_model_whose_kind_changed_is_not_mixed(tmp_path, models_dir, corpus):
    """A restarted server whose registry gives a collection's model another kind refuses to
    search or fill its sparse field (409), instead of mixing two models' vectors."""
    old = os.environ.get("LSR_MODELS_DIR")
    os.environ["LSR_MODELS_DIR"] = str(models_dir)
    moved = tmp_path / "models"
    try:
        # a copy of the cache where "switch" is first inference-free, then a SPLADE model
        moved.mkdir()
        for p in models_dir.iterdir():
            (moved / p.name).symlink_to(p)
        (moved / "switch").mkdir()
        registry.write_manifest(moved / "switch", "inference-free", base="splade-tiny")
        os.environ["LSR_MODELS_DIR"] = str(moved)
        store = Store(tmp_path / "data", EncoderCache())
        store.create("k", "switch", None, None, bm25=False)
        store.upsert("k", ["a"], ["wind turbines"], [None])
        store.close()
        registry.write_manifest(moved / "switch", "splade", base="splade-tiny")
        store = Store(tmp_path / "data", EncoderCache())  # a restart: a fresh encoder cache
        with pytest.raises(Conflict, match="now of kind 'splade'"):
            store.upsert("k", ["b"], ["solar"], [None])
        store.close()
    finally:
        if old is None:
            os.environ.pop("LSR_MODELS_DIR", None)
        else:
            os.environ["LSR_MODELS_DIR"] = old


# ---------------------------------------------------------------- devices (CPU-only machine)
def test_device_auto_is_cpu_and_cuda_is_refused_clearly():
    assert devices.resolve("auto") == torch.device("cpu") or torch.cuda.is_available()
    assert devices.resolve("cpu") == torch.device("cpu")
    with pytest.raises(devices.DeviceError, match="auto, cpu, cuda"):
        devices.resolve("gpu")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal cannot be shown here")
    with pytest.raises(devices.DeviceError, match="torch.cuda is not available"):
        devices.resolve("cuda:1")
    with pytest.raises(devices.DeviceError, match="torch.cuda is not available"):
        Settings(device="cuda", _env_file=None).apply()
    assert devices.default_spec() == "auto"  # a refused setting changes nothing


def test_device_setting_is_checked_and_known(tmp_path, monkeypatch):
    from pydantic import ValidationError

    from service.settings import known_variables
    assert "LSR_DEVICE" in known_variables()
    with pytest.raises(ValidationError):
        Settings(device="tpu", _env_file=None)
    monkeypatch.setenv("LSR_DEVICE", "cpu")
    s = Settings(data_dir=tmp_path, _env_file=None)
    assert s.device == "cpu"
    try:
        s.apply()
        assert devices.default_spec() == "cpu"
    finally:
        devices.set_default("auto")
    if not torch.cuda.is_available():  # a server asked for a GPU it lacks does not start
        with pytest.raises(devices.DeviceError):
            with TestClient(create_app(Settings(data_dir=tmp_path, device="cuda", _env_file=None))):
                pass
        devices.set_default("auto")


def test_cli_refuses_a_missing_gpu(tmp_path, monkeypatch, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from service.cli import main
    monkeypatch.setenv("LSR_DEVICE", "cuda")
    try:
        assert main(["collections", "--data-dir", str(tmp_path)]) == 1
        assert "torch.cuda is not available" in capsys.readouterr().err
    finally:
        devices.set_default("auto")


def test_encoders_place_themselves_on_the_given_device(models_dir):
    from encoders.splade import SpladeEncoder
    enc = SpladeEncoder(str(models_dir / "splade-tiny"), device="cpu", progress=False)
    assert enc.device == torch.device("cpu") and enc.fused_head == (enc._packed is not None)
    if not torch.cuda.is_available():
        with pytest.raises(devices.DeviceError):
            SpladeEncoder(str(models_dir / "splade-tiny"), device="cuda", progress=False)


def test_document_batches_are_sized_by_tokens():
    lengths = [500, 20, 480, 30, 10, 250, 260]
    batches = length_sorted_batches(lengths, batch_size=32, max_tokens=1000)
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 1000
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches == [[0, 2], [6, 5, 3], [1, 4]]  # longest first; a batch closes at 1000 padded tokens
    # a budget below the longest text still gives that text a batch of its own
    assert length_sorted_batches([900], 8, max_tokens=100) == [[0]]
    # the count still caps: 100 short texts, 32 per batch
    assert max(len(b) for b in length_sorted_batches([5] * 100, 32, max_tokens=10_000)) == 32
    cap, tokens = devices.batch_plan(torch.device("cpu"), 32, None)
    assert (cap, tokens) == (32, devices.CPU_BATCH_TOKENS)
    cap, tokens = devices.batch_plan(torch.device("cuda"), 32, None)
    assert cap >= 1024 and tokens == devices.GPU_BATCH_TOKENS
