import threading

import numpy as np
import pytest
import scipy.sparse as sp

from indexer.collection import (Collection, CollectionExistsError, CollectionLockedError,
                                CollectionNotFoundError)
from indexer.errors import ConflictError, CorruptionError, InvalidInputError, NotFoundError

from .collection_helpers import EXACT_SEARCH, Oracle, assert_same_hits, random_docs, sparse_field
from .conftest import assert_topk_up_to_ties

DIM = 500


def make(tmp_path, name="c", index="seismic", maintenance=False, **options):
    """maintenance=False: flushes and merges happen inline, at the moment the policy says, so a
    test can assert on them; the background maintainer (the default) runs the same policy."""
    return Collection.create(tmp_path, name, {"sparse": sparse_field(DIM, index)},
                             maintenance=maintenance, **options)


def q_of(rng, nnz=6):
    qi = rng.choice(DIM, nnz, replace=False)
    qv = rng.random(nnz).astype(np.float32) + 0.1
    q = np.zeros(DIM)
    q[qi] = qv
    return qi, qv, q


def check_against(coll, oracle, rng, n_queries=8, k=10, filter=None, pred=None):
    for _ in range(n_queries):
        qi, qv, q = q_of(rng)
        hits = coll.search(qi, qv, k=k, filter=filter, **EXACT_SEARCH)
        assert_same_hits(hits, oracle.search(q, k, pred))
        for h in hits:  # text and metadata come back with the hit
            assert (h.text, h.metadata) == oracle.docs[h.id][1:]


def test_upsert_get_delete(tmp_path):
    coll = make(tmp_path)
    m = random_docs(np.random.default_rng(0), 3, DIM)
    assert coll.upsert(["a", "b", "c"], m, texts=["ta", None, "tc"],
                       metadata=[{"x": 1}, None, {"tags": ["p", "q"]}]) == 3
    doc = coll.get("a")
    assert (doc.id, doc.text, doc.metadata) == ("a", "ta", {"x": 1})
    np.testing.assert_allclose(doc.vectors["sparse"].toarray(), m[0].toarray())
    assert coll.get("b").text is None and coll.get("zz") is None
    assert len(coll) == 3 and "c" in coll
    assert coll.delete(["a", "nope"]) == 1
    assert coll.get("a") is None and len(coll) == 2
    assert coll.delete("a") == 0
    coll.flush()
    assert coll.get("c").metadata == {"tags": ["p", "q"]}
    np.testing.assert_allclose(coll.get("c").vectors["sparse"].toarray(), m[2].toarray())
    coll.close()


@pytest.mark.parametrize("where", ["buffer", "segment", "reopened"])
def test_newest_version_wins(tmp_path, where):
    coll = make(tmp_path)
    old = sp.csr_matrix(([5.0], ([0], [7])), shape=(1, DIM), dtype=np.float32)
    new = sp.csr_matrix(([3.0], ([0], [9])), shape=(1, DIM), dtype=np.float32)
    coll.upsert(["x"], old, texts=["old"])
    if where != "buffer":
        coll.flush()
    coll.upsert(["x"], new, texts=["new"])
    if where == "reopened":
        coll.close()
        coll = Collection.open(tmp_path, "c")
    assert coll.search([7], [1.0], k=5) == []
    hits = coll.search([9], [1.0], k=5)
    assert [(h.id, h.score, h.text) for h in hits] == [("x", 3.0, "new")]
    assert coll.get("x").text == "new" and len(coll) == 1
    assert coll.stats()["documents"] == 1
    coll.close()


@pytest.mark.parametrize("index", ["seismic", "exact"])
@pytest.mark.parametrize("seed", [0, 1])
def test_search_equals_brute_force_through_flush_merge_reopen(tmp_path, index, seed):
    rng = np.random.default_rng(seed)
    coll = make(tmp_path, index=index, flush_docs=60, exact_segment_docs=30, max_segments=3,
                merge_small_docs=100, maintenance=True)  # the background maintainer
    oracle = Oracle()
    next_id = 0
    for step in range(25):
        n = int(rng.integers(1, 25))
        # a third of each batch overwrites existing ids
        ids = [f"d{rng.integers(max(1, next_id))}" if rng.random() < 0.33 and next_id else f"d{next_id + j}"
               for j in range(n)]
        ids = list(dict.fromkeys(ids))
        next_id += n
        m = random_docs(rng, len(ids), DIM)
        meta = [{"g": int(rng.integers(3))} for _ in ids]
        coll.upsert(ids, m, texts=[f"t-{i}" for i in ids], metadata=meta)
        oracle.upsert(ids, m, [f"t-{i}" for i in ids], meta)
        if step % 4 == 3:
            victims = list(rng.choice(sorted(oracle.docs), 3, replace=False))
            assert coll.delete(victims) == 3
            oracle.delete(victims)
    coll.wait_for_maintenance()
    st = coll.stats()  # automatic (background) flushes and merges happened
    assert st["segments"] >= 1 and st["generation"] >= 1 and st["buffer_documents"] < 60
    check_against(coll, oracle, rng)
    check_against(coll, oracle, rng, filter={"g": 1}, pred=lambda m: m.get("g") == 1)
    coll.flush()
    check_against(coll, oracle, rng)
    coll.merge(force=True)
    st = coll.stats()
    assert st["segments"] == 1 and st["tombstones"] == 0 and st["documents"] == len(oracle.docs)
    check_against(coll, oracle, rng)
    coll.close()
    coll = Collection.open(tmp_path, "c")
    check_against(coll, oracle, rng)
    assert sorted(coll.ids()) == sorted(oracle.docs)
    coll.close()


@pytest.mark.parametrize("filter_exact_docs", [0, 5000])
def test_filters_return_k_results_when_k_match(tmp_path, filter_exact_docs):
    """Selective filters over Seismic segments: over-fetching (filter_exact_docs=0) and exact
    scoring of the matching rows must both give the brute-force filtered top-k."""
    rng = np.random.default_rng(5)
    coll = make(tmp_path, flush_docs=400, exact_segment_docs=10, filter_exact_docs=filter_exact_docs)
    oracle = Oracle()
    n = 1200
    m = random_docs(rng, n, DIM, nnz=20)
    meta = [{"cat": i % 10, "year": 1990 + i % 30, "lang": ["en", "fr", "de"][i % 3]} for i in range(n)]
    ids = [f"d{i}" for i in range(n)]
    coll.upsert(ids, m, metadata=meta)
    oracle.upsert(ids, m, None, meta)
    coll.delete(ids[:600:7])
    oracle.delete(ids[:600:7])
    cases = [
        ({"cat": 3}, lambda d: d["cat"] == 3),
        ({"cat": 3, "lang": "fr"}, lambda d: d["cat"] == 3 and d["lang"] == "fr"),
        ({"year": {"gte": 2015, "lt": 2018}}, lambda d: 2015 <= d["year"] < 2018),
        ({"lang": {"in": ["de", "xx"]}, "year": {"gt": 2018}}, lambda d: d["lang"] == "de" and d["year"] > 2018),
        ({"year": {"lte": 1990}, "cat": {"eq": 0}}, lambda d: d["year"] <= 1990 and d["cat"] == 0),
        ({"cat": 99}, lambda d: False),
    ]
    for flt, pred in cases:
        for _ in range(4):
            qi, qv, q = q_of(rng, nnz=10)
            expected = oracle.search(q, 10, pred)
            hits = coll.search(qi, qv, k=10, filter=flt, **EXACT_SEARCH)
            assert_same_hits(hits, expected)
            assert all(pred(h.metadata) for h in hits)
    # a filter matching only a handful of documents still yields all of them
    hits = coll.search(np.arange(DIM), np.ones(DIM, np.float32), k=50,
                       filter={"cat": 3, "year": {"gte": 2010}}, **EXACT_SEARCH)
    assert len(hits) == len(oracle.search(np.ones(DIM), 50, lambda d: d["cat"] == 3 and d["year"] >= 2010)) > 0
    coll.close()


@pytest.mark.parametrize("bad", [{"x": {"nope": 1}}, {"x": {"gte": "a"}}, {"x": {"in": 3}}, {"x": {}},
                                 {"x": [1, 2]}, {"x": float("nan")}, "x == 1", {"": 1}])
def test_bad_filters_raise(tmp_path, bad):
    coll = make(tmp_path)
    coll.upsert(["a"], random_docs(np.random.default_rng(0), 1, DIM), metadata=[{"x": 1}])
    with pytest.raises(ValueError, match="filter"):
        coll.search([1], [1.0], filter=bad)
    coll.close()


def test_filter_types_compare_like_json(tmp_path):
    coll = make(tmp_path, index="exact")
    m = sp.csr_matrix(np.ones((5, DIM), np.float32))
    coll.upsert(list("abcde"), m, metadata=[{"v": 1}, {"v": 1.0}, {"v": True}, {"v": "1"}, {}])
    for flt, want in [({"v": 1}, {"a", "b"}), ({"v": True}, {"c"}), ({"v": "1"}, {"d"}),
                      ({"v": {"gte": 1}}, {"a", "b"}), ({"v": {"in": [True, "1"]}}, {"c", "d"})]:
        assert {h.id for h in coll.search([0], [1.0], k=10, filter=flt)} == want, flt
    coll.close()


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", "..", ".hidden", "x" * 65, "a\x00b", None, "-x"])
def test_invalid_names_rejected(tmp_path, name):
    data = tmp_path / "data"
    with pytest.raises(ValueError, match="invalid collection name"):
        Collection.create(data, name, {"sparse": sparse_field(DIM)})
    with pytest.raises(ValueError, match="invalid collection name"):
        Collection.open(data, name)
    assert not any(p for p in tmp_path.iterdir() if p.name != "data")
    assert not data.exists() or not any(data.iterdir())


def test_bad_input_raises_and_loses_nothing(tmp_path):
    coll = make(tmp_path)
    rng = np.random.default_rng(1)
    good = random_docs(rng, 2, DIM)
    coll.upsert(["a", "b"], good, texts=["A", "B"])
    before = [(h.id, h.score) for h in coll.search(np.arange(DIM), np.ones(DIM, np.float32), k=5)]
    neg = good.copy()
    neg.data[0] = -1.0
    nan = good.copy()
    nan.data[0] = np.nan
    bad_calls = [
        (["x"], good, {}, "rows"),
        (["x", "x"], good, {}, "twice"),
        (["x", ""], good, {}, "non-empty"),
        (["x", "y"], neg, {}, "non-negative"),
        (["x", "y"], nan, {}, "NaN"),
        (["x", "y"], good, {"texts": ["t"]}, "texts"),
        (["x", "y"], good, {"texts": ["t", 3]}, "texts"),
        (["x", "y"], good, {"metadata": [{"a": float("nan")}, None]}, "metadata"),
        (["x", "y"], good, {"metadata": ["m", None]}, "metadata"),
        (["x", "y"], sp.random(2, DIM + 1, density=0.1, format="csr"), {}, "columns"),
        (["x", "y"], {"other": good}, {}, "field"),
        ("xy", good, {}, "list of strings"),
        ([], good[:0], {}, "no documents"),
    ]
    for ids, vecs, kw, msg in bad_calls:
        with pytest.raises(ValueError, match=msg):
            coll.upsert(ids, vecs, **kw)
    with pytest.raises(ValueError, match="query term ids"):
        coll.search([DIM], [1.0])
    with pytest.raises(ValueError, match="k must be"):
        coll.search([1], [1.0], k=0)
    assert len(coll) == 2 and coll.get("x") is None
    coll.close()
    coll = Collection.open(tmp_path, "c")  # nothing bad reached the WAL either
    assert sorted(coll.ids()) == ["a", "b"] and coll.get("a").text == "A"
    assert [(h.id, h.score) for h in coll.search(np.arange(DIM), np.ones(DIM, np.float32), k=5)] == before
    coll.close()


def test_multiple_vector_fields(tmp_path):
    rng = np.random.default_rng(2)
    fields = {"sparse": sparse_field(DIM), "bm25": sparse_field(DIM, "exact"),
              "dense": {"kind": "dense", "dim": 16}}
    coll = Collection.create(tmp_path, "multi", fields, encoders={"sparse": "splade-tiny", "dense": "minilm"},
                             flush_docs=50, exact_segment_docs=20, maintenance=False)
    n = 120
    sp_m, bm_m = random_docs(rng, n, DIM), random_docs(rng, n, DIM)
    dense = rng.standard_normal((n, 16)).astype(np.float32)
    ids = [f"d{i}" for i in range(n)]
    for a in range(0, n, 50):
        sl = slice(a, a + 50)
        coll.upsert(ids[sl], {"sparse": sp_m[sl], "bm25": bm_m[sl], "dense": dense[sl]},
                    metadata=[{"i": i} for i in range(a, min(n, a + 50))])
    with pytest.raises(ValueError, match="missing field"):
        coll.upsert(["z"], {"sparse": sp_m[:1]})
    coll.close()
    coll = Collection.open(tmp_path, "multi", maintenance=False)
    assert coll.config.encoders == {"sparse": "splade-tiny", "dense": "minilm"}
    assert coll.stats()["segments"] == 2 and coll.stats()["buffer_documents"] == 20
    # Dense scores come from BLAS products whose last bits depend on the CPU and the thread
    # count: rankings are compared with brute force up to near-ties, never as an exact order.
    q = rng.standard_normal(16).astype(np.float32)
    truth = {ids[i]: float(s) for i, s in enumerate(dense @ q)}
    hits = coll.search_dense(q, k=5)
    assert_topk_up_to_ties([(h.id, h.score) for h in hits], truth, 5, tol=1e-5)
    hits = coll.search_dense(q, k=5, filter={"i": {"lt": 10}})
    assert_topk_up_to_ties([(h.id, h.score) for h in hits], {i: truth[i] for i in ids[:10]}, 5, tol=1e-5)
    for field, mat in [("sparse", sp_m), ("bm25", bm_m)]:
        qi, qv, qd = q_of(rng)
        scores = mat.toarray() @ qd
        (top,) = coll.search(qi, qv, k=1, field=field, **EXACT_SEARCH)
        assert top.score == pytest.approx(scores.max(), rel=1e-5)
        assert scores[ids.index(top.id)] == pytest.approx(scores.max(), rel=1e-5)  # the best, up to a tie
    with pytest.raises(InvalidInputError, match="no sparse field"):
        coll.search([1], [1.0], field="dense")
    with pytest.raises(ValueError, match="dense query"):
        coll.search_dense(np.ones(3))
    coll.close()


def test_term_stats_follow_upserts_and_deletes(tmp_path):
    rng = np.random.default_rng(3)
    coll = make(tmp_path, flush_docs=40, exact_segment_docs=10)
    live: dict[str, tuple[np.ndarray, int]] = {}

    def check(c):
        ts = c.term_stats()
        df = np.zeros(DIM, np.int64)
        for v, _ in live.values():
            df += v != 0
        assert ts.n_docs == len(live)
        assert ts.total_length == sum(n for _, n in live.values())
        np.testing.assert_array_equal(ts.df, df)
        some = np.array([0, 5, DIM - 1, 17])
        np.testing.assert_array_equal(c.term_stats(terms=some).df, df[some])  # a query's terms only

    for step in range(12):
        ids = [f"d{rng.integers(80)}" for _ in range(10)]
        ids = list(dict.fromkeys(ids))
        m = random_docs(rng, len(ids), DIM, nnz=int(rng.integers(3, 15)))
        lengths = rng.integers(5, 50, len(ids))
        coll.upsert(ids, m, lengths=lengths)
        for i, d in enumerate(ids):
            live[d] = (m[i].toarray()[0], int(lengths[i]))
        victims = [d for d in list(live)[:2]]
        coll.delete(victims)
        for d in victims:
            live.pop(d)
        check(coll)
    coll.merge(force=True)
    check(coll)
    coll.close()
    coll = Collection.open(tmp_path, "c")
    check(coll)
    assert coll.term_stats().avg_length == pytest.approx(np.mean([n for _, n in live.values()]))
    coll.close()


def test_snapshot_and_restore(tmp_path):
    rng = np.random.default_rng(4)
    coll = make(tmp_path / "data", flush_docs=30, exact_segment_docs=10)
    oracle = Oracle()
    m = random_docs(rng, 70, DIM)
    ids = [f"d{i}" for i in range(70)]
    coll.upsert(ids, m, texts=ids)
    oracle.upsert(ids, m, ids)
    coll.delete(ids[:5])
    oracle.delete(ids[:5])
    coll.snapshot(tmp_path / "snap")
    with pytest.raises(ConflictError, match="already exists"):
        coll.snapshot(tmp_path / "snap")
    coll.upsert(["late"], m[:1])  # after the snapshot: must not appear in the restore
    coll.delete(ids[10:20])
    restored = Collection.restore(tmp_path / "snap", tmp_path / "data", "copy")
    assert sorted(restored.ids()) == sorted(oracle.docs)
    check_against(restored, oracle, rng)
    with pytest.raises(CollectionExistsError):
        Collection.restore(tmp_path / "snap", tmp_path / "data", "copy")
    restored.close()
    assert sorted(Collection.list(tmp_path / "data")) == ["c", "copy"]
    # a damaged snapshot is refused and leaves no collection behind
    seg = next((tmp_path / "snap" / "segments").iterdir())
    docs = seg / "docs.arrow"
    os_bytes = bytearray(docs.read_bytes())
    os_bytes[len(os_bytes) // 2] ^= 0xFF
    docs.unlink()  # it is a hard link shared with the live collection: replace, not edit
    docs.write_bytes(bytes(os_bytes))
    with pytest.raises(CorruptionError, match="corrupted"):
        Collection.restore(tmp_path / "snap", tmp_path / "data", "broken")
    assert "broken" not in Collection.list(tmp_path / "data")
    assert coll.get("d30").text == "d30"  # the live collection was not touched
    coll.close()
    assert Collection.open(tmp_path / "data", "c").get("d30").text == "d30"


def test_lifecycle_errors(tmp_path):
    coll = make(tmp_path)
    with pytest.raises(CollectionExistsError):
        make(tmp_path)
    with pytest.raises(CollectionLockedError):
        Collection.open(tmp_path, "c")
    with pytest.raises(CollectionNotFoundError) as not_found:
        Collection.open(tmp_path, "missing")
    assert isinstance(not_found.value, NotFoundError) and isinstance(not_found.value, LookupError)
    with pytest.raises(CollectionLockedError):
        Collection.drop(tmp_path, "c")
    coll.close()
    with pytest.raises(RuntimeError, match="closed"):
        coll.search([1], [1.0])
    Collection.drop(tmp_path, "c")
    assert Collection.list(tmp_path) == []
    with pytest.raises(ValueError, match="at least one vector field"):
        Collection.create(tmp_path, "e", {})
    with pytest.raises(ValueError, match="unknown Seismic parameter"):
        Collection.create(tmp_path, "e", {"s": {"kind": "sparse", "dim": 3, "params": {"bogus": 1}}})
    assert Collection.list(tmp_path) == []


def test_concurrent_search_during_ingest_flush_merge(tmp_path):
    """Searches racing writers, flushes and merges never fail, never return an id twice or a
    document that does not exist, and always find a pinned document that no writer touches."""
    rng = np.random.default_rng(6)
    coll = make(tmp_path, flush_docs=50, exact_segment_docs=20, max_segments=4, merge_small_docs=10_000)
    pinned = sp.csr_matrix(([9.0], ([0], [DIM - 1])), shape=(1, DIM), dtype=np.float32)
    coll.upsert(["pinned"], pinned, texts=["P"])
    all_ids = {"pinned"}
    batches = []
    for b in range(40):
        ids = [f"w{b}-{j}" for j in range(15)]
        # every document also has the pinned term, with a lower weight
        m = sp.hstack([random_docs(rng, 15, DIM - 1), np.full((15, 1), 0.5, np.float32)], format="csr")
        batches.append((ids, m))
        all_ids.update(ids)
    errors, stop = [], threading.Event()

    def searcher(seed):
        r = np.random.default_rng(seed)
        while not stop.is_set():
            try:
                hits = coll.search([DIM - 1, int(r.integers(DIM - 1))], [1.0, 1.0], k=10)
                ids = [h.id for h in hits]
                assert ids[0] == "pinned" and hits[0].text == "P", ids[:3]
                assert len(ids) == len(set(ids)), ids
                assert set(ids) <= all_ids
                assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
                flt = coll.search([DIM - 1], [1.0], k=5, filter={"n": {"gte": 0}})
                assert all(h.metadata["n"] >= 0 for h in flt)
            except Exception as exc:  # noqa: BLE001 - reported to the main thread
                errors.append(exc)
                return

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    deleted = 0
    for b, (ids, m) in enumerate(batches):
        coll.upsert(ids, m, metadata=[{"n": b}] * len(ids))
        if b % 10 == 9:
            deleted += coll.delete(ids[:3])
            coll.merge(force=True)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert coll.stats()["documents"] == len(all_ids) - deleted
    coll.close()


def test_small_segments_merge_once_they_would_make_a_large_one(tmp_path):
    rng = np.random.default_rng(11)
    coll = make(tmp_path, flush_docs=20, exact_segment_docs=50, merge_small_docs=50, max_segments=16)
    m = random_docs(rng, 120, DIM)
    for a in range(0, 40, 20):
        coll.upsert([f"d{i}" for i in range(a, a + 20)], m[a:a + 20])
    assert coll.stats()["segments"] == 2  # 40 docs in small segments: not yet worth a large one
    coll.upsert([f"d{i}" for i in range(40, 60)], m[40:60])  # the third flush makes 60 >= 50
    st = coll.stats()
    assert st["segments"] == 1 and st["documents"] == 60  # 60 >= 50: merged into one
    assert coll._segments[0].kinds["sparse"] == "seismic"  # large enough for the Seismic index
    qd = np.zeros(DIM, np.float32)
    qd[m[7].indices] = m[7].data
    scores = m[:60] @ qd
    (top,) = coll.search(m[7].indices, m[7].data, k=1, **EXACT_SEARCH)
    assert scores[int(top.id[1:])] == pytest.approx(scores.max(), rel=1e-5)  # the best, up to a tie
    coll.close()


def test_update_metadata_keeps_text_and_vectors_and_is_durable(tmp_path):
    """A merge patch (null removes a key) or a replacement of the metadata; text, vectors and
    BM25 length stay; a missing id changes nothing; the change survives a reopen (WAL) and a
    flush (segment rows are rewritten as new versions)."""
    import scipy.sparse as sp_

    from indexer.errors import NotFoundError
    rng = np.random.default_rng(3)
    v = sp_.random(4, 50, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    v.data += 0.1
    ids = ["a", "b", "c", "d"]
    fields = {"s": {"kind": "sparse", "dim": 50, "index": "exact"}}
    coll = Collection.create(tmp_path, "m", fields, maintenance=False)
    coll.upsert(ids, v, texts=["ta", "tb", "tc", "td"],
                metadata=[{"topic": "x", "year": 2020}, {"topic": "y"}, None, {"keep": 1}], lengths=[5, 6, 7, 8])
    coll.flush()  # a and b live in a segment, the update rewrites them into the buffer
    q = v[0]
    before = {h.id: h.score for h in coll.search(q.indices, q.data, k=4)}
    assert coll.update_metadata({"a": {"year": None, "lang": "en"}, "c": {"new": True}}) == 2
    assert coll.update_metadata({"d": {"only": 2}}, merge=False) == 1
    with pytest.raises(NotFoundError, match="zzz"):
        coll.update_metadata({"b": {"topic": "changed"}, "zzz": {}})
    with pytest.raises(ValueError, match="dict"):
        coll.update_metadata({"b": ["not", "a", "dict"]})

    def check(c):
        assert c.get("a").metadata == {"topic": "x", "lang": "en"} and c.get("a").text == "ta"
        assert c.get("b").metadata == {"topic": "y"}  # the failed batch changed nothing
        assert c.get("c").metadata == {"new": True} and c.get("d").metadata == {"only": 2}
        assert (c.get("a").vectors["s"] != v[0]).nnz == 0
        after = {h.id: h.score for h in c.search(q.indices, q.data, k=4)}
        assert after.keys() == before.keys() and all(abs(after[k] - before[k]) < 1e-6 for k in after)
    check(coll)
    coll.close()
    with Collection.open(tmp_path, "m", maintenance=False) as again:
        check(again)
        again.flush()
        check(again)


def test_a_field_built_with_a_knn_graph_searches_with_it(tmp_path):
    """A sparse field whose Seismic params ask for a κ-NN graph ("knn") stores one in every
    sealed segment, and the collection's searches use it (SearchParams.knn_expand): recall at
    a small query_cut never falls below the same search without it; knn_expand=0 turns it off,
    and a bad value is refused."""
    rng = np.random.default_rng(11)
    params = {"n_postings": 40, "centroid_fraction": 0.1, "summary_energy": 0.4, "knn": 8}
    coll = Collection.create(tmp_path, "g", {"sparse": {"kind": "sparse", "dim": DIM, "params": params}},
                             maintenance=False, flush_docs=600, exact_segment_docs=10)
    oracle = Oracle()
    m = random_docs(rng, 600, DIM, nnz=20)
    ids = [f"d{i}" for i in range(600)]
    coll.upsert(ids, m)
    oracle.upsert(ids, m)
    coll.flush()
    assert [s.indexes["sparse"].knn for s in coll._segments] == [8]  # one sealed segment, with its graph
    with_graph, without = [], []
    for _ in range(30):
        qi, qv, q = q_of(rng, nnz=12)
        truth = {d for d, _ in oracle.search(q, 10)}
        a = {h.id for h in coll.search(qi, qv, k=10, query_cut=2, heap_factor=1.0)}
        b = {h.id for h in coll.search(qi, qv, k=10, query_cut=2, heap_factor=1.0, knn_expand=0)}
        assert len(a & truth) >= len(b & truth)  # the expansion only adds scored candidates
        with_graph.append(len(a & truth))
        without.append(len(b & truth))
    assert sum(with_graph) > sum(without)  # and at query_cut 2 it finds some the lists missed
    with pytest.raises(InvalidInputError, match="knn_expand"):
        coll.search(qi, qv, k=10, knn_expand=-1)


def test_a_field_searches_at_its_recorded_search_defaults(tmp_path):
    """A sparse field's "search" defaults (FieldSpec.search) are what a search naming no
    query_cut / heap_factor uses, after a reopen too; explicit values still win; bad defaults
    are refused when the collection is created."""
    rng = np.random.default_rng(5)
    spec = {"kind": "sparse", "dim": DIM, "params": {"n_postings": 40},
            "search": {"query_cut": 2, "heap_factor": 1.0}}
    coll = Collection.create(tmp_path, "s", {"sparse": spec}, maintenance=False, exact_segment_docs=10)
    m = random_docs(rng, 500, DIM, nnz=20)
    coll.upsert([f"d{i}" for i in range(500)], m)
    coll.flush()
    assert coll.config.fields["sparse"].search_defaults() == (2, 1.0)
    differs = 0
    for _ in range(20):
        qi, qv, _ = q_of(rng, nnz=12)
        default = [(h.id, h.score) for h in coll.search(qi, qv, k=10)]
        assert default == [(h.id, h.score) for h in coll.search(qi, qv, k=10, query_cut=2, heap_factor=1.0)]
        thorough = [(h.id, h.score) for h in coll.search(qi, qv, k=10, query_cut=12, heap_factor=0.5)]
        differs += default != thorough
    assert differs > 0  # two lists of twelve: the defaults really were applied
    coll.close()
    with Collection.open(tmp_path, "s", maintenance=False) as again:
        assert again.config.fields["sparse"].search == {"query_cut": 2, "heap_factor": 1.0}
    for bad, words in [({"query_cut": 0}, "query_cut"), ({"heap_factor": 1.5}, "heap_factor"),
                       ({"ef": 3}, "unknown field search default")]:
        with pytest.raises(InvalidInputError, match=words):
            Collection.create(tmp_path, "bad", {"sparse": {**spec, "search": bad}})
    with pytest.raises(InvalidInputError, match="only sparse fields"):
        Collection.create(tmp_path, "bad", {"d": {"kind": "dense", "dim": 4, "search": {"query_cut": 3}}})
    assert "bad" not in Collection.list(tmp_path)


def test_a_reordering_seismic_segment_reads_back_every_row_as_written(tmp_path):
    # a Seismic index numbers its documents by their largest term (doc_order "top_term"); the
    # segment's rows stay in write order: vectors, term statistics, filtered exact scoring
    # and merges read each row through the index's map
    from indexer.seismic.index import SeismicIndex
    rng = np.random.default_rng(12)
    coll = make(tmp_path, flush_docs=300, exact_segment_docs=10, filter_exact_docs=1000)
    m = random_docs(rng, 300, DIM, nnz=12)
    ids = [f"d{i}" for i in range(300)]
    coll.upsert(ids, m, metadata=[{"i": i} for i in range(300)])
    coll.flush()
    (seg,) = coll._segments
    idx = seg.indexes["sparse"]
    assert isinstance(idx, SeismicIndex) and idx.doc_ids is not None
    assert not np.array_equal(np.asarray(idx.doc_ids), np.arange(300))  # reordered
    for i in range(0, 300, 7):
        got = coll.get(ids[i]).vectors["sparse"]
        np.testing.assert_array_equal(got.indices, m[i].indices)
        np.testing.assert_array_equal(got.data, m[i].data)  # float32 forward index (EXACT_SEISMIC)
        np.testing.assert_array_equal(seg.row_terms("sparse", i), m[i].indices)
    rows = np.array([5, 0, 299, 42])
    np.testing.assert_array_equal(seg.sparse_rows("sparse", rows).indices, m[rows].indices)
    qi, qv, q = q_of(rng)
    dense = m.toarray()
    hits = coll.search(qi, qv, k=5, filter={"i": {"lt": 40}}, **EXACT_SEARCH)  # scored exactly
    truth = {ids[i]: float(dense[i] @ q) for i in range(40) if dense[i] @ q > 0}
    assert_topk_up_to_ties([(h.id, h.score) for h in hits], truth, 5)
    coll.close()
