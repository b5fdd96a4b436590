"""OpenAI compatibility, checked with the real `openai` client against a real server: base64
(the client's default) and float encodings, token-id input, `dimensions`, /v1/models — and the
README's example block, run as printed."""
import base64
import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

from service.app import create_app
from service.settings import Settings

from .live_server import serve

openai = pytest.importorskip("openai")
KEY = "change-me-admin"  # the README's key
README = Path(__file__).resolve().parents[2] / "service" / "README.md"


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("data"), _env_file=None, api_keys=KEY,
                              read_keys="reader"))
    with serve(app) as u:
        yield u


@pytest.fixture(scope="module")
def oa(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)


def _vec(item) -> np.ndarray:
    """The vector, also where the client leaves it as sent (encoding_format="base64" given)."""
    if isinstance(item.embedding, str):
        return np.frombuffer(base64.b64decode(item.embedding), dtype="<f4").astype(np.float64)
    return np.asarray(item.embedding, dtype=np.float64)


def test_base64_default_and_float_give_the_same_vectors(oa, url):
    texts = ["hello world", "solar power"]
    b64 = oa.embeddings.create(model="all-MiniLM-L6-v2", input=texts)  # client sends base64
    flt = oa.embeddings.create(model="all-MiniLM-L6-v2", input=texts, encoding_format="float")
    assert [d.index for d in b64.data] == [0, 1] and b64.model == "all-MiniLM-L6-v2"
    for a, b in zip(b64.data, flt.data):
        assert len(a.embedding) == 384
        np.testing.assert_allclose(_vec(a), _vec(b), atol=1e-6)
    assert np.linalg.norm(_vec(b64.data[0])) == pytest.approx(1.0, abs=1e-4)
    assert b64.usage.prompt_tokens == b64.usage.total_tokens > 4
    # on the wire: little-endian float32 bytes, base64
    import httpx
    raw = httpx.post(f"{url}/v1/embeddings", headers={"Authorization": f"Bearer {KEY}"},
                     json={"input": "hello world", "encoding_format": "base64"}).json()
    wire = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(wire, _vec(flt.data[0]), atol=1e-6)


def test_token_id_input(oa):
    from transformers import AutoTokenizer

    from encoders.models import resolve
    tok = AutoTokenizer.from_pretrained(resolve("all-MiniLM-L6-v2"))
    ids = tok("hello world", add_special_tokens=False)["input_ids"]
    assert ids == [7592, 2088]  # as the README says
    text = oa.embeddings.create(model="all-MiniLM-L6-v2", input=["hello world", "solar power"])
    one = oa.embeddings.create(model="all-MiniLM-L6-v2", input=ids)  # one input as a list of ints
    np.testing.assert_allclose(_vec(one.data[0]), _vec(text.data[0]), atol=1e-5)
    with_special = tok(["hello world", "solar power"])["input_ids"]  # [CLS] ... [SEP]: dropped
    many = oa.embeddings.create(model="all-MiniLM-L6-v2", input=with_special)
    for a, b in zip(many.data, text.data):
        np.testing.assert_allclose(_vec(a), _vec(b), atol=1e-5)
    assert many.usage.prompt_tokens == sum(len(x) for x in with_special)
    with pytest.raises(openai.BadRequestError, match=r"input\[0\].*99999999.*vocabulary"):
        oa.embeddings.create(model="all-MiniLM-L6-v2", input=[[7592, 99999999]])
    with pytest.raises(openai.BadRequestError, match=r"input\[1\].*empty"):
        oa.embeddings.create(model="all-MiniLM-L6-v2", input=[[7592], []])
    with pytest.raises(openai.BadRequestError, match=r"input\[0\].*special tokens"):
        oa.embeddings.create(model="all-MiniLM-L6-v2", input=[[101, 102]])
    with pytest.raises(openai.UnprocessableEntityError, match="input"):
        oa.embeddings.create(model="all-MiniLM-L6-v2", input=[7592, -1])


def test_dimensions_truncate_and_renormalise(oa):
    full = oa.embeddings.create(model="all-MiniLM-L6-v2", input="wind turbines", encoding_format="float")
    for fmt in ("base64", "float", None):  # None: the client's default (base64, decoded by it)
        cut = oa.embeddings.create(model="all-MiniLM-L6-v2", input="wind turbines", dimensions=64,
                                   **({"encoding_format": fmt} if fmt else {}))
        v = _vec(cut.data[0])
        assert v.shape == (64,) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
        head = _vec(full.data[0])[:64]
        np.testing.assert_allclose(v, head / np.linalg.norm(head), atol=1e-5)
    same = oa.embeddings.create(model="all-MiniLM-L6-v2", input="wind turbines", dimensions=384)
    np.testing.assert_allclose(_vec(same.data[0]), _vec(full.data[0]), atol=1e-6)
    with pytest.raises(openai.BadRequestError, match="dimensions.*385.*384"):
        oa.embeddings.create(model="all-MiniLM-L6-v2", input="x", dimensions=385)
    with pytest.raises(openai.UnprocessableEntityError, match="dimensions"):
        oa.embeddings.create(model="all-MiniLM-L6-v2", input="x", dimensions=0)
    with pytest.raises(openai.BadRequestError, match="dimensions"):  # sparse: nothing to cut
        oa.embeddings.create(model="splade-tiny", input="x", dimensions=8,
                             extra_body={"encoding_format": "sparse"})


def test_sparse_extension_through_the_client(oa, url):
    import httpx
    r = httpx.post(f"{url}/v1/embeddings", headers={"X-API-Key": KEY},
                   json={"model": "splade-tiny", "input": [[20288, 26384]], "encoding_format": "sparse"})
    assert r.status_code == 200, r.text
    by_ids = r.json()["data"][0]["embedding"]
    by_text = httpx.post(f"{url}/v1/embeddings", headers={"X-API-Key": KEY},
                         json={"input": "sparse retrieval", "encoding_format": "sparse"}).json()
    assert set(by_ids) == {"indices", "values"} and by_ids["indices"]
    from transformers import AutoTokenizer

    from encoders.models import resolve
    tok = AutoTokenizer.from_pretrained(resolve("splade-tiny"))
    assert tok.decode([20288, 26384]) == "sparse retrieval"
    assert by_ids == by_text["data"][0]["embedding"]
    with pytest.raises(openai.UnprocessableEntityError, match="encoding_format"):
        oa.embeddings.create(model="all-MiniLM-L6-v2", input="x", extra_body={"encoding_format": "int8"})


def test_models_list_and_retrieve(oa, url):
    models = oa.models.list()
    ids = [m.id for m in models]
    assert ids == ["all-MiniLM-L6-v2", "splade-tiny"]
    by_id = {m.id: m for m in models.data}
    assert by_id["all-MiniLM-L6-v2"].object == "model" and by_id["all-MiniLM-L6-v2"].created > 0
    assert by_id["all-MiniLM-L6-v2"].owned_by == "lsr-search"
    assert by_id["all-MiniLM-L6-v2"].model_extra["kinds"] == ["dense", "multivector"]
    assert by_id["splade-tiny"].model_extra["kinds"] == ["sparse"]
    one = oa.models.retrieve("splade-tiny")
    assert one.id == "splade-tiny" and one.model_extra["kinds"] == ["sparse"]
    with pytest.raises(openai.NotFoundError, match="text-embedding-3-small"):
        oa.models.retrieve("text-embedding-3-small")
    # a read-only key may list models and embed; no key is a 401
    reader = openai.OpenAI(base_url=f"{url}/v1", api_key="reader", max_retries=0)
    assert [m.id for m in reader.models.list()] == ids
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()


def test_readme_example_runs_as_printed(url):
    text = README.read_text()
    block = re.search(r"```python\n(from openai import OpenAI.*?)```", text, re.S).group(1)
    assert 'base_url="http://localhost:8000/v1"' in block and f'api_key="{KEY}"' in block
    code = block.replace("http://localhost:8000", url)  # only the port differs
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    printed = out.getvalue().splitlines()
    expected = [re.search(r"# (.*?)(?: \(|:|$)", line).group(1)
                for line in block.splitlines() if line.startswith("print(")]
    assert printed == expected, (printed, expected)
