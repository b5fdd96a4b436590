"""The forward index stored as byte records (indexer/seismic/forward.py, native/forward.hpp)."""
import json

import numpy as np
import pytest
import scipy.sparse as sp

from indexer import SeismicIndex
from indexer.seismic.forward import (RECORD_PAD, check_records, decode_records, encode_records, record_bytes,
                                     record_entries, zeros_per_record)
from indexer.seismic.summaries import SUMMARY_LAYOUT
from indexer.storage import IndexFormatError, save_arrays

DIMS = [1, 200, 256, 257, 30522, 65536]


def _rows(dim, seed, value_dtype):
    """Rows of every length from empty to dim (capped), at random terms, ascending."""
    rng = np.random.default_rng(seed)
    lengths = [0, 1, min(dim, 2), min(dim, 300), dim if dim <= 300 else 0, *rng.integers(0, min(dim, 400) + 1, 40)]
    terms = [np.sort(rng.choice(dim, size=n, replace=False)) for n in lengths]
    ptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    vals = rng.random(int(ptr[-1])).astype(value_dtype)
    return ptr, np.concatenate(terms).astype(np.uint16) if ptr[-1] else np.zeros(0, np.uint16), vals


@pytest.mark.parametrize("value_dtype", [np.float16, np.float32])
@pytest.mark.parametrize("dim", DIMS)
def test_records_decode_to_the_rows_they_encode(dim, value_dtype):
    ptr, terms, vals = _rows(dim, dim, value_dtype)
    off, rec = encode_records(ptr, terms, vals, dim)
    assert off.dtype == np.int64 and rec.shape[0] == off[-1] + RECORD_PAD
    assert np.all(off % np.dtype(value_dtype).itemsize == 0)  # every record's values are aligned
    assert check_records(off, rec, len(ptr) - 1, dim, np.dtype(value_dtype).itemsize) is None
    p2, t2, v2 = decode_records(off, rec, dim, value_dtype)
    np.testing.assert_array_equal(p2, ptr)
    np.testing.assert_array_equal(t2, terms)
    np.testing.assert_array_equal(v2.view(np.uint8), vals.view(np.uint8))
    # an entry: its value, a low byte and a unary bit, plus Z zero bits and padding a record
    vb = np.dtype(value_dtype).itemsize
    assert off[-1] <= ptr[-1] * (1 + vb + 1 / 8) + (len(ptr) - 1) * (zeros_per_record(dim) / 8 + vb + 1)


@pytest.mark.parametrize("vb", [2, 4])
@pytest.mark.parametrize("dim", DIMS)
def test_a_record_size_gives_back_its_entry_count_and_no_other_size_passes(dim, vb):
    n = np.arange(0, 5000)
    sizes = record_bytes(n, dim, vb)
    assert np.all(np.diff(sizes) > 0)
    np.testing.assert_array_equal(record_entries(sizes, dim, vb), n)
    every = np.arange(0, int(sizes[200]))
    n_every = record_entries(every, dim, vb)
    fits = (n_every >= 0) & (record_bytes(n_every, dim, vb) == every)
    np.testing.assert_array_equal(every[fits], sizes[sizes < sizes[200]])


def test_record_offsets_that_do_not_fit_their_records_are_named():
    ptr, terms, vals = _rows(30522, 1, np.float16)
    off, rec = encode_records(ptr, terms, vals, 30522)
    n = len(ptr) - 1
    grown = off.copy()
    grown[3] += 2  # two records change size, both to sizes no entry count has
    back = off.copy()
    back[5], back[6] = back[6], back[5]
    tiny = off.copy()
    tiny[1:] -= off[1]  # the first record empties to 0 bytes, which a negative count would "fit"
    for bad_off, bad_rec, match in [(grown, rec, "fits no number of entries"), (back, rec, "decrease"),
                                    (tiny, rec, "fits no number of entries"),
                                    (off, rec[:-RECORD_PAD], "run past"), (off[:-1], rec, "int64 values"),
                                    (off.astype(np.int32), rec, "int64 values")]:
        assert match in check_records(bad_off, bad_rec, n, 30522, 2)
    assert "dim" in check_records(off, rec, n, 70000, 2)


def test_a_vocabulary_over_65536_terms_keeps_plain_arrays():
    docs = sp.csr_matrix((np.ones(3, np.float32), ([0, 1, 2], [5, 70000, 99999])), shape=(3, 100000))
    idx = SeismicIndex.build(docs, n_postings=10)
    assert idx.params.forward_layout == "arrays" == idx.forward_layout and "fwd_terms" in idx.arrays
    with pytest.raises(ValueError, match="dim <= 65536"):
        encode_records(np.array([0, 1]), np.array([1], np.uint16), np.ones(1, np.float16), 70000)


def test_an_unknown_forward_layout_is_refused():
    from indexer.errors import InvalidInputError
    with pytest.raises(InvalidInputError, match="forward_layout"):
        SeismicIndex.build(sp.csr_matrix(np.ones((3, 4), np.float32)), forward_layout="csr")


@pytest.mark.parametrize("forward_dtype", ["float16", "float32"])
def test_records_and_arrays_answer_alike_bit_for_bit(synthetic, forward_dtype):
    docs, queries = synthetic
    rec = SeismicIndex.build(docs, n_postings=300, forward_dtype=forward_dtype, knn=4)
    arr = SeismicIndex.build(docs, n_postings=300, forward_dtype=forward_dtype, knn=4, forward_layout="arrays")
    assert rec.forward_layout == "records" and set(rec.arrays) & {"fwd_ptr", "fwd_terms", "fwd_vals"} == set()
    for x, y in zip(rec.forward(), arr.forward()):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(rec.arrays["knn_neighbors"], arr.arrays["knn_neighbors"])
    # an offset a document, then its record (value, low byte, unary bit an entry; Z zeros)
    vb = np.dtype(forward_dtype).itemsize
    sizes = record_bytes(np.diff(rec.forward()[0]), rec.dim, vb)
    assert rec.space_usage()["forward_bytes"] == 8 * (rec.n_docs + 1) + sizes.sum() + RECORD_PAD
    assert rec.space_usage()["forward_bytes"] < arr.space_usage()["forward_bytes"]
    for backend in ("native", "numba"):
        for qc, hf, kx in [(3, 0.5, 0), (10, 0.9, 0), (5, 0.8, 4)]:
            a = rec.search_batch(queries, k=10, query_cut=qc, heap_factor=hf, backend=backend, knn_expand=kx)
            b = arr.search_batch(queries, k=10, query_cut=qc, heap_factor=hf, backend=backend, knn_expand=kx)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])


def _save(tmp_path, name, idx, arrays, params):
    save_arrays(tmp_path / name, "seismic", arrays, {"n_docs": idx.n_docs, "dim": idx.dim, "params": params,
                                                     "summary_layout": SUMMARY_LAYOUT})
    return tmp_path / name


def test_saved_records_load_and_an_index_saved_before_them_still_does(synthetic, tmp_path):
    docs, queries = synthetic
    rec = SeismicIndex.build(docs, n_postings=300)
    rec.save(tmp_path / "rec")
    assert json.loads((tmp_path / "rec" / "manifest.json").read_text())["params"]["forward_layout"] == "records"
    arr = SeismicIndex.build(docs, n_postings=300, forward_layout="arrays")
    old = arr.params.to_dict()
    del old["forward_layout"]  # a manifest written before forward records
    loaded = [SeismicIndex.load(tmp_path / "rec"), SeismicIndex.load(_save(tmp_path, "old", arr, arr.arrays, old))]
    assert [x.forward_layout for x in loaded] == ["records", "arrays"]
    want = rec.search_batch(queries, k=10, query_cut=5, heap_factor=0.8)
    for x in loaded:
        got = x.search_batch(queries, k=10, query_cut=5, heap_factor=0.8)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_damaged_record_offsets_and_missing_records_are_reported_as_damage(synthetic, tmp_path):
    docs, _ = synthetic
    idx = SeismicIndex.build(docs[:300], n_postings=100)
    params = idx.params.to_dict()
    off = np.array(idx.arrays["fwd_off"])
    off[7] += 1
    gone = {n: v for n, v in idx.arrays.items() if n != "fwd_rec"}
    for name, arrays, prm, match in [
            ("off", {**idx.arrays, "fwd_off": off}, params, "damaged: a record's size"),
            ("short", {**idx.arrays, "fwd_rec": idx.arrays["fwd_rec"][:-100]}, params,
             "damaged: its record offsets run"),
            ("gone", gone, params, "lacks index arrays \\['fwd_rec'\\]"),
            ("layout", idx.arrays, {**params, "forward_layout": "columns"}, "forward_layout 'columns'")]:
        with pytest.raises(IndexFormatError, match=match):
            SeismicIndex.load(_save(tmp_path, name, idx, arrays, prm))


def test_a_record_with_damaged_bits_is_named_and_the_kernel_stays_inside_the_index(synthetic):
    # the files' checksums catch damage on load; a damaged record that gets past them (an index
    # built from bad arrays, or loaded unverified) must neither be read out of bounds nor
    # decode silently
    docs, queries = synthetic
    idx = SeismicIndex.build(docs[:500], n_postings=100)
    off, rec = idx.arrays["fwd_off"], np.array(idx.arrays["fwd_rec"])
    ptr = idx.forward()[0]
    for d, fill in [(3, 0x00), (10, 0xFF), (499, 0x00)]:  # unary bits all zeros / all ones
        n = ptr[d + 1] - ptr[d]
        u = off[d] + 3 * n
        rec[u:u + (n + zeros_per_record(idx.dim) + 7) // 8] = fill
    bad = SeismicIndex({**idx.arrays, "fwd_rec": rec}, idx.n_docs, idx.dim, idx.params)
    ids, scores = bad.search_batch(queries, k=10, query_cut=10, heap_factor=1.0, backend="native")
    assert ids.shape == (queries.shape[0], 10) and np.all(ids < idx.n_docs) and np.isfinite(scores[ids >= 0]).all()
    with pytest.raises(ValueError, match="3 forward records \\(first: document 3\\)"):
        bad.forward()
