"""A transformer encoder's per-token hidden states, batched by length (dense and multivector)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModel

from encoders.base import progress
from encoders.batching import length_sorted_batches, model_max_length, pad_batch, token_ids
from encoders.models import load_model, load_tokenizer, resolve
from encoders.onnx_graphs import OnnxTransformer


def sentence_transformers_max_length(path: str) -> int | None:
    """``max_seq_length`` of a sentence-transformers folder (MiniLM: 256), if it has one."""
    cfg = Path(path) / "sentence_bert_config.json"
    if cfg.is_file():
        return json.loads(cfg.read_text()).get("max_seq_length")
    return None


class TokenStates:
    """Loads a transformer + tokenizer and yields last hidden states for batches of texts.

    ``int8=False``: the Hugging Face ``AutoModel`` in PyTorch. ``int8=True``: the model's two
    ONNX Runtime graphs instead (``encoders.onnx_graphs``): the fused float32 graph by default,
    the int8 one (approximate, faster on long inputs) where ``batches(..., int8=True)`` asks."""

    def __init__(self, model: str, max_length: int | None = None, progress: bool | None = None,
                 int8: bool = False):
        self.name = str(model)
        self.path = resolve(model)
        self.tokenizer = load_tokenizer(model)
        self.int8_model: OnnxTransformer | None = None
        if int8:
            self.config = AutoConfig.from_pretrained(self.path)
            self.model: Any = OnnxTransformer(self.path, "fp32")
            self.int8_model = OnnxTransformer(self.path, "int8")
        else:
            self.model = load_model(model, AutoModel)
            self.config = self.model.config
        if max_length is None:
            max_length = sentence_transformers_max_length(self.path)
        self.max_length = model_max_length(self.tokenizer, self.config, max_length)
        self.hidden_size = self.config.hidden_size
        self.progress = progress

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return token_ids(self.tokenizer, texts, truncation=True, max_length=self.max_length)

    @torch.inference_mode()
    def batches(self, texts: list[str], batch_size: int, desc: str, int8: bool = False
                ) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """(text indices, hidden states [B, L, H], attention mask [B, L]) per batch."""
        if int8 and self.int8_model is None:
            raise ValueError(f"{self.name}: loaded without int8=True, no int8 graph to run")
        model: Any = self.int8_model if int8 else self.model
        ids = self.tokenize(texts)
        groups = length_sorted_batches([len(x) for x in ids], batch_size)
        for group in progress(groups, len(groups), len(texts), self.progress, desc):
            input_ids, mask = pad_batch([ids[i] for i in group], self.tokenizer.pad_token_id)
            out: Any = model(input_ids=input_ids, attention_mask=mask)
            yield group, out.last_hidden_state, mask
