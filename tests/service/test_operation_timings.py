"""Operations: encoder, flush and merge timings as Prometheus histograms (service/observability.py
OperationMetrics; flushes and merges through indexer.maintenance's timing hook)."""
import time

from indexer import maintenance

from .conftest import load_corpus, make_client
from .test_observability import metric


def _wait_for(c, name: str, labels: dict, at_least: float = 1, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = c.get("/metrics").text
        got = metric(text, name, **labels)
        if got is not None and got >= at_least:
            return text
        if time.monotonic() >= deadline:  # the collection's own lines and state, not the exposition's tail
            coll = labels.get("collection")
            mine = "\n".join(x for x in text.splitlines() if f'collection="{coll}"' in x)
            raise AssertionError(f"{name}{labels} never reached {at_least}:\n{mine}\n"
                                 + c.get(f"/collections/{coll}").text)
        time.sleep(0.1)


def test_flush_and_merge_histograms(tmp_path):
    docs = load_corpus(per_topic=2, topics=6)
    index = {"flush_docs": 2, "max_segments": 2, "merge_small_docs": 4}
    before = list(maintenance._timing_hooks)  # other tests' apps may be running
    with make_client(tmp_path) as c:
        assert len(maintenance._timing_hooks) == len(before) + 1
        assert c.post("/collections", json={"name": "ops", "sparse_encoder": None, "dense_encoder": None,
                                            "multivector_encoder": None, "index": index}).status_code == 201
        for n, i in enumerate(range(0, len(docs), 2), 1):
            assert c.put("/collections/ops/documents", json={"documents": docs[i:i + 2]}).status_code == 200
            # one segment a batch, however slow the flusher: a merge is then due from the second on
            _wait_for(c, "lsr_flush_seconds_count", {"collection": "ops"}, at_least=n)
        text = _wait_for(c, "lsr_merge_seconds_count", {"collection": "ops"})
        flushes = metric(text, "lsr_flush_seconds_count", collection="ops")
        assert flushes == len(docs) // 2  # one a batch
        assert metric(text, "lsr_flush_seconds_sum", collection="ops") > 0
        # the counters the collection keeps agree with the histogram
        assert metric(text, "lsr_collection_flushes_total", collection="ops") >= flushes
        assert metric(text, "lsr_flush_seconds_bucket", collection="ops", le="+Inf") == flushes
    assert maintenance._timing_hooks == before  # the app's hook is gone with it


def test_encoder_histograms_for_queries_and_documents(tmp_path):
    docs = load_corpus(per_topic=1, topics=4)
    with make_client(tmp_path) as c:
        assert c.post("/collections", json={"name": "enc", "dense_encoder": None,
                                            "multivector_encoder": None}).status_code == 201
        assert c.put("/collections/enc/documents", json={"documents": docs}).status_code == 200
        assert c.post("/collections/enc/search", json={"query": "solar", "mode": "sparse"}).status_code == 200
        text = c.get("/metrics").text
    lines = [x for x in text.splitlines() if x.startswith(("lsr_encode_seconds_count", "lsr_encoded_texts_total"))]
    docs_line = [x for x in lines if 'input="documents"' in x and x.startswith("lsr_encoded_texts_total")]
    query_line = [x for x in lines if 'input="queries"' in x and x.startswith("lsr_encode_seconds_count")]
    assert docs_line and float(docs_line[0].rsplit(" ", 1)[1]) == len(docs), lines
    assert query_line and float(query_line[0].rsplit(" ", 1)[1]) >= 1, lines


def test_a_failing_hook_does_not_fail_a_flush(tmp_path):
    from indexer import Collection

    def broken(event, coll, seconds):
        raise RuntimeError("boom")
    seen = []

    def record(event, coll, seconds):
        seen.append((event, coll.name))
    maintenance.add_timing_hook(broken)
    maintenance.add_timing_hook(record)
    try:
        import numpy as np
        import scipy.sparse as sp
        coll = Collection.create(tmp_path, "h", {"s": {"kind": "sparse", "dim": 8}})
        coll.upsert(["a"], sp.csr_matrix(np.eye(1, 8, dtype=np.float32)))
        assert coll.flush() is not None
        coll.close()
    finally:
        maintenance.remove_timing_hook(broken)
        maintenance.remove_timing_hook(record)
    assert ("flush", "h") in seen
