"""`lsr cluster serve` as users run it: a process that starts its own single-node Ray on
127.0.0.1 (the suite runs in a loopback-only namespace), serves the REST API until SIGTERM,
then takes its Ray down and exits 0."""
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

pytest.importorskip("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_lsr_cluster_serve_serves_until_sigterm(tmp_path):
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "cluster", "serve", "--root", str(tmp_path / "root"),
         "--shards", "2", "--replicas", "1", "--num-cpus", "4", "--cpus-per-replica", "0.1",
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        with httpx.Client(base_url=url, timeout=300) as c:
            assert c.get("/readyz").json()["shards"] == 2
            assert c.post("/collections", json={"name": "notes", "sparse_encoder": None, "dense_encoder": None,
                                                "multivector_encoder": None}).status_code == 201
            docs = [{"id": f"n{i}", "text": t} for i, t in enumerate(["alpine lakes", "desert dunes", "river deltas"])]
            assert c.put("/collections/notes/documents", json={"documents": docs}).json()["upserted"] == 3
            hits = c.post("/collections/notes/search", json={"query": "dunes", "mode": "bm25"}).json()["results"]
            assert [h["id"] for h in hits] == ["n1"]
            assert c.get("/").status_code == 200  # the web console, as on a single node
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        log.close()
