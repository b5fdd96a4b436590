import json

import numpy as np
import pytest

from encoders.base import validate_csr
from encoders.inference_free import IdfTable, InferenceFreeEncoder
from encoders.models import load_tokenizer


@pytest.fixture(scope="module")
def tok(splade_tiny_path):
    return load_tokenizer("splade-tiny")


def test_idf_from_corpus_follows_document_frequency(tok, scifact_texts):
    table = IdfTable.fit(tok, scifact_texts)
    the, rare = tok.convert_tokens_to_ids(["the", "myelin"])
    n = len(scifact_texts)
    df_the = sum("the" in tok.tokenize(t) for t in scifact_texts)
    assert table.idf[the] == pytest.approx(np.log1p((n - df_the + 0.5) / (df_the + 0.5)), rel=1e-6)
    assert table.idf[the] < table.idf[rare]
    assert table.idf.shape == (len(tok),) and np.all(table.idf >= 0)


def test_queries_are_tokens_weighted_by_idf_without_a_model(tok, scifact_texts, tmp_path):
    enc = InferenceFreeEncoder("splade-tiny", doc_model=None).fit(scifact_texts)
    q = validate_csr(enc.encode_queries(["myelin myelin in the brain", ""]), dim=30522)
    ids = sorted(set(tok("myelin myelin in the brain", add_special_tokens=False)["input_ids"]))
    assert q[0].indices.tolist() == ids  # distinct tokens, no [CLS]/[SEP]
    assert np.allclose(q[0].data, enc.idf.idf[ids])
    assert q[1].nnz == 0
    assert enc.decode(q[0])[0][0] == max(((t, enc.idf.idf[i]) for t, i in
                                           zip(tok.convert_ids_to_tokens(ids), ids)), key=lambda x: x[1])[0]
    with pytest.raises(RuntimeError, match="queries only"):
        enc.encode_documents(["text"])


def test_idf_file_formats(tok, scifact_texts, tmp_path):
    table = IdfTable.fit(tok, scifact_texts)
    table.save(tmp_path / "idf.npy")
    assert np.array_equal(IdfTable.load(tmp_path / "idf.npy").idf, table.idf)
    (tmp_path / "idf.json").write_text(json.dumps({"brain": 3.5, "notatoken###": 9.0}))
    loaded = IdfTable.load(tmp_path / "idf.json", tok)
    assert loaded.idf[tok.convert_tokens_to_ids("brain")] == 3.5 and loaded.idf.sum() == 3.5
    enc = InferenceFreeEncoder("splade-tiny", idf=tmp_path / "idf.json", doc_model=None)
    assert enc.encode_queries(["brain scan"]).data.tolist() == [3.5]


def test_documents_use_the_splade_model(scifact_texts):
    enc = InferenceFreeEncoder(progress=False).fit(scifact_texts)
    docs = enc.encode_documents(scifact_texts[:3])
    assert np.array_equal(docs.toarray(), enc.doc_encoder.encode_documents(scifact_texts[:3]).toarray())
    scores = (enc.encode_queries(["myelin white matter preterm infants"]) @ docs.T).toarray()[0]
    assert scores.argmax() == 0  # the first SciFact abstract is about exactly that


def test_query_terms_through_the_rust_tokenizer_equal_transformers(splade_tiny_path):
    """query_terms calls the fast tokenizer's Rust side directly (the query's whole cost): the
    same distinct ids as the transformers call, padding and truncation included."""
    from encoders.batching import token_ids
    enc = InferenceFreeEncoder("splade-tiny", doc_model=None)
    texts = ["0-dimensional biomaterials lack inductive properties.", "", "   ", "x " * 1000,
             "ALL CAPS, punctuation!? and émigré naïve café"]
    ref = token_ids(enc.tokenizer, texts, add_special_tokens=False, truncation=True,
                    max_length=enc.tokenizer.model_max_length)
    for got, want in zip(enc.query_terms(texts), ref):
        assert np.array_equal(got, np.unique(np.asarray(want, dtype=np.int32)))
