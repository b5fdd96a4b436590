"""Highlighting: per hit, the fragments of its text that carry the top contributing terms,
as plain text with offsets and as an HTML-escaped marked string (service/highlight.py)."""
import html
import re

import pytest

from service.highlight import Span, fragments, query_word_spans

MODES = ["sparse", "bm25", "dense", "hybrid"]


def search(client, **body):
    r = client.post("/collections/demo/search", json={"k": 5, **body})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def check_fragment(text: str, frag: dict) -> None:
    """Offsets point into the document; `marked` is the escaped fragment with its matches marked."""
    assert text[frag["start"]:frag["start"] + len(frag["text"])] == frag["text"]
    rebuilt, pos = "", 0
    for a, b in frag["matches"]:
        assert 0 <= a < b <= len(frag["text"]) and a >= pos
        rebuilt += html.escape(frag["text"][pos:a]) + "<mark>" + html.escape(frag["text"][a:b]) + "</mark>"
        pos = b
    assert frag["marked"] == rebuilt + html.escape(frag["text"][pos:])


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_marks_the_query_words(client, mode):
    hits = search(client, query="wind turbines electricity", mode=mode, highlight=True)
    top = hits[0]
    assert "turbines" in top["text"].lower()
    frags = top["highlights"]
    assert frags, top
    for f in frags:
        check_fragment(top["text"], f)
    marked = {f["text"][a:b].lower() for f in frags for a, b in f["matches"]}
    assert "turbines" in marked or "wind" in marked


def test_splade_wordpieces_mark_whole_words(client):
    # "photovoltaic" is four wordpieces (photo ##vo ##lta ##ic) to SPLADE's tokenizer
    hits = search(client, query="photovoltaic", mode="sparse", highlight=True)
    frag = hits[0]["highlights"][0]
    words = [frag["text"][a:b] for a, b in frag["matches"]]
    assert "photovoltaic" in [w.lower() for w in words]  # the word, not a wordpiece of it
    assert all(re.fullmatch(r"\w+", w) for w in words)


def test_fragments_are_bounded_ordered_and_do_not_overlap():
    text = ("alpha " * 40 + "solar panels " + "beta " * 40 + "solar wind " + "gamma " * 40).strip()
    spans = query_word_spans(text, "solar wind panels")
    frags = fragments(text, spans, n=3, chars=60)
    assert 1 <= len(frags) <= 2
    assert frags[0]["score"] >= frags[-1]["score"]
    ranges = sorted((f["start"], f["start"] + len(f["text"])) for f in frags)
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))
    for f in frags:
        assert len(f["text"]) <= 60 + 20  # about fragment_chars: whole words at the edges
        check_fragment(text, f)


def test_markup_in_the_text_is_escaped():
    text = 'Use <script>alert("x")</script> & solar <b>panels</b>'
    frags = fragments(text, query_word_spans(text, "solar panels script"), n=1, chars=200)
    marked = frags[0]["marked"]
    assert marked.count("<mark>") == 4 and "&lt;<mark>script</mark>&gt;" in marked
    assert "<" not in marked.replace("<mark>", "").replace("</mark>", "")  # no other markup
    check_fragment(text, frags[0])


def test_merged_spans_add_the_lists_weights():
    text = "solar panels"
    spans = [Span(0, 5, "solar", 0.5), Span(0, 5, "solar", 0.25), Span(6, 12, "panel", 0.25)]
    (frag,) = fragments(text, spans)
    assert frag["terms"] == ["solar", "panel"] and frag["score"] == pytest.approx(1.0)


def test_options_and_no_match(client):
    hits = search(client, query="wind turbines", mode="bm25", k=3,
                  highlight={"fragments": 1, "fragment_chars": 30, "terms": 1})
    assert all(len(h["highlights"]) <= 1 for h in hits)
    assert len(hits[0]["highlights"][0]["terms"]) == 1
    plain = search(client, query="wind turbines", mode="bm25", k=3)
    assert all(h["highlights"] is None for h in plain)
    dense = search(client, query="zzzz qqqq", mode="dense", k=2, highlight=True)
    assert all(h["highlights"] == [] for h in dense)
