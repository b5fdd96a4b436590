"""One writer, many readers per data directory: a writer app and a follower app in one process
(flock is per open file, so the second app does not get the writer lock), and a real
`lsr serve --workers 2`. Collections are BM25-only: no model runs, the tests stay fast."""
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from indexer.datadir import acquire_writer
from service.app import create_app
from service.cli import main
from service.settings import Settings

ADMIN, READER = {"X-API-Key": "admin"}, {"X-API-Key": "reader"}
BM25_ONLY = {"sparse_encoder": None, "dense_encoder": None, "multivector_encoder": None}
REPO = Path(__file__).resolve().parents[2]


def app(data: Path):
    return create_app(Settings(data_dir=data, _env_file=None, refresh_ms=50, api_keys="admin",
                               read_keys="reader"))


def until(check, timeout: float = 10.0):
    """Poll `check` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def hit_ids(client, query: str, collection: str = "c", headers=READER) -> list[str]:
    r = client.post(f"/collections/{collection}/search", headers=headers,
                    json={"query": query, "mode": "bm25", "k": 5})
    assert r.status_code == 200, r.text
    return [h["id"] for h in r.json()["results"]]


def upsert(client, *docs, collection: str = "c"):
    return client.put(f"/collections/{collection}/documents", headers=ADMIN,
                      json={"documents": [{"id": i, "text": t} for i, t in docs]})


@pytest.fixture
def data(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def writer(data):
    with TestClient(app(data)) as c:
        assert c.post("/collections", headers=ADMIN, json={"name": "c", **BM25_ONLY}).status_code == 201
        yield c


@pytest.fixture
def follower(writer, data):
    with TestClient(app(data)) as c:
        yield c


def test_the_follower_reads_what_the_writer_writes(writer, follower):
    assert writer.get("/readyz").json()["role"] == "writer"
    ready = follower.get("/readyz").json()
    assert ready["role"] == "follower" and ready["status"] == "ready"
    assert time.time() - ready["last_refresh"] < 5
    r = follower.get("/collections", headers=READER)  # no 409: the follower opens read-only
    assert r.status_code == 200 and [c["name"] for c in r.json()["collections"]] == ["c"]
    assert upsert(writer, ("w1", "solar panels on a sunny roof")).status_code == 200
    assert until(lambda: hit_ids(follower, "solar panels")) == ["w1"]  # within refresh_ms (50 ms)


def test_writes_through_the_follower_are_forwarded_and_read_at_once(writer, follower, data):
    r = upsert(follower, ("f1", "wind turbines turn air into power"))
    assert r.status_code == 200 and r.json() == {"upserted": 1}
    assert hit_ids(follower, "wind turbines") == ["f1"]  # read-your-writes: no waiting
    assert hit_ids(writer, "wind turbines") == ["f1"]
    # auth is the writer's, with the client's key passed through
    assert upsert(follower, ("f2", "x")).status_code == 200
    r = follower.put("/collections/c/documents", headers=READER, json={"documents": [{"id": "f3", "text": "x"}]})
    assert r.status_code == 403 and "read-only" in r.json()["detail"]
    assert follower.put("/collections/c/documents", json={"documents": []}).status_code == 401
    assert follower.post("/collections/c/documents/delete", headers=ADMIN,
                         json={"ids": ["f2"]}).json() == {"deleted": 1}
    assert follower.get("/collections/c/documents/f2", headers=READER).status_code == 404

    r = follower.post("/collections", headers=ADMIN, json={"name": "d", **BM25_ONLY})
    assert r.status_code == 201 and r.json()["name"] == "d"
    assert follower.get("/collections/d", headers=READER).status_code == 200
    assert follower.delete("/collections/d", headers=ADMIN).status_code == 204
    assert follower.get("/collections/d", headers=READER).status_code == 404
    assert not (data / "d").exists()

    lines = "".join(json.dumps({"id": f"j{i}", "text": f"job document {i} about glaciers"}) + "\n"
                    for i in range(10))
    r = follower.post("/collections/c/jobs/upload", headers=ADMIN,
                      files={"file": ("docs.jsonl", io.BytesIO(lines.encode()), "application/octet-stream")})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    job = until(lambda: (j := follower.get(f"/jobs/{job_id}", headers=READER).json())["status"] == "done" and j)
    assert job["done"] == job["total"] == 10  # the progress is the writer's
    assert job_id in [j["id"] for j in follower.get("/jobs", headers=READER).json()["jobs"]]
    assert until(lambda: len(hit_ids(follower, "glaciers")) == 5)


def test_when_the_writer_stops_the_follower_serves_reads_and_refuses_writes(data):
    with ExitStack() as writer_running:
        writer = writer_running.enter_context(TestClient(app(data)))
        writer.post("/collections", headers=ADMIN, json={"name": "c", **BM25_ONLY})
        with TestClient(app(data)) as follower:
            assert upsert(follower, ("a", "mountain lakes in spring")).status_code == 200
            writer_running.close()  # the writer stops; the follower keeps serving
            assert not (data / ".writer.sock").exists()
            assert hit_ids(follower, "mountain lakes") == ["a"]
            r = upsert(follower, ("b", "x"))
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert "writer is not available" in r.json()["detail"]
            assert follower.get("/readyz").json()["role"] == "follower"


def test_local_search_beside_a_running_server(writer, data, tmp_path, capsys):
    assert upsert(writer, ("s1", "sourdough bread needs a starter"), ("s2", "rice cooks in stock")).status_code == 200
    assert main(["search", "sourdough starter", "--collection", "c", "--data-dir", str(data),
                 "--mode", "bm25", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["id"] == "s1"
    src = tmp_path / "more.jsonl"
    src.write_text(json.dumps({"id": "x", "text": "y"}) + "\n")
    assert main(["index", str(src), "--collection", "c", "--data-dir", str(data), "--no-progress"]) == 1
    assert "another process is its writer" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_with_two_workers(tmp_path):
    """A real `lsr serve --workers 2`: one writer, one follower, 200 mixed requests without an
    error, every upserted document found afterwards, and a clean stop."""
    data, port = tmp_path / "data", _free_port()
    env = {**os.environ, "LSR_REFRESH_MS": "50", "LSR_API_KEYS": "", "LSR_READ_KEYS": ""}
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--workers", "2",
                             "--data-dir", str(data), "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    # no keep-alive: every request is a new connection, which either worker may accept
    http = httpx.Client(base_url=base, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))
    try:
        seen = set()

        def both_roles_answer() -> bool:
            try:
                seen.add(http.get("/readyz").json()["role"])
            except httpx.TransportError:  # not listening yet
                assert proc.poll() is None, proc.stderr.read().decode()
            return {"writer", "follower"} <= seen
        until(both_roles_answer, timeout=120)

        assert http.post("/collections", json={"name": "c", **BM25_ONLY}).status_code == 201
        errors, written = [], []

        def client(worker: int) -> None:
            for i in range(50):
                if i % 2 == 0:
                    doc_id = f"d{worker}-{i}"
                    r = http.put("/collections/c/documents",
                                 json={"documents": [{"id": doc_id, "text": f"topic zq{worker}x{i} report"}]})
                    written.append(doc_id)
                else:
                    r = http.post("/collections/c/search", json={"query": f"zq{worker}x{i - 1}", "mode": "bm25"})
                if r.status_code != 200:
                    errors.append((r.status_code, r.text))
        threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors and len(written) == 100

        def found(doc_id: str) -> bool:
            worker, i = doc_id[1:].split("-")
            r = http.post("/collections/c/search", json={"query": f"zq{worker}x{i}", "mode": "bm25", "k": 1})
            return [h["id"] for h in r.json()["results"]] == [doc_id]
        for doc_id in written:  # a follower may lag by refresh_ms
            until(lambda doc_id=doc_id: found(doc_id), timeout=10)
    finally:
        http.close()
        proc.terminate()  # uvicorn's supervisor stops its workers, each through its lifespan
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0, proc.stderr.read().decode()
    assert not (data / ".writer.sock").exists()
    lock = acquire_writer(data)  # released: the next server becomes the writer
    assert lock is not None
    lock.close()
