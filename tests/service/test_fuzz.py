"""Property-based fuzzing of the OpenAPI schema: no request, valid or not, gets a 5xx.

Bodies come from the request schemas themselves (a small JSON-Schema-to-strategy translation
below) or are arbitrary JSON; path parameters mix real and unknown names. Runs on its own app and data directory,
so DELETE routes cannot disturb other tests. Bounded: about 150 examples in all.
"""
import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from .conftest import load_corpus, make_client

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory):
    with make_client(tmp_path_factory.mktemp("fuzz"), max_batch_texts=8, max_k=200) as c:
        c.post("/collections", json={"name": "fz"})
        c.put("/collections/fz/documents", json={"documents": load_corpus(per_topic=1, topics=6)})
        yield c


def from_schema(schema) -> st.SearchStrategy:
    """Values mostly valid for a JSON schema (objects, arrays, scalars with bounds, enums, anyOf)."""
    if not isinstance(schema, dict) or not schema:
        return json_values
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([from_schema(s) for s in schema["anyOf"]])
    t = schema.get("type")
    if t == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        opt = {k: from_schema(v) for k, v in props.items() if k not in required}
        return st.fixed_dictionaries({k: from_schema(props[k]) for k in required}, optional=opt) \
            if props else st.dictionaries(st.text(max_size=8), json_values, max_size=3)
    if t == "array":
        return st.lists(from_schema(schema.get("items", {})), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 4), 4))
    if t == "string":
        return st.text(min_size=schema.get("minLength", 0), max_size=30)
    if t in ("integer", "number"):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if t == "integer":
            return st.integers(lo, hi if hi is not None else (lo or 0) + 2000)
        return st.floats(lo, hi if hi is not None else 1e6, allow_nan=False)
    if t == "boolean":
        return st.booleans()
    if t == "null":
        return st.none()
    return json_values


def _inline(schema, components, depth=0):
    """Resolve $ref pointers so hypothesis-jsonschema sees one self-contained schema."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(components[schema["$ref"].split("/")[-1]], components, depth + 1)
        return {k: _inline(v, components, depth) for k, v in schema.items()
                if k not in ("examples", "example", "discriminator")}
    if isinstance(schema, list):
        return [_inline(v, components, depth) for v in schema]
    return schema


def operations():
    from service.app import create_app
    from service.settings import Settings
    spec = create_app(Settings(_env_file=None)).openapi()
    comps = spec.get("components", {}).get("schemas", {})
    ops = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            ops.append((path, method, _inline(body, comps) if body else None))
    return ops


OPS = operations()
names = st.sampled_from(["fz", "missing", "a" * 70]) | st.text(min_size=1, max_size=10)


@pytest.mark.parametrize("path,method,schema", OPS, ids=[f"{m.upper()} {p}" for p, m, _ in OPS])
def test_no_5xx(fuzz_client, path, method, schema, record_property):
    bodies = json_values if schema is None else (from_schema(schema) | json_values)

    @settings(max_examples=8, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=bodies, name=names, other=names)
    def run(body, name, other):
        url = path.replace("{name}", quote(name, safe="")).replace("{doc_id}", quote(other, safe="")) \
            .replace("{job_id}", quote(other, safe=""))
        if name == "fz" and method == "delete" and path == "/collections/{name}":
            name = "missing"  # keep the fuzzed collection for the other examples
            url = path.replace("{name}", name).replace("{doc_id}", "x")
        r = fuzz_client.request(method.upper(), url, content=json.dumps(body).encode(),
                                headers={"content-type": "application/json"})
        assert r.status_code < 500, (method, url, body, r.text)
        if r.status_code >= 400:
            assert r.json().get("detail")  # every error says why
        record_property("reliability:fuzzed requests (hypothesis, no 5xx)", 1)
    run()
