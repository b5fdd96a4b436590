"""The README's block on highlights, facets and exclusions, run as printed against a live server,
and the /docs drop-down offers an example of each."""
import contextlib
import io
import re
from pathlib import Path

import pytest


from .live_server import serve_new

KEY = "change-me-admin"
README = Path(__file__).resolve().parents[2] / "service" / "README.md"


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with serve_new(tmp_path_factory.mktemp("data"), api_keys=KEY) as u:
        yield u


def test_readme_search_features_block_runs_as_printed(url):
    block = re.search(r"```python\n(import httpx\n.*?)```", README.read_text(), re.S).group(1)
    assert 'base_url="http://localhost:8000"' in block and KEY in block
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.replace("http://localhost:8000", url), "README.md", "exec"), {})
    expected = [re.search(r"  # (.*?)(?: \(|$)", line).group(1)
                for line in block.splitlines() if line.startswith("print(")]
    assert out.getvalue().splitlines() == expected


def test_docs_offer_examples_of_each(client):
    op = client.get("/openapi.json").json()["paths"]["/collections/{name}/search"]["post"]
    examples = op["requestBody"]["content"]["application/json"]["examples"]
    assert {"highlight", "facets", "exclusions"} <= set(examples)
    for name in ("highlight", "facets", "exclusions"):
        r = client.post("/collections/demo/search", json=examples[name]["value"])
        assert r.status_code == 200 and r.json()["results"], name
    res = client.post("/collections/demo/search", json=examples["exclusions"]["value"]).json()
    assert {e["source"] for e in res["exclusions"]} == {"syntax", "negation", "must_not"}
    props = client.get("/openapi.json").json()["components"]["schemas"]["SearchRequest"]["properties"]
    assert {"highlight", "facets", "must_not", "query_syntax", "negation"} <= set(props)
