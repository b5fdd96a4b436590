"""`make run`'s command, for real: `python -m service.demo` indexes the bundled corpus and
serves it; a search over HTTP finds the documents, and a restart reuses the index."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(data_dir: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "service.demo", "--data-dir", str(data_dir),
                             "--port", str(port)], cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the demo server did not become ready")


def test_demo_indexes_and_serves(tmp_path):
    for attempt in range(2):  # the second start finds the index complete and reuses it
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = serve(tmp_path / "demo", port)
        try:
            wait_ready(proc, url)
            stats = httpx.get(f"{url}/collections/demo", timeout=10).json()
            assert stats["documents"] == 200 and stats["state"] == "ready"
            r = httpx.post(f"{url}/collections/demo/search", timeout=30,
                           json={"query": "how do wind turbines make electricity", "k": 3})
            assert r.status_code == 200 and r.json()["results"][0]["metadata"]["topic"] == "energy"
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=60)
        assert "collection 'demo' with 200 documents" in out
