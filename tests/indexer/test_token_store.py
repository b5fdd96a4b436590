"""Stored token vectors (store_token_vectors): quantisation, and persistence through the write
buffer, a flush, a merge, WAL replay, a reopen, metadata updates and a follower."""
import numpy as np
import pytest
import scipy.sparse as sp

from indexer import Collection
from indexer.errors import InvalidInputError
from indexer.token_store import TokenRows, quantize_tokens

from .collection_helpers import sparse_field

DIM = 32
FIELDS = {"s": sparse_field(50, index="exact")}


def unit_tokens(rng, n_docs, dim=DIM):
    out = []
    for _ in range(n_docs):
        t = rng.standard_normal((int(rng.integers(1, 12)), dim)).astype(np.float32)
        out.append(t / np.linalg.norm(t, axis=1, keepdims=True))
    return out


def rows(n, seed=0):
    return sp.random(n, 50, density=0.2, format="csr", random_state=seed, dtype=np.float32)


def cosines(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("dtype,min_cos", [("fp16", 0.9999), ("int8", 0.999)])
def test_quantised_tokens_keep_their_direction(dtype, min_cos):
    docs = unit_tokens(np.random.default_rng(0), 20)
    docs[3] = np.zeros((0, DIM), np.float32)
    stored = quantize_tokens(docs, dtype, DIM)
    assert stored.n_docs == 20 and stored.ptr[-1] == sum(len(d) for d in docs)
    for i, d in enumerate(docs):
        got = stored.doc(i)
        assert got.shape == d.shape and got.dtype == np.float32
        if len(d):
            assert cosines(got, d).min() >= min_cos
    picked = stored.take([5, 3, 0])
    for j, i in enumerate([5, 3, 0]):
        np.testing.assert_array_equal(picked.doc(j), stored.doc(i))  # copied, not re-quantised


def test_bytes_per_token():
    docs = unit_tokens(np.random.default_rng(1), 10)
    n_tok = sum(len(d) for d in docs)
    assert quantize_tokens(docs, "int8", DIM).codes.nbytes == n_tok * DIM
    assert quantize_tokens(docs, "fp16", DIM).codes.nbytes == n_tok * DIM * 2


def _check(coll, expect, min_cos=0.999):
    ids = list(expect)
    rows = coll.token_vectors(ids)
    assert rows.n_docs == len(ids)
    for i, d in enumerate(ids):
        g = rows.doc(i)
        assert g.shape == expect[d].shape, d
        if len(g):
            assert cosines(g, expect[d]).min() >= min_cos, d


@pytest.mark.parametrize("dtype", ["int8", "fp16"])
def test_tokens_survive_flush_merge_reopen_and_replay(tmp_path, dtype):
    rng = np.random.default_rng(2)
    coll = Collection.create(tmp_path, "c", FIELDS, maintenance=False, flush_docs=1000,
                             store_token_vectors=dtype, token_dim=DIM)
    expect = {}
    for batch in range(3):  # three segments, then a merge
        ids = [f"d{batch}-{i}" for i in range(8)]
        toks = unit_tokens(rng, 8)
        coll.upsert(ids, rows(8, batch), tokens=toks)
        expect.update(zip(ids, toks))
        _check(coll, expect)  # from the write buffer
        coll.flush()
    coll.delete(["d0-1", "d1-2"])
    expect.pop("d0-1"), expect.pop("d1-2")
    assert coll.merge(force=True) == 3
    _check(coll, expect)
    # newer versions in the WAL only (no flush), one without tokens
    toks = unit_tokens(rng, 2)
    coll.upsert(["d0-0", "new"], rows(2, 9), tokens=toks)
    coll.upsert(["notext"], rows(1, 10))
    expect.update({"d0-0": toks[0], "new": toks[1], "notext": np.zeros((0, DIM), np.float32)})
    stats = coll.stats()["token_vectors"]
    assert stats["dtype"] == dtype and stats["dim"] == DIM and stats["bytes_per_document"] > 0
    coll.close()
    coll = Collection.open(tmp_path, "c", maintenance=False)  # merged segment + WAL replay
    _check(coll, expect)
    assert coll.token_vectors(["d0-1", "missing"]).ptr.tolist() == [0, 0, 0]  # gone: empty
    coll.update_metadata({"new": {"tag": 1}})  # carries the stored tokens along
    coll.flush()
    coll.close()
    coll = Collection.open(tmp_path, "c", maintenance=False)
    _check(coll, expect)
    coll.close()


def test_follower_reads_tokens(tmp_path):
    rng = np.random.default_rng(3)
    w = Collection.create(tmp_path, "c", FIELDS, maintenance=False, store_token_vectors="int8", token_dim=DIM)
    toks = unit_tokens(rng, 4)
    w.upsert([f"a{i}" for i in range(4)], rows(4), tokens=toks)
    r = Collection.open(tmp_path, "c", read_only=True)
    _check(r, dict(zip([f"a{i}" for i in range(4)], toks)))
    w.flush()
    r.refresh()
    _check(r, dict(zip([f"a{i}" for i in range(4)], toks)))
    w.close()


def test_bad_tokens_are_refused(tmp_path):
    coll = Collection.create(tmp_path, "c", FIELDS, maintenance=False, store_token_vectors="int8", token_dim=DIM)
    with pytest.raises(InvalidInputError, match="tokens"):
        coll.upsert(["a"], rows(1), tokens=[np.ones((3, DIM + 1), np.float32)])
    with pytest.raises(InvalidInputError, match="NaN"):
        coll.upsert(["a"], rows(1), tokens=[np.full((3, DIM), np.nan, np.float32)])
    with pytest.raises(InvalidInputError, match="one per id"):
        coll.upsert(["a", "b"], rows(2), tokens=[np.ones((3, DIM), np.float32)])
    assert len(coll) == 0
    plain = Collection.create(tmp_path, "p", FIELDS, maintenance=False)
    with pytest.raises(InvalidInputError, match="stores no token vectors"):
        plain.upsert(["a"], rows(1), tokens=[np.ones((3, DIM), np.float32)])
    assert plain.token_vectors(["a"]) is None and "token_vectors" not in plain.stats()
    with pytest.raises(InvalidInputError, match="go together"):
        Collection.create(tmp_path, "x", FIELDS, store_token_vectors="int8")
    with pytest.raises(InvalidInputError, match="store_token_vectors"):
        Collection.create(tmp_path, "y", FIELDS, store_token_vectors="int4", token_dim=8)
    coll.close(), plain.close()


def test_take_and_concat_keep_documents_apart():
    a = quantize_tokens(unit_tokens(np.random.default_rng(4), 3), "int8", DIM)
    b = TokenRows.empty("int8", DIM, 2)
    c = TokenRows.concat([a, b, a.take([1])], "int8", DIM)
    assert c.n_docs == 6 and [len(c.doc(i)) for i in range(6)] == \
        [len(a.doc(0)), len(a.doc(1)), len(a.doc(2)), 0, 0, len(a.doc(1))]
    np.testing.assert_array_equal(c.doc(5), a.doc(1))
