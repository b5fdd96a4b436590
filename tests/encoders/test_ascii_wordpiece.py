"""The plain-Python WordPiece path of inference-free queries gives the Rust tokenizer's ids."""
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from encoders.ascii_wordpiece import AsciiWordPiece
from encoders.inference_free import InferenceFreeEncoder
from encoders.models import DEFAULT_SPLADE, load_tokenizer

SCIFACT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "scifact" / "queries.jsonl"


@pytest.fixture(scope="module")
def tok():
    t = load_tokenizer(DEFAULT_SPLADE)
    fast = AsciiWordPiece.of(t)
    assert fast is not None  # the uncased BERT pipeline it reproduces
    return t, fast


def rust_ids(t, text):
    return t._tokenizer.encode(text, add_special_tokens=False).ids


# every ASCII character, words from the vocabulary and out of it, long words, punctuation runs
ASCII = st.text(alphabet=st.characters(max_codepoint=127), max_size=80)
WORDS = st.lists(st.sampled_from(["protein", "Protein", "mRNA", "covid-19", "p53", "x" * 101, "qzxv",
                                  "tuberculosis", "don't", "e.g.", "β", "[MASK]", "\t", "\x00", "\x7f",
                                  "α-synuclein", "naïve", "  ", "AbCdEfGh12345", "##ing"]),
                 max_size=12).map(" ".join)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(text=st.one_of(ASCII, WORDS))
def test_same_ids_as_the_rust_tokenizer(tok, text):
    t, fast = tok
    got = fast.ids(text)
    if got is None:  # not for this path: non-ASCII or a special token's text
        assert not text.isascii() or any(a in text for a in fast.added)
    else:
        assert got == rust_ids(t, text)


def test_real_queries_take_the_fast_path_with_the_same_ids(tok):
    t, fast = tok
    queries = [json.loads(line)["text"] for line in SCIFACT.open()] if SCIFACT.exists() else []
    queries += ["What causes antibiotic resistance?", "IL-6 (interleukin 6) & TNF-α in sepsis"]
    taken = 0
    for q in queries:
        got = fast.ids(q)
        if got is not None:
            taken += 1
            assert got == rust_ids(t, q), q
    assert taken >= 0.9 * len(queries)  # nearly all real queries are ASCII


def test_query_terms_are_the_same_with_and_without_the_fast_path():
    enc = InferenceFreeEncoder(doc_model=None)
    assert enc._ascii is not None
    texts = ["Vitamin D deficiency and bone density", "naïve T cells", "[MASK] protein", ""]
    fast = [enc.query_terms([x])[0] for x in texts]
    enc._ascii = None
    slow = [enc.query_terms([x])[0] for x in texts]
    for a, b in zip(fast, slow):
        assert a.dtype == np.int32 and np.array_equal(a, b)
