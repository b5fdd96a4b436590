import numpy as np
import pytest
import scipy.sparse as sp

from indexer import ExactIndex, IndexFormatError, SeismicIndex

from .conftest import random_csr


def brute_force(docs, qi, qv, k):
    q = np.zeros(docs.shape[1], np.float64)
    q[qi] = qv
    scores = docs.astype(np.float64) @ q
    touched = np.flatnonzero(docs[:, qi].getnnz(axis=1) > 0)
    order = touched[np.lexsort((touched, -scores[touched]))]
    return order[:k], scores[order[:k]]


@pytest.mark.parametrize("backend", ["native", "numba"])
def test_exact_matches_brute_force_including_signed_values(backend):
    rng = np.random.default_rng(1)
    docs = random_csr(400, 300, 0.05, seed=4)
    docs.data = (docs.data - 0.5).astype(np.float32)  # signed values are allowed here
    idx = ExactIndex.build(docs)
    for _ in range(20):
        qi = rng.choice(300, size=8, replace=False)
        qv = rng.normal(size=8).astype(np.float32)
        ids, scores = idx.search(qi, qv, k=7, backend=backend)
        eids, escores = brute_force(docs, qi, qv, 7)
        np.testing.assert_allclose(scores, escores, rtol=1e-5, atol=1e-6)
        assert set(ids.tolist()) == set(eids.tolist()) or np.allclose(np.sort(scores), np.sort(escores))


def test_exact_native_and_numba_identical(synthetic):
    docs, queries = synthetic
    idx = ExactIndex.build(docs)
    a = idx.search_batch(queries, k=10, backend="native")
    b = idx.search_batch(queries, k=10, backend="numba")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_query_normalisation_sorts_and_sums_duplicates(synthetic):
    docs, _ = synthetic
    idx = ExactIndex.build(docs)
    a = idx.search([5, 3, 5, 9], [0.5, 1.0, 0.5, 2.0], k=5)
    b = idx.search(np.array([3, 5, 9], np.int64), np.array([1.0, 1.0, 2.0], np.float64), k=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("cls", [ExactIndex, SeismicIndex])
@pytest.mark.parametrize("q_idx, q_val, k, match", [
    ([], [], 10, "empty query"),
    ([1, 2], [1.0], 10, "2 indices but 1 values"),
    ([1, 30522], [1.0, 1.0], 10, r"in \[0, 30522\)"),
    ([-1], [1.0], 10, r"in \[0, 30522\)"),
    ([1], [float("nan")], 10, "NaN"),
    ([1.5], [1.0], 10, "integers"),
    ([1], ["a"], 10, "numeric"),
    ([1], [1.0], 0, "k must be positive"),
    ([1], [1.0], -3, "k must be positive"),
    ([[1]], [[1.0]], 10, "1-D"),
])
def test_bad_queries_raise_clear_errors(synthetic, cls, q_idx, q_val, k, match):
    docs, _ = synthetic
    idx = cls.build(docs)
    with pytest.raises(ValueError, match=match):
        idx.search(q_idx, q_val, k=k)


@pytest.mark.parametrize("bad, match", [
    (sp.csr_matrix((0, 10), dtype=np.float32), "empty collection"),
    (np.ones((3, 3), np.float32), "scipy.sparse"),
    (sp.csr_matrix(np.array([[np.nan, 1.0]], np.float32)), "NaN"),
    (sp.csr_matrix(np.array([[-1.0, 1.0]], np.float32)), "non-negative"),
    (sp.csr_matrix(np.array([[1 + 2j]], dtype=np.complex64)), "numeric"),
])
def test_bad_documents_raise_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        SeismicIndex.build(bad)


def test_bad_search_params_and_build_params(synthetic):
    docs, _ = synthetic
    idx = SeismicIndex.build(docs)
    with pytest.raises(ValueError, match="query_cut"):
        idx.search([1], [1.0], query_cut=0)
    with pytest.raises(ValueError, match="heap_factor"):
        idx.search([1], [1.0], heap_factor=1.5)
    with pytest.raises(ValueError, match="unknown Seismic parameter"):
        SeismicIndex.build(docs, n_posting=10)
    with pytest.raises(ValueError, match="summary_energy"):
        SeismicIndex.build(docs, summary_energy=0)
    with pytest.raises(ValueError, match="empty query at row 1"):
        idx.search_batch(sp.csr_matrix(np.array([[1.0] + [0] * 99, [0] * 100], np.float32)))


@pytest.mark.parametrize("cls", [ExactIndex, SeismicIndex])
@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_roundtrip(tmp_path, synthetic, cls, mmap):
    docs, queries = synthetic
    idx = cls.build(docs)
    idx.save(tmp_path / "idx")
    again = cls.load(tmp_path / "idx", mmap=mmap)
    a = idx.search_batch(queries, k=10)
    b = again.search_batch(queries, k=10)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    idx.save(tmp_path / "idx")  # overwriting an existing index is atomic too
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_load_rejects_old_versions_corruption_and_wrong_kind(tmp_path, synthetic):
    import json
    docs, _ = synthetic
    SeismicIndex.build(docs).save(tmp_path / "s")
    with pytest.raises(IndexFormatError, match="'seismic' index, not 'exact'"):
        ExactIndex.load(tmp_path / "s")
    victim = tmp_path / "s" / "block_docs.npy"
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with pytest.raises(IndexFormatError, match="checksum"):
        SeismicIndex.load(tmp_path / "s")
    victim.write_bytes(bytes(raw[:-4]))
    with pytest.raises(IndexFormatError, match="truncated"):
        SeismicIndex.load(tmp_path / "s")
    mf = tmp_path / "s" / "manifest.json"
    m = json.loads(mf.read_text())
    m["format_version"] = 0
    mf.write_text(json.dumps(m))
    with pytest.raises(IndexFormatError, match="format version 0"):
        SeismicIndex.load(tmp_path / "s")
    with pytest.raises(IndexFormatError, match="no manifest"):
        SeismicIndex.load(tmp_path / "nothing")


def test_document_csr_without_copy_reuses_only_canonical_float32_and_never_modifies():
    from indexer.validation import as_document_csr
    good = sp.csr_matrix(np.array([[0, 1.5, 0, 2], [3, 0, 0, 0]], dtype=np.float32))
    assert as_document_csr(good, copy=False) is good
    assert as_document_csr(good) is not good  # the default copies
    # anything else is copied and canonicalised, the caller's matrix left as it was
    dup = sp.csr_matrix((np.array([1, 2, 5], np.float32), np.array([2, 2, 0]), np.array([0, 2, 3])), shape=(2, 3))
    before = (dup.data.copy(), dup.indices.copy())
    out = as_document_csr(dup, copy=False)
    assert out is not dup and out.nnz == 2 and out[0, 2] == 3
    np.testing.assert_array_equal(dup.data, before[0])
    np.testing.assert_array_equal(dup.indices, before[1])
    zeros = sp.csr_matrix((np.array([0, 2], np.float32), np.array([0, 1]), np.array([0, 2])), shape=(1, 2))
    assert as_document_csr(zeros, copy=False).nnz == 1 and zeros.nnz == 2
    f64 = good.astype(np.float64)
    assert as_document_csr(f64, copy=False).dtype == np.float32
    with pytest.raises(ValueError, match="non-negative"):
        as_document_csr(-good, copy=False)


def test_global_pruning_keeps_the_largest_postings_per_budget():
    from indexer.seismic.config import SeismicParams
    from indexer.seismic.pruning import prune_postings
    docs = random_csr(400, 60, density=0.2, seed=3)
    csc = docs.tocsc()
    p = SeismicParams.from_dict({"n_postings": 20, "max_fraction": 1.5})
    before = csc.data.copy()
    ptr, kept = prune_postings(csc.indptr.astype(np.int64), csc.indices.astype(np.int32), csc.data, p)
    # reference: every posting at or above the (20 x 60)-th largest value, then the cap of 30 per list
    vals = np.sort(csc.data)[::-1]
    threshold = vals[20 * 60 - 1]
    for t in range(60):
        a, b = csc.indptr[t], csc.indptr[t + 1]
        col_docs, col_vals = csc.indices[a:b], csc.data[a:b]
        want = col_docs[col_vals >= threshold]
        if len(want) > 30:  # the 30 largest, ties to the smaller doc id
            order = np.lexsort((col_docs, -col_vals))[:30]
            want = np.sort(col_docs[order])
        np.testing.assert_array_equal(kept[ptr[t]:ptr[t + 1]], np.sort(want))
    np.testing.assert_array_equal(csc.data, before)  # the input is read, not changed


def test_large_arrays_read_into_memory_equal_what_was_saved(tmp_path):
    # load(mmap=False) reads arrays of 4 MiB and more into mappings advised for huge pages
    # (storage._load_resident); the values, dtypes and shapes must be those saved
    from indexer.storage import load_arrays, save_arrays
    rng = np.random.default_rng(0)
    arrays = {"i64": np.arange(700_000, dtype=np.int64), "f16": rng.random((3, 900_000)).astype(np.float16),
              "u8": rng.integers(0, 256, 5_000_000, dtype=np.uint8), "small": np.arange(5, dtype=np.uint16)}
    save_arrays(tmp_path / "a", "test", arrays, {})
    got, _ = load_arrays(tmp_path / "a", "test", mmap=False)
    assert set(got) == set(arrays)
    for name, want in arrays.items():
        assert got[name].dtype == want.dtype and got[name].shape == want.shape
        np.testing.assert_array_equal(got[name], want)
