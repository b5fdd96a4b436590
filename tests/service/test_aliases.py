"""Aliases: a name switched atomically from one collection to another (zero-downtime reindex)."""
from .conftest import load_corpus, make_client

LIGHT = {"dense_encoder": None, "multivector_encoder": None}


def ids(res):
    return {r["id"] for r in res.json()["results"]}


def test_an_alias_switches_searches_and_writes_at_once(tmp_path):
    docs = load_corpus(per_topic=2, topics=6)
    energy = [d for d in docs if d["metadata"]["topic"] == "energy"]
    with make_client(tmp_path) as c:
        for name, part in (("v1", docs[:6]), ("v2", docs[6:] + energy)):
            assert c.post("/collections", json={"name": name, **LIGHT}).status_code == 201
            assert c.put(f"/collections/{name}/documents", json={"documents": part}).status_code == 200
        r = c.put("/aliases/docs", json={"collection": "v1"})
        assert r.status_code == 201 and r.json() == {"alias": "docs", "collection": "v1"}
        body = {"query": "solar power energy", "mode": "bm25", "k": 20}
        assert ids(c.post("/collections/docs/search", json=body)) <= {d["id"] for d in docs[:6]}
        assert c.get("/collections/docs").json()["documents"] == 6
        assert c.put("/aliases/docs", json={"collection": "v2"}).status_code == 200  # a switch
        assert ids(c.post("/collections/docs/search", json=body)) <= {d["id"] for d in docs[6:] + energy}
        assert c.get("/aliases").json() == {"aliases": [{"alias": "docs", "collection": "v2"}]}
        assert c.get("/aliases/docs").json()["collection"] == "v2"
        # writes through the alias land in the collection it points at
        new = {"id": "via-alias", "text": "written through the alias", "metadata": {}}
        assert c.put("/collections/docs/documents", json={"documents": [new]}).status_code == 200
        assert c.get("/collections/v2/documents/via-alias").status_code == 200
        assert c.get("/collections/v1/documents/via-alias").status_code == 404

        # names: an alias is not a collection's name, nor the other way round; no alias chains
        assert c.put("/aliases/v1", json={"collection": "v2"}).status_code == 409
        assert c.post("/collections", json={"name": "docs", **LIGHT}).status_code == 409
        r = c.put("/aliases/other", json={"collection": "docs"})
        assert r.status_code == 404 and "alias" in r.json()["detail"]
        assert c.put("/aliases/x", json={"collection": "nope"}).status_code == 404
        assert c.put("/aliases/x", json={"collection": 3}).status_code == 422
        assert c.put("/aliases/bad%2Fname", json={"collection": "v2"}).status_code in (400, 404, 422)
        # a collection an alias points at cannot be deleted from under it, nor through the alias
        r = c.delete("/collections/v2")
        assert r.status_code == 409 and "docs" in r.json()["detail"]
        assert c.delete("/collections/docs").status_code in (404, 409)
        assert c.get("/collections/v2").status_code == 200
    with make_client(tmp_path) as c:  # kept across a restart
        assert c.get("/aliases/docs").json()["collection"] == "v2"
        assert c.delete("/aliases/docs").status_code == 204
        assert c.delete("/aliases/docs").status_code == 404
        assert c.post("/collections/docs/search", json={"query": "x", "mode": "bm25"}).status_code == 404
        assert c.delete("/collections/v2").status_code == 204
