"""Scroll / export: GET /collections/{name}/documents pages every document in id order, correct
while the collection changes between (and during) pages; `lsr export` writes them as JSONL,
locally or over REST."""
import json
import threading

import pytest

from service.app import create_app
from service.cli import main
from service.settings import Settings

from .conftest import make_client
from .live_server import serve

BM25_ONLY = {"sparse_encoder": None, "dense_encoder": None, "multivector_encoder": None}


def scroll(client, name: str, limit: int, between=None, **params) -> list[dict]:
    """Every page's documents; `between(page_no)` runs after each page."""
    docs, cursor, n = [], None, 0
    while True:
        q = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        r = client.get(f"/collections/{name}/documents", params=q)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["documents"]) <= limit
        docs += page["documents"]
        cursor = page["next_cursor"]
        if cursor is None:
            return docs
        n += 1
        if between is not None:
            between(n)


def test_scroll_every_document_in_id_order(client, corpus):
    docs = scroll(client, "demo", 7)
    ids = [d["id"] for d in docs]
    assert ids == sorted(d["id"] for d in corpus)  # all, once, in order
    by_id = {d["id"]: d for d in corpus}
    assert all(d["text"] == by_id[d["id"]]["text"] and d["metadata"] == by_id[d["id"]]["metadata"]
               for d in docs)
    # one page holds everything: no cursor
    r = client.get("/collections/demo/documents", params={"limit": 1000}).json()
    assert [d["id"] for d in r["documents"]] == ids and r["next_cursor"] is None
    assert len(client.get("/collections/demo/documents").json()["documents"]) == min(100, len(ids))


def test_scroll_with_filters(client, corpus):
    energy = scroll(client, "demo", 2, filter=json.dumps({"topic": "energy"}))
    assert [d["id"] for d in energy] == sorted(d["id"] for d in corpus if d["metadata"]["topic"] == "energy")
    topics = {"energy", "cooking"}
    both = scroll(client, "demo", 4, filter=json.dumps({"topic": {"in": sorted(topics)}}))
    assert [d["id"] for d in both] == sorted(d["id"] for d in corpus if d["metadata"]["topic"] in topics)
    assert scroll(client, "demo", 5, filter=json.dumps({"topic": "no such topic"})) == []


@pytest.mark.parametrize("params, status, field", [
    ({"limit": 0}, 422, "limit"),
    ({"limit": 1001}, 422, "limit"),
    ({"limit": "ten"}, 422, "limit"),
    ({"cursor": "not-a-cursor"}, 400, "cursor"),
    ({"cursor": "eyJ4IjogMX0"}, 400, "cursor"),  # base64 of {"x": 1}: not ours
    ({"filter": "{not json"}, 400, "filter"),
    ({"filter": "[1, 2]"}, 400, "filter"),
    ({"filter": json.dumps({"year": {"near": 2020}})}, 400, "filter"),
    ({"filter": json.dumps({"year": {"gte": "2020"}})}, 400, "filter"),
])
def test_bad_parameters_name_the_field(client, params, status, field):
    r = client.get("/collections/demo/documents", params=params)
    assert r.status_code == status, r.text
    assert field in r.json()["detail"]


def test_routes_do_not_shadow_each_other(client):
    assert client.get("/collections/missing/documents").status_code == 404
    first = client.get("/collections/demo/documents", params={"limit": 1}).json()["documents"][0]
    assert client.get(f"/collections/demo/documents/{first['id']}").json() == first  # the path route
    for method in ("DELETE", "POST"):  # the resource: GET (scroll), PUT (upsert), PATCH (metadata)
        r = client.request(method, "/collections/demo/documents")
        assert r.status_code == 405
        assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "PUT", "PATCH"}
    r = client.post("/collections/demo/documents/x/y")  # the path route's resource: GET, DELETE
    assert r.status_code == 405 and set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "DELETE"}


def test_scroll_is_correct_while_documents_change_between_pages(tmp_path):
    with make_client(tmp_path) as c:
        assert c.post("/collections", json={"name": "s", **BM25_ONLY,
                                            "index": {"flush_docs": 16}}).status_code == 201
        put = lambda *ids: c.put("/collections/s/documents", json={  # noqa: E731
            "documents": [{"id": i, "text": f"text of {i}", "metadata": {"n": k % 3}} for k, i in enumerate(ids)]})
        base = [f"d{n:03d}" for n in range(0, 100, 2)]  # d000, d002, ... d098
        assert put(*base).status_code == 200
        deleted, added = set(), set()

        def churn(page: int) -> None:
            # ahead of and behind the cursor: deletes, inserts, re-upserts (and flushes)
            lo, hi = f"d{page * 20 - 1:03d}", f"d{page * 20 + 41:03d}"
            behind, ahead = f"d{max(page * 20 - 9, 1):03d}", f"d{min(page * 20 + 31, 99):03d}"
            put(lo, hi, behind, ahead, *base[page * 4: page * 4 + 3])
            added.update({lo, hi, behind, ahead})
            victims = [base[-page * 2], base[page]]
            c.post("/collections/s/documents/delete", json={"ids": victims})
            deleted.update(victims)
        docs = scroll(c, "s", 10, between=churn)
        ids = [d["id"] for d in docs]
        assert ids == sorted(set(ids))  # strictly increasing: no duplicates
        throughout = set(base) - deleted - added
        assert throughout <= set(ids)  # every document that existed throughout came
        final = {d["id"] for d in scroll(c, "s", 1000)}
        assert set(ids) <= final | deleted  # nothing invented
        assert not (set(ids) & deleted - added - set(base))
        # and with a filter, the same guarantees for the matching documents
        docs = scroll(c, "s", 3, between=lambda p: put(f"d{p:03d}x"), filter=json.dumps({"n": 0}))
        ids = [d["id"] for d in docs]
        assert ids == sorted(set(ids)) and all(d["metadata"]["n"] == 0 for d in docs)
        now = scroll(c, "s", 1000, filter=json.dumps({"n": 0}))
        assert {d["id"] for d in now if not d["id"].endswith("x")} <= set(ids)


def test_scroll_during_concurrent_writes(tmp_path):
    """A writer thread upserts and deletes its own ids while a scroll runs: the scroll still
    returns every stable document exactly once."""
    with make_client(tmp_path) as c:
        assert c.post("/collections", json={"name": "w", **BM25_ONLY,
                                            "index": {"flush_docs": 32}}).status_code == 201
        stable = [f"s{n:04d}" for n in range(300)]
        for i in range(0, len(stable), 100):
            c.put("/collections/w/documents", json={"documents": [{"id": d, "text": "stable " + d}
                                                                  for d in stable[i:i + 100]]})
        store = c.app.state.store
        stop = threading.Event()

        def writer():
            k = 0
            while not stop.is_set():
                ids = [f"s{(k * 7 + j) % 300:04d}z" for j in range(5)]  # interleaved with stable ids
                store.upsert("w", ids, ["churn"] * 5, [None] * 5)
                store.get("w").delete(ids[:3])
                k += 1
        t = threading.Thread(target=writer)
        t.start()
        try:
            docs = scroll(c, "w", 13)
        finally:
            stop.set()
            t.join()
        ids = [d["id"] for d in docs]
        assert ids == sorted(set(ids))
        assert [i for i in ids if not i.endswith("z")] == stable


def test_lsr_export_locally_and_over_rest(tmp_path, corpus, capsys, monkeypatch):
    monkeypatch.delenv("LSR_URL", raising=False)
    data = tmp_path / "data"
    docs = corpus[:10] + [{"id": "a/b", "text": "an id with a slash", "metadata": {"topic": "ids"}},
                          {"id": "é-ü", "text": "non-ASCII id", "metadata": None}]
    app = create_app(Settings(data_dir=data, _env_file=None, api_keys="k"))
    with serve(app) as url:
        import httpx
        with httpx.Client(base_url=url, headers={"X-API-Key": "k"}) as h:
            assert h.post("/collections", json={"name": "c", **BM25_ONLY}).status_code == 201
            assert h.put("/collections/c/documents", json={"documents": docs}).status_code == 200
        monkeypatch.setenv("LSR_API_KEY", "k")
        remote_out = tmp_path / "remote.jsonl"
        assert main(["export", "c", "--url", url, "--out", str(remote_out)]) == 0
        assert f"exported {len(docs)} documents from 'c'" in capsys.readouterr().err
        # beside the running server, a local export opens the data directory read-only
        local_out = tmp_path / "local.jsonl"
        assert main(["export", "c", "--data-dir", str(data), "--out", str(local_out)]) == 0
        # to stdout, with a filter
        assert main(["export", "c", "--url", url, "--filter", '{"topic": "ids"}']) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [json.loads(x) for x in lines] == [{"id": "a/b", "text": "an id with a slash",
                                                   "metadata": {"topic": "ids"}}]
        # errors: the message names the field, the exit status is 1, no file is left
        bad_out = tmp_path / "bad.jsonl"
        assert main(["export", "c", "--url", url, "--filter", "{x", "--out", str(bad_out)]) == 1
        assert "filter" in capsys.readouterr().err and not bad_out.exists()
        assert main(["export", "nope", "--url", url]) == 1
        assert "not found" in capsys.readouterr().err
        assert main(["export", "c", "--data-dir", str(data), "--filter", "[1]"]) == 1
        assert "filter" in capsys.readouterr().err
    exported = [json.loads(x) for x in remote_out.read_text(encoding="utf-8").splitlines()]
    assert local_out.read_text(encoding="utf-8") == remote_out.read_text(encoding="utf-8")
    assert [d["id"] for d in exported] == sorted(d["id"] for d in docs)
    assert {d["id"]: (d["text"], d["metadata"]) for d in exported} == \
        {d["id"]: (d["text"], d.get("metadata")) for d in docs}
    # what `lsr index` reads back: the round trip gives the same documents
    assert main(["index", str(remote_out), "--collection", "again", "--data-dir", str(data),
                 "--no-sparse", "--no-dense", "--no-progress"]) == 0
    capsys.readouterr()
    again = tmp_path / "again.jsonl"
    assert main(["export", "again", "--data-dir", str(data), "--out", str(again)]) == 0
    assert again.read_text(encoding="utf-8") == remote_out.read_text(encoding="utf-8")
