"""A transformer encoder's per-token hidden states, batched by length (dense and multivector)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel

from encoders.base import progress
from encoders.batching import length_sorted_batches, model_max_length, pad_batch, token_ids
from encoders.models import load_model, load_tokenizer, resolve


def sentence_transformers_max_length(path: str) -> int | None:
    """``max_seq_length`` of a sentence-transformers folder (MiniLM: 256), if it has one."""
    cfg = Path(path) / "sentence_bert_config.json"
    if cfg.is_file():
        return json.loads(cfg.read_text()).get("max_seq_length")
    return None


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantisation of every ``nn.Linear``: weights int8 with one scale per output
    channel, activations quantised per batch at run time, FBGEMM's AVX2 int8 GEMMs.

    The approximate fast path (BENCHMARKS.md, "Encoding speed"): on the 2-core AVX2 machine
    MiniLM encodes 1.3-1.4x faster, cosine to the float32 embedding ≥ 0.97, SciFact nDCG@10
    within 0.002. Per-tensor weight scales (PyTorch's default) were too coarse: worst cosine 0.88.
    ``torch.ao`` dynamic quantisation is deprecated upstream in favour of torchao but present
    in the pinned torch; its deprecation warnings are silenced here."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig})


class TokenStates:
    """Loads ``AutoModel`` + tokenizer and yields last hidden states for batches of texts
    (``int8=True``: through ``quantize_int8``, the approximate fast path)."""

    def __init__(self, model: str, max_length: int | None = None, progress: bool | None = None,
                 int8: bool = False):
        self.name = str(model)
        self.path = resolve(model)
        self.tokenizer = load_tokenizer(model)
        self.model = load_model(model, AutoModel)
        self.int8 = int8
        if int8:
            self.model = quantize_int8(self.model)
        if max_length is None:
            max_length = sentence_transformers_max_length(self.path)
        self.max_length = model_max_length(self.tokenizer, self.model.config, max_length)
        self.hidden_size = self.model.config.hidden_size
        self.progress = progress

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return token_ids(self.tokenizer, texts, truncation=True, max_length=self.max_length)

    @torch.inference_mode()
    def batches(self, texts: list[str], batch_size: int, desc: str
                ) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """(text indices, hidden states [B, L, H], attention mask [B, L]) per batch."""
        ids = self.tokenize(texts)
        groups = length_sorted_batches([len(x) for x in ids], batch_size)
        for group in progress(groups, len(groups), len(texts), self.progress, desc):
            input_ids, mask = pad_batch([ids[i] for i in group], self.tokenizer.pad_token_id)
            out: Any = self.model(input_ids=input_ids, attention_mask=mask)
            yield group, out.last_hidden_state, mask
