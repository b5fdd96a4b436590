import json

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from encoders.beir import load_titled_corpus
from encoders.inference_free import IdfTable, InferenceFreeEncoder
from encoders.models import load_tokenizer
from encoders.splade import SpladeEncoder
from training.inference_free import (
    DocModel,
    InferenceFreeTrainConfig,
    build_pool,
    distillation_loss,
    ensemble_targets,
    idf_aware_flops,
    main,
    minmax_per_query,
    train_step,
)

TOPICS = ["myelin white matter infants", "insulin resistance obesity", "tumor suppressor p53 mutation",
          "vitamin d bone fracture", "malaria parasite mosquito", "statin cholesterol heart"]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, splade_tiny_path):
    """A randomly initialised 1-layer BERT MLM with splade-tiny's tokenizer (fast, real code path)."""
    torch.manual_seed(0)
    tok = load_tokenizer("splade-tiny")
    cfg = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    out = tmp_path_factory.mktemp("tiny-mlm")
    BertForMaskedLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_beir(tmp_path_factory):
    """24 documents on 6 topics (title + abstract), 3 judged test queries."""
    out = tmp_path_factory.mktemp("tiny-beir")
    docs = [{"_id": f"d{i}", "title": f"Study {i} of {TOPICS[i % 6]}",
             "text": f"We measured {TOPICS[i % 6]} in cohort {i}. Results on {TOPICS[(i + 1) % 6].split()[0]} differ."}
            for i in range(24)]
    (out / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = [{"_id": f"q{t}", "text": f"{TOPICS[t]} effect"} for t in range(3)]
    (out / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (out / "qrels").mkdir()
    (out / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{t}\td{t}\t1\n" for t in range(3)))
    return out


def test_minmax_normalisation_and_weighted_aggregation_by_hand():
    dense = torch.tensor([[0.2, 0.8, 0.5], [0.3, 0.3, 0.3]])
    bm25 = torch.tensor([[10.0, 0.0, 5.0], [1.0, 3.0, 2.0]])
    assert torch.allclose(minmax_per_query(dense), torch.tensor([[0.0, 1.0, 0.5], [0.0, 0.0, 0.0]]))
    agg = ensemble_targets([dense, bm25], [0.7, 0.3])
    # 0.7 * [[0, 1, .5], [0, 0, 0]] + 0.3 * [[1, 0, .5], [0, 1, .5]]
    assert torch.allclose(agg, torch.tensor([[0.3, 0.7, 0.5], [0.0, 0.3, 0.15]]))
    with pytest.raises(ValueError, match="one weight per teacher"):
        ensemble_targets([dense], [0.5, 0.5])
    with pytest.raises(ValueError, match="shapes differ"):
        ensemble_targets([dense, bm25[:1]], [0.5, 0.5])
    with pytest.raises(ValueError, match="queries, documents"):
        minmax_per_query(torch.ones(3))


def test_idf_aware_flops_by_hand():
    w = torch.tensor([[1.0, 0.0, 2.0, 4.0], [3.0, 0.0, 0.0, 0.0]])
    idf = torch.tensor([2.0, 1.0, 0.05, 8.0])
    # batch means [2, 0, 1, 2]; penalty weights 1/2, 1, 1/max(0.05, 0.1), 1/8
    assert idf_aware_flops(w, idf).item() == pytest.approx(4 / 2 + 0 + 1 / 0.1 + 4 / 8)
    assert idf_aware_flops(w, torch.ones(4), min_idf=1.0).item() == pytest.approx(4 + 0 + 1 + 4)  # plain FLOPS
    with pytest.raises(ValueError, match="must agree"):
        idf_aware_flops(w, torch.ones(3))


def test_distillation_loss_is_kl_of_softmaxes():
    s, t = torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[3.0, 0.0, 0.0]])
    p, q = torch.softmax(t, 1), torch.softmax(s, 1)
    assert distillation_loss(s, t).item() == pytest.approx((p * (p / q).log()).sum().item(), rel=1e-5)
    assert distillation_loss(t, t).item() == pytest.approx(0.0, abs=1e-7)


def test_doc_model_equals_chunked_splade_pooling_and_has_gradients(tiny_model_dir):
    enc = SpladeEncoder(str(tiny_model_dir), progress=False)
    texts = ["white matter of preterm infants", "insulin", "p53 tumor suppressor mutation in mice"]
    ids = enc._tokenize(texts, enc.max_length)
    reference = enc.weights(ids)
    model = BertForMaskedLM.from_pretrained(tiny_model_dir).eval()
    doc = DocModel(model, enc.tokenizer, 64)
    w = doc.weights(ids)
    assert torch.allclose(w, reference, atol=1e-5)
    w.sum().backward()
    assert model.get_output_embeddings().weight.grad.abs().sum() > 0
    assert isinstance(model.get_output_embeddings(), torch.nn.Linear)  # head restored after the forward pass
    with pytest.raises(ValueError, match="empty token list"):
        doc.weights([[]])


def test_training_steps_reduce_the_loss(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    model = BertForMaskedLM.from_pretrained(tiny_model_dir)
    doc = DocModel(model, tok, 64)
    docs = [f"We measured {t} in a cohort" for t in TOPICS[:3]]
    idf = IdfTable.fit(tok, docs)
    q = torch.from_numpy(InferenceFreeEncoder(str(tiny_model_dir), idf=idf, doc_model=None)
                         .encode_queries(TOPICS[:3]).toarray())
    targets = 30 * torch.eye(3)  # each query's own document first
    ids, idf_t = doc.tokenize(docs), torch.from_numpy(idf.idf)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        out = train_step(doc, q, ids, targets, idf_t, 1e-3, 0.1)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < losses[0]


def test_pool_holds_out_documents_and_mines_negatives(tiny_beir):
    ids, titles, texts = load_titled_corpus(tiny_beir)
    cfg = InferenceFreeTrainConfig(pool_docs=10, group_size=3, batch_size=2)
    pool = build_pool(ids, titles, texts, {"d0", "d1"}, cfg, np.random.default_rng(0))
    assert len(pool.queries) == 10 and not {"d0", "d1"} & set(pool.doc_ids)
    for query, pos, negs in zip(pool.queries, pool.positives, pool.negatives):
        assert titles[ids.index(pool.doc_ids[pos])] == query and len(negs) == 2 and pos not in negs
        assert pool.docs[pos] == texts[ids.index(pool.doc_ids[pos])]  # the abstract, without the title
    with pytest.raises(ValueError, match="title and a text"):
        build_pool(ids, [""] * len(ids), texts, set(), cfg, np.random.default_rng(0))


def test_cli_trains_saves_a_loadable_model_and_reports_before_after(tiny_model_dir, tiny_beir, tmp_path, capsys):
    out = tmp_path / "doc-model"
    assert main([str(tiny_beir), "--out", str(out), "--model", str(tiny_model_dir),
                 "--dense-teacher", str(tiny_model_dir), "--steps", "2", "--batch-size", "2",
                 "--pool-docs", "8", "--lr", "1e-3", "--eval-docs", "0", "--threads", "0", "--no-progress",
                 "--json", str(tmp_path / "r.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("before  nDCG@10 ") and lines[1].startswith("after   nDCG@10 ")
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["n_queries"] == 3 and res["n_docs"] == 24 and res["split"] == "test"
    assert {"nDCG@10", "R@100"} <= set(res["before"]) and {"nDCG@10", "R@100"} <= set(res["after"])
    start = BertForMaskedLM.from_pretrained(tiny_model_dir).state_dict()
    trained = BertForMaskedLM.from_pretrained(out).state_dict()
    assert any(not torch.equal(start[k], trained[k]) for k in start)
    enc = InferenceFreeEncoder(str(out), idf=out / "idf.npy", doc_model=str(out))
    scores = (enc.encode_queries(["insulin resistance"]) @ enc.encode_documents(["insulin resistance", "malaria"]).T)
    assert scores.shape == (1, 2)


@pytest.mark.parametrize("args, error", [
    (["--steps", "0"], "steps must be >= 1"),
    (["--dense-weight", "0", "--sparse-weight", "0"], "teacher weights"),
    (["--eval-docs", "-1"], "must be >= 0"),
])
def test_bad_settings_raise_clear_errors(tiny_beir, args, error):
    with pytest.raises(ValueError, match=error):
        main([str(tiny_beir), *args])


def test_missing_corpus_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus.jsonl"):
        main([str(tmp_path)])
