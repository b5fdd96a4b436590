"""Exclusions: must_not, -term / -"phrase" and natural-language negation remove (or demote)
the documents that contain them, in every mode (service/exclusions.py, the pipeline)."""
import pytest

from service.exclusions import Exclusion, Matcher, parse_query, penalty

MODES = ["sparse", "bm25", "dense", "hybrid"]


def search(client, **body):
    r = client.post("/collections/demo/search", json={"k": 10, **body})
    assert r.status_code == 200, r.text
    return r.json()


def texts(res) -> list[str]:
    return [h["text"].lower() for h in res["results"]]


@pytest.mark.parametrize("query, syntax, negation, left, excluded", [
    ('solar power -coal -"fossil fuels"', True, False, "solar power", ["coal", "fossil fuels"]),
    ("COVID-19 and anti-inflammatory drugs at -5 degrees", True, True,
     "COVID-19 and anti-inflammatory drugs at -5 degrees", []),
    ("solar power -coal", False, False, "solar power -coal", []),
    ("renewable energy, but not wind", True, True, "renewable energy", ["wind"]),
    ("vaccines in children without the adjuvants or mercury.", True, True, "vaccines in children.",
     ["adjuvants", "mercury"]),
    ("heart disease, don't mention statins", True, True, "heart disease", ["statins"]),
    ("heart disease that does not mention statins", True, True, "heart disease", ["statins"]),
    ("cancer cells, excluding mice", True, True, "cancer cells", ["mice"]),
    ("cancer cells, excluding mice", True, False, "cancer cells, excluding mice", []),
])
def test_parse_query(query, syntax, negation, left, excluded):
    q, found = parse_query(query, syntax, negation)
    assert q == left and [e.text for e in found] == excluded


def test_matching_is_on_words_with_plurals_folded():
    m = Matcher([Exclusion("fossil fuels", None, "must_not"), Exclusion("turbine", 0.5, "must_not"),
                 Exclusion("study", None, "syntax")])
    got = lambda t: [e.text for e in m.matches(t)]  # noqa: E731
    assert got("Burning Fossil fuel in wind Turbines") == ["fossil fuels", "turbine"]
    assert got("fossil records of fuel") == []  # a phrase is consecutive words
    assert got("two studies") == ["study"] and got("a student") == []
    assert penalty(m.matches("turbines")) == 0.5 and penalty(m.matches("fossil fuels")) is None


@pytest.mark.parametrize("mode", MODES)
def test_query_syntax_removes_documents_in_every_mode(client, mode):
    plain = search(client, query="energy from wind and water", mode=mode)
    assert any("turbines" in t for t in texts(plain))
    res = search(client, query="energy from wind and water -turbines", mode=mode)
    assert res["query"] == "energy from wind and water"
    assert res["exclusions"] == [{"text": "turbines", "weight": None, "source": "syntax"}]
    assert res["excluded"] >= 1 and res["results"]
    assert not any("turbine" in t for t in texts(res))


@pytest.mark.parametrize("mode", MODES)
def test_must_not_phrases_in_every_mode(client, mode):
    res = search(client, query="how plants grow", mode=mode, must_not=["tomato plants", "soil"])
    assert res["results"] and res["excluded"] >= 1
    for t in texts(res):
        assert "tomato plants" not in t and " soil" not in f" {t}"


def test_negation_is_off_by_default_and_then_excludes(client):
    off = search(client, query="renewable energy, but not wind", mode="bm25")
    assert off["exclusions"] is None and off["query"] is None  # searched as written
    on = search(client, query="renewable energy, but not wind", mode="hybrid", negation=True)
    assert on["query"] == "renewable energy"
    assert on["exclusions"] == [{"text": "wind", "weight": None, "source": "negation"}]
    assert not any("wind" in t for t in texts(on))


def test_a_weight_demotes_instead_of_removing(client):
    base = search(client, query="wind turbines energy", mode="sparse")
    top = base["results"][0]
    assert "wind" in top["text"].lower()
    res = search(client, query="wind turbines energy", mode="sparse",
                 must_not=[{"text": "wind", "weight": 0.9}])
    ids = [h["id"] for h in res["results"]]
    assert top["id"] in ids and ids[0] != top["id"]  # still there, lower
    score = next(h["score"] for h in res["results"] if h["id"] == top["id"])
    assert score == pytest.approx(top["score"] * 0.1, rel=1e-5)
    assert [h["score"] for h in res["results"]] == sorted((h["score"] for h in res["results"]), reverse=True)


@pytest.mark.parametrize("mode", ["sparse", "hybrid"])
def test_removed_candidates_are_refilled_from_deeper(client, mode):
    """An exclusion that removes candidates leaves no hole: the list is refilled from a deeper
    retrieval, with the documents a deeper search ranks next."""
    body = dict(query="energy from wind and water", mode=mode, k=5, depth=5)
    plain = search(client, **body)
    assert len(plain["results"]) == 5
    assert any("turbine" in t for t in texts(plain))  # the exclusion removes some of them
    res = search(client, **body, must_not=["turbines"])
    assert not any("turbine" in t for t in texts(res))
    deep = search(client, **{**body, "k": 40, "depth": 40})
    want = [h["id"] for h in deep["results"] if "turbine" not in h["text"].lower()][:5]
    left = [h["id"] for h in plain["results"] if "turbine" not in h["text"].lower()]
    assert len(want) > len(left)  # there is something to refill with
    assert len(res["results"]) == len(want)
    if mode == "sparse":  # exact here (write buffer): the next documents without the word, in order
        assert [h["id"] for h in res["results"]] == want


def test_exclusions_keep_pages_consistent(client):
    body = dict(query="energy and climate -wind", mode="hybrid", k=4)
    first = search(client, **body)
    second = search(client, offset=4, **body)
    whole = search(client, **{**body, "k": 8})
    assert [h["id"] for h in first["results"] + second["results"]] == [h["id"] for h in whole["results"]]


def test_bad_exclusions_are_400_or_422(client):
    r = client.post("/collections/demo/search", json={"query": "-wind -solar", "mode": "bm25"})
    assert r.status_code == 400 and "nothing is left" in r.json()["detail"]
    r = client.post("/collections/demo/search", json={"query": "x", "must_not": [{"text": "a", "weight": 2}]})
    assert r.status_code == 422
    r = client.post("/collections/demo/search", json={"query": "x", "must_not": [""]})
    assert r.status_code == 422


def test_every_form_of_the_negation_benchmark_parses_back():
    """benchmarks/negation.py's five surface forms give back the claim and the distractor."""
    from benchmarks.negation import TEMPLATES
    claim = "Vitamin D deficiency is associated with higher rates of infection"
    for form in TEMPLATES:
        q, found = parse_query(form.format(claim=claim, x="mice"), syntax=True, negation=True)
        assert (q, [e.text for e in found]) == (claim, ["mice"]), form
        if not form.endswith("-{x}"):  # the natural-language forms need negation
            assert parse_query(form.format(claim=claim, x="mice"), True, False)[1] == []
