import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM

from encoders.base import SparseEncoder, validate_csr
from encoders.batching import token_ids
from encoders.models import load_model, load_tokenizer
from encoders.profiling import measure_peak
from encoders.sparse_head import max_pool, naive_splade, pack_weight
from encoders.splade import SpladeEncoder


@pytest.fixture(scope="module")
def splade(splade_tiny_path):
    return SpladeEncoder("splade-tiny", progress=False)


@pytest.fixture(scope="module")
def naive_model(splade_tiny_path):
    return load_model("splade-tiny", AutoModelForMaskedLM), load_tokenizer("splade-tiny")


def _naive(naive_model, texts):
    model, tok = naive_model
    b = tok(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.inference_mode():
        return naive_splade(model(**b).logits, b["attention_mask"])


def test_chunked_pooling_equals_naive_full_logits(splade, naive_model, scifact_texts):
    texts = scifact_texts[:6] + ["short query", "a"]  # mixed lengths: real padding
    ref = _naive(naive_model, texts)
    ids = splade._tokenize(texts, 512)
    for chunk in (61, 1024):  # 61 makes chunks straddle text boundaries
        splade.chunk_tokens = chunk
        got = splade.weights(ids)
        assert torch.allclose(got, ref, atol=1e-5, rtol=0), (got - ref).abs().max()
    splade.chunk_tokens = 1024
    csr = splade.encode_documents(texts)
    assert np.allclose(csr.toarray(), ref.numpy(), atol=1e-5)


def test_max_pool_handles_empty_segments():
    torch.manual_seed(0)
    w, states = torch.randn(50, 4), torch.randn(5, 4)
    out = max_pool(states, [2, 0, 3], w, torch.zeros(50), chunk_tokens=2)
    ref0 = torch.log1p(torch.relu((states[:2] @ w.T).amax(0)))
    assert torch.allclose(out[0], ref0) and torch.all(out[1] == 0)


def test_chunked_pooling_uses_far_less_memory_than_naive(splade, naive_model, scifact_texts):
    texts = scifact_texts[:16]
    ids = splade._tokenize(texts, 512)
    ref, naive_mb = measure_peak(lambda: _naive(naive_model, texts))
    got, chunked_mb = measure_peak(lambda: splade.weights(ids))
    n_tokens = sum(map(len, ids))
    print(f"peak RSS rise, {len(texts)} docs / {n_tokens} tokens: naive {naive_mb:.0f} MiB, "
          f"chunked {chunked_mb:.0f} MiB")
    assert torch.allclose(got, ref, atol=1e-5)
    # The naive path holds at least one batch x seq x vocab float32 tensor.
    assert naive_mb > n_tokens * splade.dim * 4 / 2**20
    assert chunked_mb < naive_mb / 3


def test_output_is_canonical_csr_and_protocol(splade, scifact_texts):
    assert isinstance(splade, SparseEncoder) and splade.dim == 30522
    m = splade.encode_documents(scifact_texts[:5])
    validate_csr(m, dim=30522, n_rows=5)
    assert np.all(m.data > 0) and np.all(m.getnnz(axis=1) > 20)


def test_input_errors(splade):
    with pytest.raises(ValueError):
        splade.encode_documents([])
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        splade.encode_queries(["ok", None])
    with pytest.raises(ValueError, match="batch_size"):
        splade.encode_documents(["x"], batch_size=0)


def test_empty_text_gives_empty_row_without_disturbing_others(splade):
    texts = ["sparse retrieval", "", "   ", "protein folding"]
    m = splade.encode_queries(texts)
    assert m.getnnz(axis=1).tolist()[1:3] == [0, 0]
    alone = splade.encode_queries(["sparse retrieval", "protein folding"])
    assert np.allclose(m[[0, 3]].toarray(), alone.toarray(), atol=1e-6)


def test_long_text_truncated_to_model_max_length(splade):
    base = " ".join(f"word{i} protein" for i in range(400))  # well over 512 tokens
    long1, long2 = base + " cancer " * 2000, base + " galaxy " * 3000
    assert len(splade.tokenizer(long1)["input_ids"]) > 2000
    m = splade.encode_documents([long1, long2])
    # Both differ only after token 512, so truncation makes them identical (to float rounding:
    # two rows of one batch may meet different GEMM tiles; "cancer"/"galaxy" would differ by ~1).
    assert m.nnz > 0
    np.testing.assert_allclose(m[0].toarray(), m[1].toarray(), atol=1e-5)


def test_deterministic_and_independent_of_batching_and_order(splade, scifact_texts):
    texts = scifact_texts[:10]
    a = splade.encode_documents(texts, batch_size=4)
    b = splade.encode_documents(texts, batch_size=4)
    assert (a != b).nnz == 0
    c = splade.encode_documents(texts[::-1], batch_size=1)[::-1]
    assert np.allclose(a.toarray(), c.toarray(), atol=1e-5)


def test_top_k_pruning_keeps_strongest_terms(splade_tiny_path, splade, scifact_texts):
    pruned_enc = SpladeEncoder("splade-tiny", top_k_documents=8, top_k_queries=3, progress=False)
    full = splade.encode_documents(scifact_texts[:4])
    pruned = pruned_enc.encode_documents(scifact_texts[:4])
    assert pruned.getnnz(axis=1).tolist() == [8] * 4
    for i in range(4):
        top = sorted(full[i].data, reverse=True)[:8]
        assert np.allclose(sorted(pruned[i].data, reverse=True), top)
    assert pruned_enc.encode_queries(["learned sparse retrieval models"]).nnz == 3


def test_decode_gives_meaningful_terms(splade):
    m = splade.encode_queries(["what is learned sparse retrieval"])
    terms = splade.decode(m[0])
    weights = [w for _, w in terms]
    assert weights == sorted(weights, reverse=True) and len(terms) == m.nnz
    assert {"retrieval", "sparse", "learned"} <= {t for t, _ in terms[:5]}


def test_progress_bar_is_switchable(splade_tiny_path, capfd):
    SpladeEncoder("splade-tiny", progress=True).encode_queries(["a b", "c d"], batch_size=1)
    assert "SPLADE queries" in capfd.readouterr().err
    SpladeEncoder("splade-tiny", progress=False).encode_queries(["a b", "c d"], batch_size=1)
    assert "SPLADE" not in capfd.readouterr().err


def test_sliced_tokenisation_equals_one_call(splade, scifact_texts):
    tok = splade.tokenizer
    assert token_ids(tok, scifact_texts, slice_size=5, truncation=True, max_length=64) == \
        tok(scifact_texts, truncation=True, max_length=64)["input_ids"]


@pytest.mark.skipif(pack_weight(torch.zeros(1, 1)) is None, reason="C++ extension not built")
@pytest.mark.parametrize("vocab,lengths", [(50, [2, 0, 3]), (37, [13, 1, 6, 0, 7]), (1000, [64, 5]),
                                           (100, [20, 23, 11, 15])])
def test_fused_head_equals_chunked_reference(vocab, lengths):
    # vocab sizes that are not multiples of 16, texts of 0, < 6 and many tokens, chunks of 4;
    # lengths that reach every pass of the kernels (AVX2: 6 and 1 tokens; AVX-512: 12, 8, 4, 2, 1)
    g = torch.Generator().manual_seed(vocab)
    w, bias = torch.randn(vocab, 24, generator=g), torch.randn(vocab, generator=g)
    states = torch.randn(sum(lengths), 24, generator=g)
    fused = max_pool(states, lengths, w, bias, packed=pack_weight(w))
    ref = max_pool(states, lengths, w, bias, chunk_tokens=4)
    assert torch.allclose(fused, ref, atol=1e-5, rtol=0), (fused - ref).abs().max()
    assert fused[torch.tensor(lengths) == 0].abs().sum() == 0


@pytest.mark.skipif(pack_weight(torch.zeros(1, 1)) is None, reason="C++ extension not built")
def test_fused_head_rejects_inconsistent_arrays():
    from encoders.native import MODULE as lsr_native  # whichever build variant loaded
    w = torch.randn(20, 8)
    packed, states = pack_weight(w), np.zeros((5, 8), np.float32)
    with pytest.raises(ValueError, match="hidden size"):
        lsr_native.splade_max_logits(np.zeros((5, 4), np.float32), packed, np.array([0, 5]), 20, 1)
    with pytest.raises(ValueError, match="vocab"):
        lsr_native.splade_max_logits(states, packed, np.array([0, 5]), 33, 1)
    with pytest.raises(ValueError, match="offsets"):
        lsr_native.splade_max_logits(states, packed, np.array([0, 6]), 20, 1)
    with pytest.raises(ValueError, match="offsets"):
        lsr_native.splade_max_logits(states, packed, np.array([3, 2]), 20, 1)


def test_restricted_vocabulary_keeps_exact_weights_on_kept_terms(splade_tiny_path, scifact_texts):
    enc = SpladeEncoder(splade_tiny_path, progress=False)
    calib, held_out = scifact_texts[:8], scifact_texts[8:12]
    vocab = enc.calibrate_vocabulary(calib)
    full_calib = enc.encode_documents(calib)
    assert np.array_equal(vocab, np.unique(full_calib.indices))  # every active term, nothing else
    full = enc.encode_documents(held_out).toarray()
    enc.set_vocabulary(vocab)
    approx = enc.encode_documents(held_out, batch_size=1).toarray()  # one text per batch
    for i, text in enumerate(held_out):
        # kept: the calibrated terms and the text's own tokens; everything else is zero
        own = np.array(enc._tokenize([text], enc.max_length)[0])
        kept = np.union1d(vocab, own)
        outside = np.setdiff1d(np.arange(enc.dim), kept)
        assert np.all(approx[i, outside] == 0)
        assert np.allclose(approx[i, kept], full[i, kept], atol=1e-5)  # full ran padded in a batch of 4
    # On the calibration texts themselves the restricted head loses nothing (a smaller head
    # matrix is a different GEMM shape, so float rounding only, as above).
    assert np.allclose(enc.encode_documents(calib).toarray(), full_calib.toarray(), atol=1e-5)
    enc.set_vocabulary(None)
    assert np.allclose(enc.encode_documents(held_out).toarray(), full, atol=1e-6)


def test_vocabulary_file_and_bad_vocabularies(splade_tiny_path, tmp_path):
    path = tmp_path / "vocab.npy"
    np.save(path, np.array([2000, 1000, 2000], dtype=np.int32))
    enc = SpladeEncoder(splade_tiny_path, progress=False, vocabulary=str(path))
    assert enc.vocabulary.tolist() == [1000, 2000]
    for bad, msg in (([], "non-empty"), ([[1, 2]], "1-d"), ([0.5], "integer"), ([-1], r"\[0, "),
                     ([enc.dim], r"\[0, ")):
        with pytest.raises(ValueError, match=msg):
            enc.set_vocabulary(np.array(bad))


def test_queries_run_through_the_onnx_graph_with_pytorchs_weights():
    """A lone SPLADE query pays PyTorch's per-op overhead on a small model: queries go through
    the fused float32 ONNX graph plus the model's own MLM transform, checked on a probe when
    it loads; the weights are PyTorch's to float rounding, documents stay in PyTorch."""
    from encoders.splade import SpladeEncoder
    fast = SpladeEncoder("splade-tiny", progress=False)
    exact = SpladeEncoder("splade-tiny", progress=False, fast_queries=False)
    assert fast.query_hidden() is not fast.head.hidden  # the ONNX path loaded and agreed
    assert exact.query_hidden() == exact.head.hidden
    queries = ["vitamin D deficiency and bone fractures", "stem cells", "a"]
    got, want = fast.encode_queries(queries), exact.encode_queries(queries)
    for i in range(len(queries)):
        g, w = got[i].toarray().ravel(), want[i].toarray().ravel()
        np.testing.assert_allclose(g, w, atol=1e-4)
        top = lambda v: set(np.argsort(-v)[:10][v[np.argsort(-v)[:10]] > 0.05])  # noqa: E731
        assert top(g) == top(w)
    np.testing.assert_array_equal(fast.encode_documents(queries[:2]).toarray(),
                                  exact.encode_documents(queries[:2]).toarray())
