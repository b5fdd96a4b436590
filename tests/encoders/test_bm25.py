import json

import bm25s
import numpy as np
import pytest
from bm25s.stopwords import STOPWORDS_EN as BM25S_STOPWORDS

from encoders.base import SparseEncoder, validate_csr
from encoders.bm25 import STOPWORDS_EN, BM25Encoder, Tokenizer


@pytest.fixture(scope="module")
def corpus_and_queries(scifact_dir):
    corpus = []
    with open(scifact_dir / "corpus.jsonl") as f:
        for line, _ in zip(f, range(60)):
            d = json.loads(line)
            corpus.append(f"{d['title']} {d['text']}")
    # Queries built from corpus words so that most score non-zero; one has a repeated term.
    queries = ["alterations of the architecture of cerebral white matter in preterm infants",
               "myelodysplastic syndrome stem cells stem", "vitamin D deficiency", "zzzz qqqq"]
    with open(scifact_dir / "queries.jsonl") as f:
        queries += [json.loads(line)["text"] for line, _ in zip(f, range(20))]
    return corpus, queries


def test_tokenizer_matches_bm25s_default(corpus_and_queries):
    corpus, queries = corpus_and_queries
    assert STOPWORDS_EN == set(BM25S_STOPWORDS)
    tok = Tokenizer()
    ref = bm25s.tokenize(corpus + queries, stopwords="en", return_ids=False, show_progress=False)
    assert [tok(t) for t in corpus + queries] == ref


def test_dot_products_equal_bm25s_lucene_scores(corpus_and_queries):
    corpus, queries = corpus_and_queries
    enc = BM25Encoder().fit(corpus)
    assert isinstance(enc, SparseEncoder)
    docs = validate_csr(enc.encode_documents(corpus), dim=enc.dim, n_rows=len(corpus))
    qs = validate_csr(enc.encode_queries(queries), dim=enc.dim)
    ours = (qs @ docs.T).toarray()

    ref = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
    ref.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)
    for qi, q in enumerate(queries):
        toks = [t for t in Tokenizer()(q) if t in ref.vocab_dict]
        expected = ref.get_scores(toks) if toks else np.zeros(len(corpus))
        assert np.allclose(ours[qi], expected, rtol=1e-5, atol=1e-6), q
    assert ours[0].max() > 0 and np.all(ours[3] == 0)


def test_query_weight_modes_and_unknown_terms():
    enc = BM25Encoder(query_weights="ones").fit(["stem cells divide", "stem cells", "galaxies"])
    q = enc.encode_queries(["stem stem cells unknownword", ""])
    assert sorted(q[0].data.tolist()) == [1.0, 1.0] and q[1].nnz == 0
    counts = BM25Encoder().fit(["stem cells divide", "stem cells"]).encode_queries(["stem stem"])
    assert counts.data.tolist() == [2.0]
    with pytest.raises(ValueError, match="query_weights"):
        BM25Encoder(query_weights="idf")


def test_requires_fit_and_validates_input():
    with pytest.raises(RuntimeError, match="fit"):
        BM25Encoder().encode_documents(["x"])
    enc = BM25Encoder().fit(["alpha beta"])
    with pytest.raises(TypeError, match=r"texts\[0\]"):
        enc.encode_queries([b"bytes"])
    with pytest.raises(ValueError):
        enc.encode_documents([])


def test_save_load_roundtrip_and_decode(tmp_path, corpus_and_queries):
    corpus, _ = corpus_and_queries
    enc = BM25Encoder(k1=1.2, b=0.6).fit(corpus)
    enc.save(tmp_path / "bm25.json")
    again = BM25Encoder.load(tmp_path / "bm25.json")
    a, b = enc.encode_documents(corpus[:5]), again.encode_documents(corpus[:5])
    assert (a != b).nnz == 0 and again.k1 == 1.2
    terms = enc.decode(a[0])
    assert [w for _, w in terms] == sorted((w for _, w in terms), reverse=True)
    assert all(t not in STOPWORDS_EN for t, _ in terms)
