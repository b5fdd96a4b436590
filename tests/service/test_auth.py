"""Admin keys read and write, read keys only read; 401 for missing/unknown, 403 for read-only writes."""
import pytest

from .conftest import make_client


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    with make_client(tmp_path_factory.mktemp("auth"), api_keys="adm1,adm2", read_keys="rd") as c:
        yield c


def test_missing_and_unknown_keys_get_401(secured):
    r = secured.get("/collections")
    assert r.status_code == 401 and "missing API key" in r.json()["detail"]
    r = secured.get("/collections", headers={"X-API-Key": "nope"})
    assert r.status_code == 401 and "unknown" in r.json()["detail"]
    r = secured.get("/collections", headers={"Authorization": "Basic adm1"})
    assert r.status_code == 401


def test_read_key_reads_but_cannot_write(secured):
    assert secured.get("/collections", headers={"X-API-Key": "rd"}).status_code == 200
    r = secured.post("/collections", json={"name": "c"}, headers={"X-API-Key": "rd"})
    assert r.status_code == 403 and "read-only" in r.json()["detail"]
    r = secured.delete("/jobs/x", headers={"Authorization": "Bearer rd"})
    assert r.status_code == 403


def test_admin_keys_write_via_either_header(secured):
    r = secured.post("/collections", json={"name": "c", "dense_encoder": None, "multivector_encoder": None},
                     headers={"Authorization": "Bearer adm2"})
    assert r.status_code == 201, r.text
    r = secured.put("/collections/c/documents", json={"documents": [{"id": "1", "text": "hello world"}]},
                    headers={"X-API-Key": "adm1"})
    assert r.json() == {"upserted": 1}
    r = secured.post("/collections/c/search", json={"query": "hello", "mode": "bm25"},
                     headers={"X-API-Key": "rd"})
    assert [x["id"] for x in r.json()["results"]] == ["1"]


def test_health_is_open(secured):
    assert secured.get("/healthz").status_code == 200
    assert secured.get("/readyz").status_code == 200


def test_open_mode_refuses_remote_clients(tmp_path):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    app = create_app(Settings(data_dir=tmp_path, _env_file=None))
    with TestClient(app, client=("10.1.2.3", 5000)) as remote:
        r = remote.get("/collections")
        assert r.status_code == 403 and "localhost" in r.json()["detail"]
    with TestClient(app, client=("127.0.0.1", 5000)) as local:
        assert local.get("/collections").status_code == 200
