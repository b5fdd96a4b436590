"""Exclusions: documents that contain a term or phrase are removed from a search (or, with a
weight, demoted), in every mode.

Three ways to say it, all turned into the same ``Exclusion``:

- the request's ``must_not``: ``["coal", "fossil fuel", {"text": "nuclear", "weight": 0.5}]``;
- the query syntax (``query_syntax``, on by default): ``solar power -coal -"fossil fuel"``. A
  ``-`` counts at the start of a word only (``COVID-19``, ``anti-inflammatory`` and ``-5`` are
  left alone);
- natural-language negation (``negation``, off by default): ``…, but not X``, ``… without X``,
  ``…, don't mention X`` (``do not``, ``doesn't``, ``does not``), ``…, excluding X``. X runs to
  the next punctuation mark; ``X or Y`` / ``X and Y`` are two exclusions; a leading article is
  dropped. Off by default because "without" is often the topic itself ("patients without
  diabetes" wants documents *about* them, which mention diabetes).

The matched text leaves the query, so the encoders see only what is wanted.

Matching is on words: lower-case, Unicode ``\\w+`` tokens, with a light plural fold on both
sides (``turbines`` = ``turbine``, ``studies`` = ``study``); a phrase matches consecutive words.
The pipeline checks the text of every candidate of every list before fusion (a few hundred
short reads from the memory-mapped document store); a document stored without text cannot be
checked and is kept.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"\w+")
# -term / -"phrase" at the start of a word; the term must start with a letter
_SYNTAX = re.compile(r'(?<!\S)-(?:"([^"]*)"|([^\W\d_][^\s"]*))')
_CLAUSE = r"([^,.;:!?()]+)"
_NEGATIONS = [re.compile(p, re.IGNORECASE) for p in (
    r",?\s*\bbut\s+not\s+" + _CLAUSE,
    r",?\s*\bwithout\s+" + _CLAUSE,
    r",?\s*\b(?:(?:that|which)\s+)?(?:don'?t|do\s+not|doesn'?t|does\s+not)\s+mention\s+" + _CLAUSE,
    r",?\s*\bexcluding\s+" + _CLAUSE)]
_SPLIT = re.compile(r"\s+(?:or|and|nor)\s+|\s*[/&]\s*", re.IGNORECASE)
_ARTICLE = re.compile(r"^(?:the|a|an|any)\s+", re.IGNORECASE)


def fold(word: str) -> str:
    """Lower case and a light plural fold, the same on both sides of a match."""
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def words(text: str) -> list[str]:
    return [fold(w) for w in _WORD.findall(text or "")]


@dataclass(frozen=True)
class Exclusion:
    text: str
    weight: float | None  # None: remove; w in (0, 1]: demote (score - w x |score|)
    source: str  # "must_not", "syntax" or "negation"

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(words(self.text))


def parse_query(query: str, syntax: bool = True, negation: bool = False) -> tuple[str, list[Exclusion]]:
    """(the query left to encode, the exclusions it states)."""
    found: list[Exclusion] = []
    if syntax:
        def take(m: re.Match) -> str:
            text = (m.group(1) if m.group(1) is not None else m.group(2)).strip()
            text = text.strip(".,;:!?'") if m.group(2) is not None else text
            if words(text):
                found.append(Exclusion(text, None, "syntax"))
            return " "
        query = _SYNTAX.sub(take, query)
    if negation:
        for pattern in _NEGATIONS:
            def take_clause(m: re.Match) -> str:
                for part in _SPLIT.split(m.group(1).strip()):
                    part = _ARTICLE.sub("", part.strip())
                    if words(part):
                        found.append(Exclusion(part, None, "negation"))
                return " "
            query = pattern.sub(take_clause, query)
    query = re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"\s+", " ", query)).strip(" ,;")
    return query, found


class Matcher:
    """Which exclusions a text contains."""

    def __init__(self, exclusions: list[Exclusion]):
        self.exclusions = [e for e in exclusions if e.words]
        self._phrases = [(e, e.words) for e in self.exclusions]

    def __bool__(self) -> bool:
        return bool(self.exclusions)

    def matches(self, text: str | None) -> list[Exclusion]:
        if not text:
            return []
        toks = words(text)
        vocab = set(toks)
        out = []
        for e, ws in self._phrases:
            if not all(w in vocab for w in ws):
                continue
            if len(ws) == 1 or _contains(toks, ws):
                out.append(e)
        return out


def _contains(toks: list[str], phrase: tuple[str, ...]) -> bool:
    n, first = len(phrase), phrase[0]
    for i, t in enumerate(toks[: len(toks) - n + 1]):
        if t == first and tuple(toks[i:i + n]) == phrase:
            return True
    return False


def penalty(matched: list[Exclusion]) -> float | None:
    """None: remove the document; else the fraction of |score| to subtract (0 for no match)."""
    keep = 1.0
    for e in matched:
        if e.weight is None:
            return None
        keep *= 1.0 - e.weight
    return 1.0 - keep


def demote(ranked: list[tuple[str, float]], penalties: dict[str, float]) -> list[tuple[str, float]]:
    """Scores lowered by their penalty, re-sorted (score descending, id ascending)."""
    if not penalties:
        return ranked
    out = [(d, s - penalties.get(d, 0.0) * abs(s)) for d, s in ranked]
    return sorted(out, key=lambda x: (-x[1], x[0]))
