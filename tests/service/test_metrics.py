"""/metrics: bounded label values, the process collectors, the content type and the key rules."""
import re
import sys

import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from service.middleware import METHODS

from .conftest import make_client

KEYS = {"api_keys": "adm", "read_keys": "rd"}


def _metrics(client) -> str:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    return r.text


def _invent(client, start: int, n: int) -> None:
    """Requests whose method and path a client made up, on unknown and on known paths."""
    for i in range(start, start + n):
        assert client.request(f"FOO{i}", f"/x/{i}").status_code == 404
        assert client.request(f"BAR{i}", "/healthz").status_code == 405


def test_invented_methods_and_paths_do_not_grow_metrics(tmp_path):
    with make_client(tmp_path) as c:
        _metrics(c)  # /metrics' own series exist from here on
        before = len(_metrics(c).splitlines())
        _invent(c, 0, 150)
        first = _metrics(c)
        _invent(c, 150, 150)
        second = _metrics(c)
    # the first batch adds a few series (method "other"), the second nothing at all
    assert len(first.splitlines()) - before < 60
    assert len(second.splitlines()) == len(first.splitlines())
    methods = set(re.findall(r'lsr_requests_total\{method="([^"]*)"', second))
    routes = set(re.findall(r'lsr_requests_total\{[^}]*route="([^"]*)"', second))
    assert "other" in methods and methods <= METHODS | {"other"}
    assert "unmatched" in routes and not any(r.startswith("/x/") for r in routes)
    assert 'lsr_requests_total{method="other",route="unmatched",status="404"} 300.0' in second


def test_process_platform_and_gc_collectors(tmp_path):
    with make_client(tmp_path) as c:
        r = c.get("/metrics")
    assert r.headers["content-type"] == CONTENT_TYPE_LATEST
    assert "python_info{" in r.text and "python_gc_objects_collected_total{" in r.text
    if sys.platform.startswith("linux"):
        assert re.search(r"^process_cpu_seconds_total \d", r.text, re.M)
        assert re.search(r"^process_resident_memory_bytes \d", r.text, re.M)


def test_openapi_declares_the_prometheus_content_type(tmp_path):
    with make_client(tmp_path) as c:
        responses = c.get("/openapi.json").json()["paths"]["/metrics"]["get"]["responses"]
    assert list(responses["200"]["content"]) == [CONTENT_TYPE_LATEST]


@pytest.mark.parametrize("settings,headers,status", [
    ({}, {}, 200),  # no keys at all: open (to loopback clients)
    (KEYS, {}, 401),
    (KEYS, {"X-API-Key": "nope"}, 401),
    (KEYS, {"X-API-Key": "rd"}, 200),
    (KEYS, {"Authorization": "Bearer adm"}, 200),
    # a metrics key replaces the API keys on /metrics, whether or not those are set
    ({**KEYS, "metrics_key": "mk"}, {}, 401),
    ({**KEYS, "metrics_key": "mk"}, {"X-API-Key": "rd"}, 401),
    ({**KEYS, "metrics_key": "mk"}, {"Authorization": "Bearer adm"}, 401),
    ({**KEYS, "metrics_key": "mk"}, {"X-API-Key": "mk"}, 200),
    ({**KEYS, "metrics_key": "mk"}, {"Authorization": "Bearer mk"}, 200),
    ({"metrics_key": "mk"}, {}, 401),
    ({"metrics_key": "mk"}, {"X-API-Key": "mkx"}, 401),
    ({"metrics_key": "mk"}, {"X-API-Key": "mk"}, 200),
])
def test_metrics_auth(tmp_path, settings, headers, status):
    with make_client(tmp_path, **settings) as c:
        r = c.get("/metrics", headers=headers)
    assert r.status_code == status, r.text
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"
    else:
        assert "lsr_requests_total" in r.text
