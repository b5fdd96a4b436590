"""Operations: per-collection metrics, request ids in responses and logs, JSON logs, the slow
search log, against real apps over real collections."""
import json
import logging
import re

from service.observability import REQUEST_ID, JsonFormatter, configure_logging

from .conftest import load_corpus, make_client

LIGHT = {"dense_encoder": None, "multivector_encoder": None}


def metric(text: str, name: str, **labels) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_per_collection_gauges_and_counters(tmp_path):
    docs = load_corpus(per_topic=2, topics=6)
    with make_client(tmp_path) as c:
        assert c.post("/collections", json={"name": "ops", **LIGHT}).status_code == 201
        assert c.put("/collections/ops/documents", json={"documents": docs}).status_code == 200
        assert c.post("/collections/ops/documents/delete", json={"ids": [docs[0]["id"]]}).status_code == 200
        text = c.get("/metrics").text
        assert metric(text, "lsr_collection_documents", collection="ops") == len(docs) - 1
        assert metric(text, "lsr_collection_upserted_documents_total", collection="ops") == len(docs)
        assert metric(text, "lsr_collection_deleted_documents_total", collection="ops") == 1
        assert metric(text, "lsr_collection_state", collection="ops", state="ready") == 1
        assert metric(text, "lsr_collection_state", collection="ops", state="damaged") == 0
        assert metric(text, "lsr_collection_bytes", collection="ops") > 0
        stats = c.get("/collections/ops").json()
        assert metric(text, "lsr_collection_segments", collection="ops") == stats["segments"]
        assert metric(text, "lsr_collection_buffer_documents", collection="ops") == stats["buffer_documents"]
        assert metric(text, "lsr_collection_flushes_total", collection="ops") is not None


def test_request_ids_are_returned_and_kept_when_plain(tmp_path):
    with make_client(tmp_path) as c:
        made = {c.get("/healthz").headers["x-request-id"] for _ in range(3)}
        assert len(made) == 3 and all(re.fullmatch(r"[0-9a-f]{16}", r) for r in made)
        assert c.get("/healthz", headers={"X-Request-Id": "trace-42.a_b"}).headers["x-request-id"] == "trace-42.a_b"
        odd = c.get("/healthz", headers={"X-Request-Id": "no spaces/or\tslashes"}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{16}", odd)  # not echoed: it would go into log lines as is
        # errors and the search fast lane carry one too
        assert "x-request-id" in c.get("/collections/nope").headers


def test_json_logs_carry_the_request_id_and_the_slow_search_log(tmp_path, capfd):
    docs = load_corpus(per_topic=2, topics=4)
    try:
        with make_client(tmp_path, log_format="json", slow_search_ms=0) as c:
            c.post("/collections", json={"name": "slow", **LIGHT})
            c.put("/collections/slow/documents", json={"documents": docs})
            capfd.readouterr()
            r = c.post("/collections/slow/search", json={"query": "solar panels", "mode": "bm25", "k": 2},
                       headers={"X-Request-Id": "req-1"})
            assert r.status_code == 200
            lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    finally:
        configure_logging("text")
    slow = [x for x in lines if x["logger"] == "lsr.slowlog"]
    assert len(slow) == 1, lines
    entry = slow[0]
    assert entry["request_id"] == "req-1" and entry["collection"] == "slow" and entry["mode"] == "bm25"
    assert entry["k"] == 2 and entry["query"] == "solar panels" and entry["level"] == "WARNING"
    assert entry["ms"] > 0 and {"retrieve", "total"} <= set(entry["stages_ms"])


def test_json_formatter_fields():
    record = logging.makeLogRecord({"name": "lsr.service", "levelname": "ERROR", "msg": "x %s",
                                    "args": ("y",), "collection": "c1"})
    token = REQUEST_ID.set("abc")
    try:
        out = json.loads(JsonFormatter().format(record))
    finally:
        REQUEST_ID.reset(token)
    assert out["message"] == "x y" and out["request_id"] == "abc" and out["collection"] == "c1"
    assert out["level"] == "ERROR" and out["time"].endswith("Z")
