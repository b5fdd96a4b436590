"""PATCH .../documents: metadata changed without re-encoding; the text and vectors stay."""
from .conftest import load_corpus, make_client

LIGHT = {"dense_encoder": None, "multivector_encoder": None}


def test_patch_metadata_merges_or_replaces_and_keeps_the_rest(tmp_path):
    docs = load_corpus(per_topic=2, topics=4)
    a, b = docs[0]["id"], docs[1]["id"]
    with make_client(tmp_path) as c:
        c.post("/collections", json={"name": "m", **LIGHT})
        c.put("/collections/m/documents", json={"documents": docs})
        body = {"query": docs[0]["text"], "mode": "sparse", "k": 3}
        before = c.post("/collections/m/search", json=body).json()["results"]
        r = c.patch("/collections/m/documents", json={"documents": [
            {"id": a, "metadata": {"year": None, "reviewed": True}}]})
        assert r.status_code == 200 and r.json() == {"updated": 1}
        got = c.get(f"/collections/m/documents/{a}").json()
        assert got["metadata"] == {"topic": docs[0]["metadata"]["topic"], "reviewed": True}
        assert got["text"] == docs[0]["text"]
        after = c.post("/collections/m/search", json=body).json()["results"]
        assert [(x["id"], round(x["score"], 5)) for x in after] == [(x["id"], round(x["score"], 5)) for x in before]
        assert c.post("/collections/m/search", json={**body, "filter": {"reviewed": True}}).json()["results"][0]["id"] == a
        r = c.patch("/collections/m/documents", json={"merge": False, "documents": [{"id": b, "metadata": {"x": 1}}]})
        assert r.status_code == 200 and c.get(f"/collections/m/documents/{b}").json()["metadata"] == {"x": 1}
        # an unknown id: 404 naming it, and the other update in the request is not applied
        r = c.patch("/collections/m/documents", json={"documents": [
            {"id": a, "metadata": {"reviewed": False}}, {"id": "nope", "metadata": {}}]})
        assert r.status_code == 404 and "nope" in r.json()["detail"]
        assert c.get(f"/collections/m/documents/{a}").json()["metadata"]["reviewed"] is True
        for bad in ({"documents": []}, {"documents": [{"id": a, "metadata": [1]}]},
                    {"documents": [{"id": a}]}, {"documents": [{"id": a, "metadata": {}}], "merge": "yes"}):
            assert c.patch("/collections/m/documents", json=bad).status_code == 422, bad
        r = c.patch("/collections/m/documents", json={"documents": [{"id": a, "metadata": {}}] * 2})
        assert r.status_code == 400 and "twice" in r.json()["detail"]
