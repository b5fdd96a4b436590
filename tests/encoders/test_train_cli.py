"""`lsr train csr` end to end: a CSR model trained on a mini BEIR folder is written with its
lsr-model.json into the models cache, registers as kind csr, and encodes through the registry."""
import os

import pytest

from encoders import registry
from encoders.models import models_dir as default_models_dir


@pytest.fixture
def cache(tmp_path, monkeypatch, minilm_path):
    root = tmp_path / "models"
    root.mkdir()
    (root / "all-MiniLM-L6-v2").symlink_to(default_models_dir() / "all-MiniLM-L6-v2")
    monkeypatch.setenv("LSR_MODELS_DIR", str(root))
    return root


def test_lsr_train_csr_writes_a_registered_model(cache, mini_beir, capsys):
    from service.cli import main
    try:
        rc = main(["train", "csr", str(mini_beir), "--out", str(cache / "csr-trained"), "--k", "4",
                   "--steps", "20", "--device", "cpu", "--no-progress"])
    finally:
        from encoders import device as devices
        devices.set_default("auto")
    assert rc == 0
    assert "registered model 'csr-trained' (kind csr)" in capsys.readouterr().out
    spec = registry.get("csr-trained")
    assert spec.kind == "csr" and spec.base == "all-MiniLM-L6-v2" and spec.options == {"k": 4}
    enc = registry.build(spec, "sparse")
    m = enc.encode_documents(["stem cells divide", "protein folding"])
    assert m.shape[1] == registry.dimension(spec) and max(m.getnnz(axis=1)) <= 4
    assert os.path.isfile(cache / "csr-trained" / "csr.pt")


def test_lsr_train_refuses_a_missing_gpu(cache, mini_beir, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from service.cli import main
    try:
        assert main(["train", "csr", str(mini_beir), "--out", str(cache / "x"), "--device", "cuda"]) == 1
    finally:
        from encoders import device as devices
        devices.set_default("auto")
    assert "torch.cuda is not available" in capsys.readouterr().err
    assert not (cache / "x").exists()
