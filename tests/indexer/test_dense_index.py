"""Dense search: an int8 first pass (native kernel) and an exact float32 re-score give the
exact top k, as a plain float32 scan would."""
import numpy as np
import pytest

from indexer import Collection
from indexer.dense_index import DenseVectors, candidates, quantize
from indexer.native import native_module


def unit_rows(n, d, seed):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_quantize_rounds_each_row_to_its_own_scale():
    v = np.vstack([unit_rows(50, 33, 0), np.zeros((1, 33), np.float32)])
    codes, scales = quantize(v)
    assert codes.dtype == np.int8 and scales.dtype == np.float32 and scales[-1] == 1.0
    assert np.abs(codes).max() == 127 and not codes[-1].any()
    assert np.all(np.abs(codes * scales[:, None] - v) <= scales[:, None] / 2 * (1 + 1e-5) + 1e-7)


@pytest.mark.parametrize("d", [7, 100, 384, 3000])  # the vector loop's tail; int32 blocks past 2048
def test_the_native_first_pass_approximates_the_float_scan(d):
    native = native_module()
    if native is None:
        pytest.skip("no C++ extension: the first pass is the exact float32 scan")
    v, q = unit_rows(500, d, 1), unit_rows(3, d, 2)
    codes, scales = quantize(v)
    got = native.dense_i8_scores(codes, scales, q)
    assert got.shape == (3, 500) and got.dtype == np.float32
    # |error| <= sum_j |q_j| * scale / 2 (codes) + the int16 rounding of the query
    bound = np.abs(q).sum(axis=1, keepdims=True) * scales[None, :] / 2 * 1.01 + 1e-4
    assert np.all(np.abs(got - q @ v.T) <= bound)
    with pytest.raises(ValueError, match="dimensions"):
        native.dense_i8_scores(codes, scales, unit_rows(1, d + 1, 3))


def test_rescored_candidates_are_the_exact_top_k():
    v, q = unit_rows(4000, 64, 3), unit_rows(1, 64, 4)[0]
    dv = DenseVectors(v)  # codes computed, as for a segment written before they were stored
    first = dv.first_pass(q[None])[0]
    exact = v @ q
    for k in (1, 10, 100):
        cand = np.argsort(-first)[:candidates(k)]
        top = cand[np.argsort(-dv.rescore(cand, q))[:k]]
        assert set(top) == set(np.argsort(-exact)[:k])
        np.testing.assert_allclose(dv.rescore(top, q), exact[top], rtol=1e-6)


def test_collection_dense_search_equals_a_float_scan(tmp_path):
    """A sealed segment (int8 first pass) and the write buffer (float32) together, with and
    without a filter: the same ids and scores as numpy over every vector."""
    n, d = 3000, 48
    v = unit_rows(n, d, 5)
    # near-duplicates: scores close together, where an approximate first pass could go wrong
    v[1000:1500] = v[:500] + 0.01 * unit_rows(500, d, 6)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ids = [f"d{i}" for i in range(n)]
    meta = [{"half": i % 2} for i in range(n)]
    coll = Collection.create(tmp_path, "c", {"e": {"kind": "dense", "dim": d}}, maintenance=False)
    coll.upsert(ids[:2500], {"e": v[:2500]}, metadata=meta[:2500])
    coll.flush()
    coll.upsert(ids[2500:], {"e": v[2500:]}, metadata=meta[2500:])
    for qi in range(5):
        q = v[qi * 7] + 0.05 * unit_rows(1, d, 10 + qi)[0]
        q = (q / np.linalg.norm(q)).astype(np.float32)
        exact = v @ q
        for flt, rows in ((None, np.arange(n)), ({"half": 1}, np.arange(1, n, 2))):
            hits = coll.search_dense(q, k=50, filter=flt)
            want = rows[np.argsort(-exact[rows], kind="stable")[:50]]
            assert {h.id for h in hits} == {ids[i] for i in want}
            np.testing.assert_allclose([h.score for h in hits], np.sort(exact[want])[::-1], rtol=1e-5, atol=1e-6)
    coll.close()
