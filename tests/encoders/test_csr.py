import numpy as np
import pytest
import torch

from encoders.base import validate_csr
from encoders.csr import CSREncoder, TopKSAE
from encoders.dense import DenseEncoder
from training.csr import CSRTrainConfig, _aux_loss, k_schedule, train_sae


def _sparse_mixtures(n=2000, d=32, atoms=48, active=3, seed=0):
    """Data that truly is k-sparse in an overcomplete dictionary, so a top-k SAE can fit it."""
    rng = np.random.default_rng(seed)
    dictionary = rng.normal(size=(atoms, d))
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)
    x = np.zeros((n, d))
    for i in range(n):
        x[i] = rng.uniform(0.5, 1.5, active) @ dictionary[rng.choice(atoms, active, replace=False)]
    return x.astype(np.float32)


def assert_same_topk_codes(a, b, atol):
    """Top-k codes equal up to float rounding: same values on shared latents; a latent kept by
    one side only is (nearly) tied with that row's weakest kept value."""
    a, b = a.toarray(), b.toarray()
    assert a.shape == b.shape
    for ra, rb in zip(a, b):
        np.testing.assert_allclose(np.sort(ra[ra != 0]), np.sort(rb[rb != 0]), atol=atol)
        both = (ra != 0) & (rb != 0)
        np.testing.assert_allclose(ra[both], rb[both], atol=atol)
        floor = min(ra[ra != 0].min(initial=np.inf), rb[rb != 0].min(initial=np.inf))
        for v in np.concatenate([ra[(ra != 0) & ~both], rb[(rb != 0) & ~both]]):
            assert abs(v - floor) <= atol, (v, floor)


def test_k_schedule_anneals_to_target():
    cfg = CSRTrainConfig(k=4, k_start=64, steps=100, anneal_fraction=0.5)
    ks = [k_schedule(s, cfg) for s in range(100)]
    assert ks[0] == 64 and ks[50:] == [4] * 50 and ks == sorted(ks, reverse=True)
    assert {k_schedule(s, CSRTrainConfig(k=4, anneal=False)) for s in range(10)} == {4}


def test_topk_sae_learns_sparse_data_with_k_nonzeros():
    x = _sparse_mixtures(n=1000)
    cfg = CSRTrainConfig(k=4, hidden_mult=4, steps=250, batch_size=128, lr=3e-3, k_start=16,
                         contrastive_weight=0)
    sae, stats = train_sae(x, cfg, progress=False)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        z = sae.encode(xt)
        rel = ((sae.decode(z) - xt).pow(2).sum() / (xt - xt.mean(0)).pow(2).sum()).item()
    assert (z > 0).sum(1).max().item() <= 4
    assert rel < 0.3, rel
    torch.manual_seed(1)  # the untrained baseline must not depend on what ran before
    untrained = TopKSAE(32, 128, 4)
    with torch.no_grad():
        untrained.b_pre.copy_(xt.mean(0))
        base = ((untrained.decode(untrained.encode(xt)) - xt).pow(2).sum() / (xt - xt.mean(0)).pow(2).sum()).item()
    assert rel < base / 2
    assert 0.0 <= stats["dead_fraction"] < 1.0


def test_aux_loss_gives_gradient_to_dead_latents_only():
    torch.manual_seed(0)
    sae = TopKSAE(16, 64, 2)
    with torch.no_grad():
        sae.b_enc[:32] = -100.0  # latents 0..31 can never win the top-k: dead
    x = torch.randn(32, 16)
    lin = sae.linear(x)
    z = sae.encode(x)
    assert (z[:, :32] == 0).all()
    residual = (x - sae.decode(z)).detach()
    dead = torch.zeros(64, dtype=torch.bool)
    dead[:32] = True
    _aux_loss(sae, lin, residual, dead, k=2).backward()
    grad = sae.W_enc.grad.abs().sum(1)
    assert (grad[:32] > 0).all() and (grad[32:] == 0).all()
    sae.zero_grad()
    assert _aux_loss(sae, sae.linear(x), residual, torch.zeros(64, dtype=torch.bool), 2).item() == 0.0


def test_contrastive_pairs_are_used():
    x = _sparse_mixtures(n=400)
    pairs = (x[:64], x[:64] + 0.01)
    cfg = CSRTrainConfig(k=4, steps=30, contrastive_weight=1.0, anneal=False)
    a, _ = train_sae(x, cfg, pairs=pairs, progress=False)
    b, _ = train_sae(x, CSRTrainConfig(**{**cfg.__dict__, "contrastive_weight": 0.0}), progress=False)
    assert not torch.allclose(a.W_enc, b.W_enc)


def test_csr_encoder_on_minilm_roundtrip(minilm_path, scifact_texts, tmp_path):
    dense = DenseEncoder("all-MiniLM-L6-v2", progress=False)
    emb = dense.encode_documents(scifact_texts)
    sae, _ = train_sae(emb, CSRTrainConfig(k=8, steps=20, contrastive_weight=0), progress=False)
    sae.save(tmp_path / "csr.pt", {"dense_model": "all-MiniLM-L6-v2"})
    enc = CSREncoder.load(tmp_path / "csr.pt", progress=False)
    m = validate_csr(enc.encode_documents(scifact_texts[:5]), dim=384 * 4, n_rows=5)
    assert m.getnnz(axis=1).max() <= 8 and m.getnnz(axis=1).min() > 0
    direct = CSREncoder(dense, sae).codes(emb[:5])
    # emb was encoded in a batch of 24, m in a batch of 5: float rounding differs, so a latent
    # near-tied with the k-th may swap in or out; all else must agree.
    assert_same_topk_codes(m, direct, atol=1e-5)
    assert enc.decode(m[0])[0][0].startswith("latent_")
    assert CSREncoder(dense, sae, k=2).encode_queries(["stem cells"]).nnz <= 2
    with pytest.raises(ValueError, match="dims"):
        CSREncoder(dense, TopKSAE(10, 40, 2))


def test_csr_runs_through_the_eval_cli(minilm_path, mini_beir, tmp_path):
    from encoders.evaluate import run_eval
    dense = DenseEncoder("all-MiniLM-L6-v2", progress=False)
    sae, _ = train_sae(dense.encode_documents(["stem cells", "galaxies", "protein folding"] * 4),
                       CSRTrainConfig(k=8, steps=5, contrastive_weight=0), progress=False)
    sae.save(tmp_path / "csr.pt", {"dense_model": "all-MiniLM-L6-v2"})
    res = run_eval(mini_beir, "csr", model=str(tmp_path / "csr.pt"), cache_dir=tmp_path, progress=False)
    assert res["n_queries"] == 12 and 0.0 <= res["nDCG@10"] <= 1.0
    (entry,) = tmp_path.glob("csr-*.npz")
    # Retraining into the same file must not reuse the cached codes.
    sae2, _ = train_sae(np.random.default_rng(0).normal(size=(50, 384)).astype(np.float32),
                        CSRTrainConfig(k=8, steps=2, contrastive_weight=0), progress=False)
    sae2.save(tmp_path / "csr.pt", {"dense_model": "all-MiniLM-L6-v2"})
    assert not run_eval(mini_beir, "csr", model=str(tmp_path / "csr.pt"), cache_dir=tmp_path, progress=False)["cached"]
    with pytest.raises(FileNotFoundError, match="lsr train csr"):
        run_eval(mini_beir, "csr", model=str(tmp_path / "missing.pt"), cache_dir=None)
