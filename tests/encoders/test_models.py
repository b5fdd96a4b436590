import pytest
from transformers import AutoModelForMaskedLM

from encoders import models
from encoders.fetch_models import MODELS, fetch


def test_resolve_prefers_existing_local_path(tmp_path):
    assert models.resolve(tmp_path) == str(tmp_path)


def test_resolve_finds_models_cache_by_name_and_hub_name(tmp_path, monkeypatch):
    monkeypatch.setenv("LSR_MODELS_DIR", str(tmp_path))
    (tmp_path / "my-model").mkdir()
    (tmp_path / "my-model" / "config.json").write_text("{}")
    (tmp_path / "org__other").mkdir()
    (tmp_path / "org__other" / "config.json").write_text("{}")
    assert models.models_dir() == tmp_path
    assert models.resolve("my-model") == str(tmp_path / "my-model")
    assert models.resolve("someorg/my-model") == str(tmp_path / "my-model")
    assert models.resolve("org/other") == str(tmp_path / "org__other")


def test_resolve_falls_back_to_hub_name(tmp_path, monkeypatch):
    monkeypatch.setenv("LSR_MODELS_DIR", str(tmp_path))
    assert models.resolve("naver/splade-v3") == "naver/splade-v3"


def test_unresolvable_model_error_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("LSR_MODELS_DIR", str(tmp_path))
    with pytest.raises(OSError, match="fetch_models"):
        models.load_tokenizer("no-such-org/no-such-model-xyz")


def test_fetch_is_idempotent_and_drops_excluded_files(splade_tiny_path):
    before = (splade_tiny_path / "model.safetensors").stat().st_mtime_ns
    again = fetch("splade-tiny", quiet=True)
    assert again == splade_tiny_path
    assert (again / "model.safetensors").stat().st_mtime_ns == before
    assert not (again / "heads.pt").exists()
    assert sorted(p.name for p in again.iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


def test_fetch_rejects_unknown_name():
    with pytest.raises(KeyError, match="known"):
        fetch("no-such-model")


def test_fetched_models_load_offline_by_name(splade_tiny_path, minilm_path):
    assert models.resolve("splade-tiny") == str(splade_tiny_path)
    model = models.load_model("splade-tiny", AutoModelForMaskedLM)
    assert model.config.vocab_size == 30522 and not model.training
    tok = models.load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")
    assert tok("hello world")["input_ids"][0] == tok.cls_token_id
    assert set(MODELS) == {"splade-tiny", "all-MiniLM-L6-v2"}
