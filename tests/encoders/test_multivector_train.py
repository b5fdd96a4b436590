"""training/multivector.py: a projection trained for a few steps loads through MultiVectorEncoder."""
import numpy as np
import pytest
import torch

from encoders.multivector import MultiVectorEncoder, find_projection
from training.multivector import (batch_maxsim, encode_states, pca_init, save_projection,
                                        train_projection, write_model_dir)


def test_batch_maxsim_masks_padding():
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]])
    qm = torch.tensor([[True, True], [True, False]])
    d = torch.tensor([[[0.6, 0.8], [1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [5.0, 5.0], [0.0, 0.0]]])
    dm = torch.tensor([[True, True, False], [True, False, False]])  # [5, 5] is padding
    got = batch_maxsim(q, qm, d, dm)
    assert got.flatten().tolist() == pytest.approx([1.8, 1.0, 1.0, 0.0])


def test_trained_projection_loads_and_ranks(minilm_path, scifact_texts, tmp_path):
    texts = [t[:300] for t in scifact_texts[:8]]
    docs = encode_states(texts, "all-MiniLM-L6-v2", progress=False)
    titles = [t.split(". ")[0] for t in texts]  # pseudo-queries: the titles
    queries = encode_states(titles, "all-MiniLM-L6-v2", progress=False)
    assert docs[0].dtype == np.float16 and docs[0].shape[1] == 384
    init = pca_init(docs, 16)
    assert init.shape == (16, 384)
    assert torch.allclose(init @ init.T, torch.eye(16), atol=1e-4)  # orthonormal rows
    pairs = [(i, i) for i in range(8)]
    w = train_projection(queries, docs, pairs, {i: [(i + 1) % 8] for i in range(8)}, dim=16,
                         epochs=3, batch_size=4, n_negatives=1, lr=1e-2, init=init, log=lambda *_: None)
    assert w.shape == (16, 384) and not torch.equal(w, init)
    path = save_projection(w, tmp_path / "proj.safetensors")
    assert torch.equal(find_projection("unused", path), w)
    enc = MultiVectorEncoder("all-MiniLM-L6-v2", projection=path, progress=False)
    folder = write_model_dir("all-MiniLM-L6-v2", w, tmp_path / "minilm-colbert")
    enc_dir = MultiVectorEncoder(str(folder), progress=False)
    assert enc.dim == enc_dir.dim == 16
    a, b = enc.encode_documents(texts[:2]), enc_dir.encode_documents(texts[:2])
    assert a[0].shape[1] == 16 and np.allclose(np.linalg.norm(a[0], axis=1), 1.0, atol=1e-5)
    assert np.allclose(a[0], b[0]) and np.allclose(a[1], b[1])
    # the encoder's vectors are the trained projection of the same states
    ref = torch.nn.functional.normalize(torch.from_numpy(docs[0].astype(np.float32)) @ w.T, dim=-1)
    assert np.allclose(a[0], ref.numpy(), atol=2e-2)
