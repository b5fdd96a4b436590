from collections import Counter

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from encoders.base import DenseEncoder as DenseProtocol
from encoders.dense import DenseEncoder, mean_pool
from encoders.multivector import MultiVectorEncoder, maxsim, maxsim_scores


@pytest.fixture(scope="module")
def dense(minilm_path):
    return DenseEncoder("all-MiniLM-L6-v2", progress=False)


@pytest.fixture(scope="module")
def multi(minilm_path):
    return MultiVectorEncoder("all-MiniLM-L6-v2", progress=False)


def test_mean_pool_ignores_padding():
    states = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert torch.equal(mean_pool(states, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))


def test_dense_shape_norm_and_max_length(dense, scifact_texts):
    assert isinstance(dense, DenseProtocol) and dense.dim == 384
    assert dense.backbone.max_length == 256  # sentence-transformers' setting for MiniLM
    emb = dense.encode_documents(scifact_texts[:6])
    assert emb.dtype == np.float32 and emb.shape == (6, 384)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_dense_is_independent_of_batch_padding(dense, scifact_texts):
    short = "Vitamin D deficiency and bone density."
    alone = dense.encode_queries([short])
    with_long = dense.encode_documents([scifact_texts[0], short], batch_size=2)
    assert np.allclose(alone[0], with_long[1], atol=1e-5)
    assert np.array_equal(dense.encode_queries([short]), alone)  # deterministic


def test_dense_similarity_is_meaningful(dense):
    q, related, unrelated = dense.encode_queries([
        "A man is eating food.", "A man is eating a piece of bread.", "The galaxy is far away."])
    assert q @ related > 0.6 > q @ unrelated


def test_dense_input_errors_and_long_text(dense):
    with pytest.raises(ValueError):
        dense.encode_documents([])
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        dense.encode_documents(["a", 1.5])
    long_a, long_b = "cells " * 300 + "alpha", "cells " * 300 + "omega"  # differ after 256 tokens
    a, b = dense.encode_documents([long_a, long_b])
    assert np.allclose(a, b, atol=1e-6)


def test_maxsim_hand_computed():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    d = np.array([[0.6, 0.8], [1.0, 0.0]])
    # q0: max(0.6, 1.0) = 1.0; q1: max(0.8, 0.0) = 0.8
    assert maxsim(q, d) == pytest.approx(1.8)
    assert maxsim(q, np.empty((0, 2))) == 0.0
    assert maxsim_scores(q, [d, d[:1]]).tolist() == pytest.approx([1.8, 1.4])


def test_multivector_tokens_and_maxsim(multi):
    texts = ["stem cells in bone marrow", "stem cell transplantation", "galaxy formation"]
    toks = multi.encode_documents(texts)
    n_tokens = [len(multi.backbone.tokenizer(t)["input_ids"]) for t in texts]
    assert [t.shape for t in toks] == [(n, 384) for n in n_tokens]
    assert all(np.allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5) for t in toks)
    assert maxsim(toks[0], toks[0]) == pytest.approx(len(toks[0]), rel=1e-5)
    q = multi.encode_queries(["bone marrow stem cells"])[0]
    scores = maxsim_scores(q, toks)
    assert scores[0] > scores[1] > scores[2]


def test_projection_from_file_and_from_colbert_style_folder(tmp_path, minilm_path):
    torch.manual_seed(0)
    w = torch.randn(16, 384)
    save_file({"weight": w}, str(tmp_path / "proj.safetensors"))
    enc = MultiVectorEncoder(str(minilm_path), projection=tmp_path / "proj.safetensors", progress=False)
    (t,) = enc.encode_documents(["stem cells"])
    raw = MultiVectorEncoder(str(minilm_path), progress=False).backbone
    with torch.inference_mode():
        b = raw.tokenizer(["stem cells"], return_tensors="pt")
        ref = torch.nn.functional.normalize(raw.model(**b).last_hidden_state[0] @ w.T, dim=-1)
    assert enc.dim == 16 and np.allclose(t, ref.numpy(), atol=1e-5)

    # A sentence-transformers / PyLate layout: the model folder plus 1_Dense/.
    model_dir = tmp_path / "colbert-like"
    model_dir.mkdir()
    for f in minilm_path.iterdir():
        (model_dir / f.name).symlink_to(f)
    (model_dir / "1_Dense").mkdir()
    save_file({"linear.weight": w}, str(model_dir / "1_Dense" / "model.safetensors"))
    folder_enc = MultiVectorEncoder(str(model_dir), progress=False)
    assert folder_enc.dim == 16
    assert np.allclose(folder_enc.encode_documents(["stem cells"])[0], t, atol=1e-6)

    save_file({"weight": torch.randn(8, 100)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="projection"):
        MultiVectorEncoder(str(minilm_path), projection=tmp_path / "bad.safetensors")


def test_int8_path_is_a_fused_int8_graph_that_keeps_the_meaning(dense, scifact_texts):
    import onnx
    fast = DenseEncoder("all-MiniLM-L6-v2", progress=False, int8=True)
    graph = fast.backbone.int8_model.path
    ops = Counter(n.op_type for n in onnx.load(str(graph)).graph.node)
    # one fused int8 attention per layer, the other three matmuls of each layer int8 too;
    # the embedding lookup stays float32
    assert ops["QAttention"] == 6 and ops["MatMulInteger"] == 6 * 3
    assert ops["Attention"] == 0 and ops["MatMul"] == 0
    assert ops["BiasGelu"] == 6 and ops["SkipLayerNormalization"] == 12
    assert ops["EmbedLayerNormalization"] == 1 and ops["QEmbedLayerNormalization"] == 0
    exact, approx = dense.encode_documents(scifact_texts[:8]), fast.encode_documents(scifact_texts[:8])
    np.testing.assert_allclose(np.linalg.norm(approx, axis=1), 1.0, atol=1e-5)
    cos = (exact * approx).sum(axis=1)
    assert cos.min() > 0.98 and not np.allclose(exact, approx, atol=1e-4)  # approximate, not exact
    np.testing.assert_array_equal(approx, fast.encode_documents(scifact_texts[:8]))  # deterministic
    # queries: the fused float32 graph, the PyTorch vectors to float rounding
    fp32 = Counter(n.op_type for n in onnx.load(str(fast.backbone.query_model().path)).graph.node)
    assert fp32["Attention"] == 6 and fp32["MatMulInteger"] == 0
    queries = ["vitamin D", "stem cells and cancer", scifact_texts[0]]
    pytorch = DenseEncoder("all-MiniLM-L6-v2", progress=False, fast_queries=False)
    q_exact, q_fast = pytorch.encode_queries(queries), fast.encode_queries(queries)
    np.testing.assert_allclose(q_fast, q_exact, atol=1e-5)
    # Rankings: tolerances only. int8 kernels differ between CPUs (AVX2 u8s8 with int16
    # saturation, AVX-512 VNNI, ...) and thread counts, so near-ties may swap: "vitamin D" has a
    # top-1 gap of ~0.03 over these 8 abstracts while int8 moves scores by up to ~0.02.
    for qi in range(len(queries)):
        s_exact, s_approx = exact @ q_exact[qi], approx @ q_fast[qi]
        assert np.abs(s_exact - s_approx).max() < 0.06, (qi, s_exact, s_approx)
        if qi > 0:  # "vitamin D" matches none of them: its top 5 lie within 0.015, any order
            top3 = set(np.argsort(-s_exact)[:3].tolist()) & set(np.argsort(-s_approx)[:3].tolist())
            assert len(top3) >= 2, (qi, s_exact, s_approx)  # top-3 overlap
    # a clear winner (the abstract itself, cosine 1 vs <= 0.3) stays first whatever the kernels
    assert np.argmax(exact @ q_exact[2]) == np.argmax(approx @ q_fast[2]) == 0
    # the conversion is cached: a second encoder reuses the files instead of converting again
    mtime = graph.stat().st_mtime_ns
    again = DenseEncoder("all-MiniLM-L6-v2", progress=False, int8=True)
    assert again.backbone.int8_model.path == graph and graph.stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="role"):
        next(dense.backbone.batches(["x"], 1, "x", role="int8"))


def test_queries_run_through_the_float32_graph_with_pytorchs_vectors(dense, multi, scifact_texts):
    import onnx
    from encoders.onnx_graphs import OnnxTransformer
    queries = ["vitamin D", "stem cells and cancer", scifact_texts[1][:300]]
    for fast, exact in ((dense, DenseEncoder("all-MiniLM-L6-v2", progress=False, fast_queries=False)),
                        (multi, MultiVectorEncoder("all-MiniLM-L6-v2", progress=False, fast_queries=False))):
        graph = fast.backbone.query_model()
        assert isinstance(graph, OnnxTransformer) and graph.precision == "fp32"
        assert Counter(n.op_type for n in onnx.load(str(graph.path)).graph.node)["Attention"] == 6
        assert exact.backbone.query_model() is exact.backbone.model  # PyTorch
        got, want = fast.encode_queries(queries), exact.encode_queries(queries)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=2e-5)
        # documents stay in PyTorch: the same function as before, and no graph is needed for them
        np.testing.assert_allclose(fast.encode_documents(queries[:1])[0], want[0], atol=2e-5)


def test_dense_and_multivector_queries_share_one_forward_pass(dense, multi):
    """A reranked hybrid search encodes its query for the dense list and for MaxSim: over one
    model the states are computed once, and the query graph is loaded once."""
    assert dense.backbone.shared_queries is multi.backbone.shared_queries
    assert dense.backbone.query_model() is multi.backbone.query_model()
    side = dense.backbone.shared_queries
    text = "one forward pass for both encoders of a rerank"
    before = side.computed
    vec = dense.encode_queries([text])[0]
    tokens = multi.encode_queries([text])[0]
    assert side.computed == before + 1
    # each the same as computed alone, through its own model (PyTorch: no sharing)
    alone_d = DenseEncoder("all-MiniLM-L6-v2", progress=False, fast_queries=False)
    alone_m = MultiVectorEncoder("all-MiniLM-L6-v2", progress=False, fast_queries=False)
    assert alone_d.backbone.shared_queries is not side
    np.testing.assert_allclose(vec, alone_d.encode_queries([text])[0], atol=2e-5)
    want = alone_m.encode_queries([text])[0]
    assert tokens.shape == want.shape
    np.testing.assert_allclose(tokens, want, atol=2e-5)
    # the dense vector is the mean of the same states the token vectors come from
    np.testing.assert_allclose(vec, tokens.mean(0) / np.linalg.norm(tokens.mean(0)), atol=0.05)


def test_int8_queries_share_one_int8_pass_and_keep_the_meaning(dense, multi, scifact_texts):
    """query_int8: dense and multivector queries through the int8 graph (approximate), still one
    pass for both encoders, and never mixed up with the float32 encoders' states."""
    from encoders.onnx_graphs import OnnxTransformer
    d8 = DenseEncoder("all-MiniLM-L6-v2", progress=False, query_int8=True)
    m8 = MultiVectorEncoder("all-MiniLM-L6-v2", progress=False, query_int8=True)
    graph = d8.backbone.query_model()
    assert isinstance(graph, OnnxTransformer) and graph.precision == "int8"
    assert m8.backbone.query_model() is graph
    assert d8.backbone.shared_queries is m8.backbone.shared_queries
    assert d8.backbone.shared_queries is not dense.backbone.shared_queries  # other states
    queries = ["vitamin D", "stem cells and cancer", scifact_texts[1][:300]]
    side = d8.backbone.shared_queries
    before = side.computed
    q8, t8 = d8.encode_queries(queries), m8.encode_queries(queries)
    assert side.computed == before + len(queries)
    q32, t32 = dense.encode_queries(queries), multi.encode_queries(queries)
    cos = (q8 * q32).sum(axis=1)
    assert cos.min() > 0.97 and not np.allclose(q8, q32, atol=1e-4)  # approximate, not the float32 vectors
    for a, b in zip(t8, t32):
        assert a.shape == b.shape and (a * b).sum(axis=1).min() > 0.9
    # rankings over documents encoded in float32: the abstract itself stays first
    docs = dense.encode_documents(scifact_texts[:8])
    assert np.argmax(docs @ q8[2]) == np.argmax(docs @ q32[2]) == 1
    with pytest.raises(ValueError, match="fast_queries"):
        DenseEncoder("all-MiniLM-L6-v2", progress=False, query_int8=True, fast_queries=False)


def test_a_query_graph_that_disagrees_with_pytorch_is_not_used(tmp_path, monkeypatch, minilm_path, caplog):
    """A stale or damaged cached graph must not change query vectors: it is checked on a probe
    text when it loads and PyTorch runs instead."""
    import shutil

    import onnx
    from onnx import numpy_helper

    from encoders.onnx_graphs import graph_paths
    cached = graph_paths(minilm_path)
    for path in cached.values():
        shutil.copy(path, tmp_path / path.name)
    model = onnx.load(str(tmp_path / cached["fp32"].name))
    big = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    big.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(big) * 1.5, big.name))
    onnx.save(model, str(tmp_path / cached["fp32"].name))
    monkeypatch.setenv("LSR_ONNX_CACHE", str(tmp_path))
    enc = DenseEncoder("all-MiniLM-L6-v2", progress=False)
    with caplog.at_level("WARNING", logger="encoders.transformer"):
        got = enc.encode_queries(["vitamin D"])
    assert enc.backbone.query_model() is enc.backbone.model
    assert "disagrees with PyTorch" in caplog.text
    want = DenseEncoder("all-MiniLM-L6-v2", progress=False, fast_queries=False).encode_queries(["vitamin D"])
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_onnx_cache_location_and_errors(tmp_path, monkeypatch, minilm_path):
    from encoders.models import models_dir
    from encoders.onnx_graphs import OnnxTransformer, cache_dirs, graph_paths
    assert cache_dirs()[0] == models_dir() / "onnx"
    monkeypatch.setenv("LSR_ONNX_CACHE", str(tmp_path / "onnx"))
    assert cache_dirs() == [tmp_path / "onnx"]
    with pytest.raises(ValueError, match="local model folder"):
        graph_paths(tmp_path / "no-such-model")
    with pytest.raises(ValueError, match="precision"):
        OnnxTransformer(minilm_path, "bf16")


def test_fetch_models_builds_the_onnx_graphs_ahead_of_time(minilm_path, capsys):
    from encoders.fetch_models import main
    from encoders.models import models_dir
    from encoders.onnx_graphs import graph_paths
    assert main(["all-MiniLM-L6-v2", "--onnx", "all-MiniLM-L6-v2"]) == 0
    built = graph_paths(minilm_path)
    out = capsys.readouterr().out
    for precision, path in built.items():
        assert path.parent == models_dir() / "onnx" and path.is_file()
        assert f"all-MiniLM-L6-v2 {precision}: {path}" in out


def test_onnx_conversion_falls_back_to_the_next_writable_cache(tmp_path, monkeypatch, minilm_path):
    """An unusable first cache (here a file where a directory should be; in the Docker image a
    read-only models dir) is skipped; the conversion lands whole in the next one."""
    import encoders.onnx_graphs as graphs
    blocked = tmp_path / "blocked"
    blocked.write_text("not a directory")
    monkeypatch.setattr(graphs, "cache_dirs", lambda: [blocked, tmp_path / "fallback"])
    paths = graphs.graph_paths(minilm_path)
    assert {p.parent for p in paths.values()} == {tmp_path / "fallback"}
    assert sorted(f.name for f in (tmp_path / "fallback").iterdir()) == sorted(p.name for p in paths.values())
    with pytest.raises(OSError, match="cannot write the ONNX graphs"):
        graphs.graph_paths(minilm_path, cache_dir=blocked)
