"""The κ-NN graph of a Seismic index (indexer/seismic/knn.py) and the search's refinement with it."""
import numpy as np
import pytest

from indexer import ExactIndex, SeismicIndex
from indexer.errors import InvalidInputError
from indexer.seismic.knn import ARRAY
from indexer.seismic.summaries import SUMMARY_LAYOUT
from indexer.storage import IndexFormatError, save_arrays

from .conftest import random_csr
from .test_seismic import EXACT_PARAMS, recall


@pytest.fixture(scope="module")
def graph_index(synthetic):
    docs, _ = synthetic
    return SeismicIndex.build(docs, n_postings=300, knn=8)


def test_native_and_numba_kernels_agree_with_expansion(synthetic, graph_index):
    _, queries = synthetic
    idx = graph_index
    for qc, hf, kx in [(2, 0.8, 8), (3, 0.5, 4), (10, 1.0, 8), (3, 0.9, 100)]:
        for i in range(queries.shape[0]):
            q = queries[i]
            a = idx.search(q.indices, q.data, k=10, query_cut=qc, heap_factor=hf, knn_expand=kx, backend="native")
            b = idx.search(q.indices, q.data, k=10, query_cut=qc, heap_factor=hf, knn_expand=kx, backend="numba")
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
        na = idx.search_batch(queries, k=10, query_cut=qc, heap_factor=hf, knn_expand=kx, backend="native")
        nb = idx.search_batch(queries, k=10, query_cut=qc, heap_factor=hf, knn_expand=kx, backend="numba")
        np.testing.assert_array_equal(na[0], nb[0])
        np.testing.assert_array_equal(na[1], nb[1])


@pytest.mark.parametrize("n_threads", [1, 2])
def test_expansion_never_lowers_a_score_or_recall(synthetic, graph_index, n_threads):
    docs, queries = synthetic
    exact, _ = ExactIndex.build(docs).search_batch(queries, k=10)
    for qc in (2, 3, 5):
        base_ids, base = graph_index.search_batch(queries, k=10, query_cut=qc, heap_factor=0.8,
                                                  n_threads=n_threads)
        ids, sc = graph_index.search_batch(queries, k=10, query_cut=qc, heap_factor=0.8, knn_expand=8,
                                           n_threads=n_threads)
        # a superset of documents is scored, so every rank's score can only rise
        assert np.all(sc >= base)
        assert recall(ids, exact) >= recall(base_ids, exact)
    # and on this collection it pays: a small query_cut recovers most of what it missed
    low = recall(graph_index.search_batch(queries, k=10, query_cut=2, heap_factor=0.8)[0], exact)
    low_x = recall(graph_index.search_batch(queries, k=10, query_cut=2, heap_factor=0.8, knn_expand=8)[0], exact)
    assert low_x >= low + 0.05


def test_neighbours_are_near_and_never_the_document_itself(synthetic):
    docs, _ = synthetic
    docs = docs[:500]
    idx = SeismicIndex.build(docs, knn=5, knn_source="search", knn_query_cut=100, knn_heap_factor=1.0,
                             **EXACT_PARAMS)
    assert idx.knn == 5 and idx.arrays[ARRAY].dtype == np.uint32
    g = idx.neighbours()  # input rows (the stored graph is in the index's own numbering)
    dense = docs.toarray()
    sims = dense @ dense.T
    np.fill_diagonal(sims, -np.inf)
    overlap = []
    for d in range(docs.shape[0]):
        found = set(g[d].tolist()) - {d}
        if docs[d].nnz:
            assert len(found) == 5  # every document here has five other documents sharing a term
        truth = set(np.argsort(-sims[d], kind="stable")[:5].tolist())
        overlap.append(len(found & truth) / 5)
    assert np.mean(overlap) >= 0.98  # exact search, up to ties


def test_expansion_keeps_search_exact_without_pruning():
    docs = random_csr(150, 200, 0.08, 11)
    idx = SeismicIndex.build(docs, centroid_fraction=0.3, min_cluster_size=1, knn=4, **EXACT_PARAMS)
    ex = ExactIndex.build(docs)
    rng = np.random.default_rng(1)
    for _ in range(10):
        qi = rng.choice(200, size=8, replace=False)
        qv = rng.random(8).astype(np.float32) + 0.01
        ids, scores = idx.search(qi, qv, k=7, query_cut=200, heap_factor=1.0, knn_expand=4)
        _, escores = ex.search(qi, qv, k=7)
        np.testing.assert_allclose(scores, escores, rtol=1e-5, atol=1e-6)


def test_a_graph_round_trips_through_save_and_load(synthetic, graph_index, tmp_path):
    _, queries = synthetic
    graph_index.save(tmp_path / "g")
    for mmap in (True, False):
        loaded = SeismicIndex.load(tmp_path / "g", mmap=mmap)
        assert loaded.knn == 8 and loaded.params.knn == 8
        np.testing.assert_array_equal(loaded.arrays[ARRAY], graph_index.arrays[ARRAY])
        for backend in ("native", "numba"):
            a = loaded.search_batch(queries, k=10, query_cut=3, heap_factor=0.8, knn_expand=8, backend=backend)
            b = graph_index.search_batch(queries, k=10, query_cut=3, heap_factor=0.8, knn_expand=8, backend=backend)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
    assert graph_index.space_usage()["knn_bytes"] == graph_index.n_docs * 8 * 4


def test_an_index_saved_before_graphs_loads_and_ignores_expansion(synthetic, tmp_path):
    docs, queries = synthetic
    idx = SeismicIndex.build(docs[:400], n_postings=100)
    assert ARRAY not in idx.arrays and idx.knn == 0
    params = {n: v for n, v in idx.params.to_dict().items() if not n.startswith("knn")}
    save_arrays(tmp_path / "old", "seismic", idx.arrays,
                {"n_docs": idx.n_docs, "dim": idx.dim, "params": params, "summary_layout": SUMMARY_LAYOUT})
    old = SeismicIndex.load(tmp_path / "old")
    assert old.knn == 0 and old.space_usage()["knn_bytes"] == 0
    for backend in ("native", "numba"):
        a = old.search_batch(queries, k=10, query_cut=3, heap_factor=0.8, knn_expand=8, backend=backend)
        b = idx.search_batch(queries, k=10, query_cut=3, heap_factor=0.8, backend=backend)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("source", ["blocks", "search"])
def test_a_graph_added_later_is_the_graph_a_build_makes(synthetic, source):
    docs, _ = synthetic
    plain = SeismicIndex.build(docs[:600], n_postings=200)
    built = SeismicIndex.build(docs[:600], n_postings=200, knn=6, knn_source=source)
    added = plain.with_knn_graph(6, source=source)
    np.testing.assert_array_equal(added.arrays[ARRAY], built.arrays[ARRAY])
    assert added.params == built.params and ARRAY not in plain.arrays
    assert built.params.knn_source == source


def test_block_mate_neighbours_are_scored_block_mates_best_first(synthetic):
    """knn_source "blocks": each neighbour shares a block with the document in the list of one
    of its three largest terms, the neighbours are the best such by exact inner product (ties
    by id), the document itself only pads, and the graph is the same on every build."""
    from indexer.seismic.blocking import top_terms
    docs, _ = synthetic
    docs = docs[:800]
    idx = SeismicIndex.build(docs, n_postings=150, knn=6)
    assert idx.params.knn_source == "blocks"
    g = idx.arrays[ARRAY].reshape(-1, 6).astype(np.int64)
    np.testing.assert_array_equal(g, SeismicIndex.build(docs, n_postings=150, knn=6).arrays[ARRAY].reshape(-1, 6))
    a = idx.arrays
    fwd_ptr, fwd_terms, fwd_vals = idx.forward()
    dense = np.zeros((idx.n_docs, idx.dim), np.float32)
    for d in range(idx.n_docs):
        lo, hi = fwd_ptr[d], fwd_ptr[d + 1]
        dense[d, fwd_terms[lo:hi]] = np.asarray(fwd_vals[lo:hi], np.float32)
    tops, _ = top_terms(fwd_ptr, fwd_terms, np.asarray(fwd_vals, np.float32), 3)
    mates = [set() for _ in range(idx.n_docs)]
    lbp, bdp, bd = a["list_block_ptr"], a["block_doc_ptr"], a["block_docs"]
    for d in range(idx.n_docs):
        for t in tops[d]:
            if t < 0:
                continue
            for b in range(lbp[t], lbp[t + 1]):
                members = bd[bdp[b]:bdp[b + 1]]
                if d in members:
                    mates[d].update(int(e) for e in members if e != d)
    padded = 0
    for d in range(idx.n_docs):
        found = [int(e) for e in g[d] if e != d]
        padded += len(found) < 6
        assert set(found) <= mates[d]
        scores = dense[found] @ dense[d]
        assert np.all(np.diff(scores) <= 1e-6)  # best first (numpy sums in another order)
        rest = sorted(mates[d] - set(found))
        if rest and len(found) == 6:  # nothing left out scores above the last kept
            assert (dense[rest] @ dense[d]).max() <= scores[-1] + 1e-6
        assert len(found) == min(6, len(mates[d]))
    assert padded < idx.n_docs // 2  # most documents have six block-mates


def test_a_damaged_graph_is_refused(synthetic, graph_index, tmp_path):
    arrays = dict(graph_index.arrays)
    bad = np.array(arrays[ARRAY])
    bad[3] = graph_index.n_docs  # out of range: the kernels would read past the forward index
    arrays[ARRAY] = bad
    meta = {"n_docs": graph_index.n_docs, "dim": graph_index.dim, "params": graph_index.params.to_dict(),
            "summary_layout": SUMMARY_LAYOUT}
    save_arrays(tmp_path / "bad", "seismic", arrays, meta)
    with pytest.raises(IndexFormatError, match="κ-NN graph"):
        SeismicIndex.load(tmp_path / "bad")
    arrays[ARRAY] = bad[:-1]  # not n_docs rows
    save_arrays(tmp_path / "short", "seismic", arrays, meta)
    with pytest.raises(IndexFormatError, match="κ-NN graph"):
        SeismicIndex.load(tmp_path / "short")


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_bad_expansion_widths_are_refused(graph_index, bad):
    with pytest.raises(InvalidInputError, match="knn_expand"):
        graph_index.search(np.array([1], np.int32), np.array([1.0], np.float32), knn_expand=bad)


@pytest.mark.parametrize("params", [{"knn": -1}, {"knn_query_cut": 0}, {"knn_heap_factor": 0.0},
                                    {"knn_source": "exact"}])
def test_bad_graph_parameters_are_refused(params):
    with pytest.raises(InvalidInputError):
        SeismicIndex.build(random_csr(20, 30, 0.2, 0), **params)
