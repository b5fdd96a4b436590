"""Facets: counts of a metadata key's values over the fused candidates or over the filtered
collection, from the metadata columns (indexer/facets.py, Collection.facet_counts)."""
from collections import Counter

import pytest

from .conftest import make_client

LIGHT = {"dense_encoder": None, "multivector_encoder": None}
DOCS = [
    {"id": "a", "text": "solar panels on roofs", "metadata": {"topic": "energy", "year": 2020, "tags": ["pv", "roof"]}},
    {"id": "b", "text": "solar farms in deserts", "metadata": {"topic": "energy", "year": 2021.0, "tags": ["pv"]}},
    {"id": "c", "text": "wind farms at sea", "metadata": {"topic": "energy", "year": 2021, "tags": []}},
    {"id": "d", "text": "solar eclipses and the moon", "metadata": {"topic": "astronomy", "year": True}},
    {"id": "e", "text": "the moon orbits the earth", "metadata": {"topic": "astronomy", "year": None}},
    {"id": "f", "text": "solar system planets", "metadata": {"other": {"nested": 1}}},
    {"id": "g", "text": "no metadata at all"},
]


@pytest.fixture(scope="module")
def fc(tmp_path_factory):
    with make_client(tmp_path_factory.mktemp("facets")) as c:
        assert c.post("/collections", json={"name": "f", **LIGHT}).status_code == 201
        assert c.put("/collections/f/documents", json={"documents": DOCS}).status_code == 200
        yield c


def facets(c, **body):
    r = c.post("/collections/f/search", json={"query": "solar", "mode": "bm25", "k": 2, **body})
    assert r.status_code == 200, r.text
    return r.json()


def test_collection_scope_counts_every_document(fc):
    (topic, year, tags) = facets(fc, facets=[{"key": k, "scope": "collection"} for k in ("topic", "year", "tags")])["facets"]
    assert topic == {"key": "topic", "scope": "collection", "other": 0, "missing": 2,
                     "values": [{"value": "energy", "count": 3}, {"value": "astronomy", "count": 2}]}
    # 2021 and 2021.0 are one value; true is not 1; null is a value of its own
    assert Counter({v["value"]: v["count"] for v in year["values"]}) == Counter({2021: 2, 2020: 1, True: 1, None: 1})
    assert year["values"][0] == {"value": 2021, "count": 2} and year["missing"] == 2
    assert tags["values"] == [{"value": "pv", "count": 2}, {"value": "roof", "count": 1}]
    assert tags["missing"] == 5  # an empty list, and the documents without the key


def test_hits_scope_counts_the_candidates_not_the_page(fc):
    res = facets(fc, facets=[{"key": "topic"}])
    assert len(res["results"]) == 2 and res["candidates"] == 4  # a, b, d, f mention solar
    (topic,) = res["facets"]
    assert topic["scope"] == "hits" and topic["missing"] == 1
    assert topic["values"] == [{"value": "energy", "count": 2}, {"value": "astronomy", "count": 1}]


def test_filter_exclusions_deletes_and_size(fc):
    res = facets(fc, filter={"topic": "energy"},
                 facets=[{"key": "year", "scope": "collection", "size": 1}, {"key": "year"}])
    coll, hits = res["facets"]
    assert coll["values"] == [{"value": 2021, "count": 2}] and coll["other"] == 1
    assert sum(v["count"] for v in hits["values"]) == 2  # a and b
    res = facets(fc, query="solar -roofs", facets=[{"key": "topic"}])
    assert {v["value"]: v["count"] for v in res["facets"][0]["values"]} == {"energy": 1, "astronomy": 1}
    assert fc.delete("/collections/f/documents/d").status_code == 204
    (topic,) = facets(fc, facets=[{"key": "topic", "scope": "collection"}])["facets"]
    assert topic["values"] == [{"value": "energy", "count": 3}, {"value": "astronomy", "count": 1}]


def test_facet_counts_over_segments_add_up(tmp_path):
    from indexer.facets import FacetCounts
    with make_client(tmp_path) as c:
        c.post("/collections", json={"name": "s", **LIGHT, "index": {"flush_docs": 2}})
        for d in DOCS:
            assert c.put("/collections/s/documents", json={"documents": [d]}).status_code == 200
        coll = c.app.state.store.get("s")
        coll.wait_for_maintenance()
        assert coll.stats()["segments"] >= 2
        got = FacetCounts()
        got.add(coll.facet_counts("topic"))
        assert got.top(5) == ([("energy", 3), ("astronomy", 2)], 0) and got.missing == 2
        sub = FacetCounts()
        sub.add(coll.facet_counts("topic", ids=["a", "d", "nope"], filter={"year": {"gte": 2000}}))
        assert sub.top(5) == ([("energy", 1)], 0)


def test_bad_facets_are_422(fc):
    for bad in ([{"key": ""}], [{"key": "topic", "scope": "page"}], [{"key": "topic", "size": 0}]):
        r = fc.post("/collections/f/search", json={"query": "solar", "facets": bad})
        assert r.status_code == 422, bad
