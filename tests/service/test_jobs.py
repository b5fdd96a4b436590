"""Batch indexing jobs: progress, formats, cancel, resume after a restart, search during a job."""
import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .conftest import load_corpus, make_client

LIGHT = {"dense_encoder": None, "multivector_encoder": None}  # faster: SPLADE + BM25 only


def write_jsonl(path, docs):
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def wait(c, job_id, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        j = c.get(f"/jobs/{job_id}").json()
        if j["status"] not in ("queued", "running", "cancelling"):
            return j
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running")


@pytest.fixture
def docs():
    return load_corpus(per_topic=2, topics=12)  # 24 documents


def test_jsonl_job_progress_and_search_during_it(tmp_path, docs):
    src = write_jsonl(tmp_path / "docs.jsonl", docs)
    with make_client(tmp_path / "data", import_dir=tmp_path, job_chunk_docs=5) as c:
        c.post("/collections", json={"name": "j", **LIGHT})
        r = c.post("/collections/j/jobs", json={"source": str(src)})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["status"] in ("queued", "running") and job["format"] == "jsonl"
        seen = c.post("/collections/j/search", json={"query": "solar", "mode": "bm25"})
        assert seen.status_code == 200  # search is served while the job runs
        final = wait(c, job["id"])
        assert final["status"] == "done" and final["done"] == final["total"] == len(docs)
        # its times: created <= started <= finished, ISO 8601 UTC (same-length strings sort as time)
        assert final["created"].endswith("Z") and final["created"] <= final["started"] <= final["finished"]
        assert final["created"] == job["created"]
        assert c.get("/collections/j").json()["documents"] == len(docs)
        assert c.get("/collections/j/documents/energy-01").json()["metadata"]["topic"] == "energy"
        assert job["id"] in [j["id"] for j in c.get("/jobs").json()["jobs"]]


def test_parquet_and_beir_sources(tmp_path, docs):
    table = pa.table({"id": [d["id"] for d in docs[:6]], "text": [d["text"] for d in docs[:6]],
                      "topic": [d["metadata"]["topic"] for d in docs[:6]]})
    pq.write_table(table, tmp_path / "docs.parquet")
    beir = tmp_path / "beir"
    beir.mkdir()
    write_jsonl(beir / "corpus.jsonl", [{"_id": f"b{i}", "title": "T", "text": d["text"]}
                                        for i, d in enumerate(docs[:4])])
    with make_client(tmp_path / "data", import_dir=tmp_path) as c:
        c.post("/collections", json={"name": "p", **LIGHT})
        j1 = c.post("/collections/p/jobs", json={"source": str(tmp_path / "docs.parquet")}).json()
        j2 = c.post("/collections/p/jobs", json={"source": str(beir)}).json()
        assert (j1["format"], j2["format"]) == ("parquet", "beir")
        assert wait(c, j1["id"])["status"] == "done" and wait(c, j2["id"])["status"] == "done"
        assert c.get("/collections/p").json()["documents"] == 10
        assert c.get(f"/collections/p/documents/{docs[0]['id']}").json()["metadata"] == {
            "topic": docs[0]["metadata"]["topic"]}
        assert c.get("/collections/p/documents/b0").json()["text"].startswith("T ")


def test_cancel(tmp_path):
    docs = load_corpus(per_topic=10, topics=20)
    src = write_jsonl(tmp_path / "all.jsonl", docs)
    with make_client(tmp_path / "data", import_dir=tmp_path, job_chunk_docs=4) as c:
        c.post("/collections", json={"name": "k", **LIGHT})
        job = c.post("/collections/k/jobs", json={"source": str(src)}).json()
        assert c.delete(f"/jobs/{job['id']}").status_code == 204
        final = wait(c, job["id"])
        assert final["status"] == "cancelled" and final["done"] < len(docs)
        assert final["finished"] is not None and final["finished"] >= final["created"]
        assert c.delete(f"/jobs/{job['id']}").status_code == 409
        # a cancel takes effect between chunks: what was upserted is exactly what is counted
        assert c.get("/collections/k").json()["documents"] == final["done"]


def test_resume_after_restart_skips_done_documents(tmp_path, docs):
    src = write_jsonl(tmp_path / "docs.jsonl", docs)
    data = tmp_path / "data"
    with make_client(data) as c:
        c.post("/collections", json={"name": "r", **LIGHT})
    # the state a killed server leaves behind: running, 10 documents recorded as done
    (data / ".jobs").mkdir(exist_ok=True)
    (data / ".jobs" / "abc123.json").write_text(json.dumps({
        "id": "abc123", "collection": "r", "source": str(src), "format": "jsonl",
        "status": "running", "done": 10, "total": len(docs), "error": None, "created": 1.0}))
    with make_client(data) as c:
        final = wait(c, "abc123")
        assert final["status"] == "done" and final["done"] == len(docs)
        assert c.get("/collections/r").json()["documents"] == len(docs) - 10
        assert c.get(f"/collections/r/documents/{docs[0]['id']}").status_code == 404
        assert c.get(f"/collections/r/documents/{docs[-1]['id']}").status_code == 200


def test_job_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{not json}\n')
    with make_client(tmp_path / "data", import_dir=tmp_path) as c:
        c.post("/collections", json={"name": "e", **LIGHT})
        assert c.post("/collections/e/jobs", json={"source": str(tmp_path / "missing")}).status_code == 400
        assert c.post("/collections/nope/jobs", json={"source": str(bad)}).status_code == 404
        assert c.post("/collections/e/jobs", json={"source": str(bad), "format": "csv"}).status_code == 422
        assert c.get("/jobs/nope").status_code == 404
        job = c.post("/collections/e/jobs", json={"source": "bad.jsonl"}).json()  # relative
        assert job["source"] == "bad.jsonl"
        final = wait(c, job["id"])
        assert final["status"] == "failed" and "line 2" in final["error"]


def test_job_sources_are_confined_to_the_import_dir(tmp_path, docs, record_property):
    """Without LSR_IMPORT_DIR no server path is read; with it, nothing outside it — and the
    answer never tells whether an outside path exists."""
    imports = tmp_path / "imports"
    imports.mkdir()
    write_jsonl(imports / "ok.jsonl", docs[:2])
    (imports / "escape").symlink_to("/etc")
    with make_client(tmp_path / "off") as c:
        c.post("/collections", json={"name": "e", **LIGHT})
        for source in ("/etc/shadow", "/nonexistent", str(imports / "ok.jsonl")):
            r = c.post("/collections/e/jobs", json={"source": source})
            assert r.status_code == 403 and "LSR_IMPORT_DIR" in r.json()["detail"], r.text
    with make_client(tmp_path / "on", import_dir=imports) as c:
        c.post("/collections", json={"name": "e", **LIGHT})
        answers = set()
        for source in ("/etc/shadow", "/etc/nonexistent", "../ok.jsonl", "../../etc/passwd",
                       "escape/passwd", str(tmp_path)):
            r = c.post("/collections/e/jobs", json={"source": source})
            assert r.status_code == 403, (source, r.text)
            record_property("reliability:bad inputs (strict types, ids, model paths, job sources)", 1)
            answers.add(r.json()["detail"].replace(repr(source), "SRC"))
        assert len(answers) == 1  # the same words whether the path exists or not
        assert str(tmp_path) not in answers.pop()
        r = c.post("/collections/e/jobs", json={"source": str(imports / "ok.jsonl")})
        assert r.status_code == 202 and wait(c, r.json()["id"])["status"] == "done"


def test_upload_job(tmp_path, docs):
    body = "".join(json.dumps(d) + "\n" for d in docs[:5]).encode()
    with make_client(tmp_path / "data") as c:
        c.post("/collections", json={"name": "u", **LIGHT})
        r = c.post("/collections/u/jobs/upload", files={"file": ("docs.jsonl", body, "application/json")})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["source"] == "upload:docs.jsonl"  # not the server's path of the upload
        assert wait(c, job["id"])["status"] == "done"
        assert c.get("/collections/u").json()["documents"] == 5
        assert c.post("/collections/u/jobs/upload").status_code == 422  # no file
        # a failing upload is deleted too, and so is a cancelled one
        r = c.post("/collections/u/jobs/upload", files={"file": ("bad.jsonl", b"{nope\n", "application/json")})
        assert wait(c, r.json()["id"])["status"] == "failed"
    assert list((tmp_path / "data" / ".uploads").iterdir()) == []  # deleted when their jobs ended
