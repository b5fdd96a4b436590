"""Highlighting: the fragments of a hit's text that carry the query terms which scored it.

Which words to mark, per list of the search:

- sparse (SPLADE): the document's top contributing wordpieces (query weight x document weight);
  the text is tokenised with offsets by the same tokenizer, and each token with one of those
  ids marks the whole word it is part of (``##bine`` marks ``turbines``). Expansion terms the
  text does not contain cannot be marked and are skipped.
- bm25: the top contributing terms; each word of the text with that (hashed) term is marked.
- otherwise (dense only, or no contributing term is in the text): the query's own words
  (BM25's tokenizer: no stopwords), matched with a light plural fold.

A word's weight is its terms' share of the list's score, summed over lists, so SPLADE and BM25
add up on one scale. Fragments: windows of about ``fragment_chars`` characters around the
marked words, the best (the sum of the distinct terms they carry) first, not overlapping, with
their boundaries moved to word boundaries. Each fragment comes as plain text with offsets and as
an HTML-escaped string with ``<mark>`` elements — clients choose; neither can inject markup.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass

import numpy as np

from encoders.bm25 import TOKEN_PATTERN

from . import lexical
from .exclusions import fold

_TOKEN = re.compile(TOKEN_PATTERN)
_WORDCHAR = re.compile(r"\w")


@dataclass
class Span:
    start: int
    end: int
    term: str
    weight: float


def top_terms(query, doc_row, n: int) -> dict[int, float]:
    """The n shared terms with the largest query x document weight, as shares of the score."""
    q_ids, q_vals = query
    d = doc_row.tocsr() if hasattr(doc_row, "tocsr") else doc_row
    d_ids, d_vals = np.asarray(d.indices), np.asarray(d.data, np.float64)
    common, qi, di = np.intersect1d(q_ids, d_ids, assume_unique=True, return_indices=True)
    contrib = np.asarray(q_vals, np.float64)[qi] * d_vals[di]
    total = float(contrib.sum())
    if total <= 0:
        return {}
    order = np.argsort(-contrib, kind="stable")[:n]
    return {int(common[i]): float(contrib[i] / total) for i in order if contrib[i] > 0}


def _whole_word(text: str, start: int, end: int) -> tuple[int, int]:
    while start > 0 and _WORDCHAR.match(text[start - 1]):
        start -= 1
    while end < len(text) and _WORDCHAR.match(text[end]):
        end += 1
    return start, end


def wordpiece_spans(text: str, tokenizer, terms: dict[int, float]) -> list[Span]:
    """Words of the text holding a token among ``terms`` (a fast tokenizer, with offsets)."""
    if not terms:
        return []
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False,
                    verbose=False)
    names = dict(zip(terms, tokenizer.convert_ids_to_tokens(list(terms))))
    out = []
    for tid, (s, e) in zip(enc["input_ids"], enc["offset_mapping"]):
        if tid in terms and e > s:
            s, e = _whole_word(text, s, e)
            out.append(Span(s, e, names[tid], terms[tid]))
    return out


def bm25_spans(text: str, terms: dict[int, float], names: dict[int, str]) -> list[Span]:
    out = []
    for m in _TOKEN.finditer(text):
        t = m.group(0).lower()
        tid = lexical.term_id(t)
        if tid in terms and t not in lexical._tokenize.stopwords:
            out.append(Span(m.start(), m.end(), names.get(tid, t), terms[tid]))
    return out


def query_word_spans(text: str, query: str) -> list[Span]:
    wanted = {fold(w): w for w in lexical._tokenize(query or "")}
    if not wanted:
        return []
    weight = 1.0 / len(wanted)
    return [Span(m.start(), m.end(), wanted[fold(m.group(0))], weight)
            for m in _TOKEN.finditer(text) if fold(m.group(0)) in wanted]


def merge(spans: list[Span]) -> list[Span]:
    """One span per marked word (lists that mark the same word add up), in text order."""
    by_pos: dict[tuple[int, int], Span] = {}
    for s in spans:
        got = by_pos.get((s.start, s.end))
        if got is None:
            by_pos[(s.start, s.end)] = Span(s.start, s.end, s.term, s.weight)
        else:
            got.weight += s.weight
    out = sorted(by_pos.values(), key=lambda s: (s.start, -s.end))
    keep, last_end = [], -1
    for s in out:  # nested or overlapping words: keep the first
        if s.start >= last_end:
            keep.append(s)
            last_end = s.end
    return keep


def fragments(text: str, spans: list[Span], n: int = 3, chars: int = 160) -> list[dict]:
    """The best n non-overlapping windows of about ``chars`` characters around the spans."""
    spans = merge(spans)
    if not spans:
        return []
    length = len(text)
    windows = []
    for s in spans:
        lo = max(0, s.start - chars // 4)
        hi = min(length, lo + chars)
        lo = max(0, hi - chars)
        lo, hi = _snap(text, lo, hi)
        inside = [x for x in spans if x.start >= lo and x.end <= hi]
        best: dict[str, float] = {}
        for x in inside:
            best[x.term] = max(best.get(x.term, 0.0), x.weight)
        windows.append((sum(best.values()), lo, hi, inside, best))
    windows.sort(key=lambda w: (-w[0], w[1]))
    chosen: list = []
    for w in windows:
        if len(chosen) == n:
            break
        if all(w[2] <= c[1] or w[1] >= c[2] for c in chosen):
            chosen.append(w)
    return [_fragment(text, *w) for w in chosen]


def _snap(text: str, lo: int, hi: int) -> tuple[int, int]:
    """Widen [lo, hi) to whole words, then trim whitespace."""
    while lo > 0 and not text[lo - 1].isspace():
        lo -= 1
    while hi < len(text) and not text[hi].isspace():
        hi += 1
    while lo < hi and text[lo].isspace():
        lo += 1
    while hi > lo and text[hi - 1].isspace():
        hi -= 1
    return lo, hi


def _fragment(text: str, score: float, lo: int, hi: int, inside: list[Span], best: dict) -> dict:
    frag = text[lo:hi]
    matches = [(s.start - lo, s.end - lo) for s in inside]
    parts, pos = [], 0
    for a, b in matches:
        parts += [html.escape(frag[pos:a]), "<mark>", html.escape(frag[a:b]), "</mark>"]
        pos = b
    parts.append(html.escape(frag[pos:]))
    terms = sorted(best, key=lambda t: (-best[t], t))
    return {"text": frag, "start": lo, "matches": matches, "terms": terms, "score": round(score, 6),
            "marked": "".join(parts)}
