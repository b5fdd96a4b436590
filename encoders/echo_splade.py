"""Echo decoder-only SPLADE (Mistral-SPLADE, Doshi et al. 2024).

A causal LM sees only earlier tokens, so pooling over a single copy of the text would give
early tokens no view of the rest. The text is fed twice ("echo") and SPLADE pooling
(max over tokens of log(1 + ReLU(LM-head logits))) runs over the second copy only: every pooled
position has already read the whole text once. Works with any ``AutoModelForCausalLM``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from transformers import AutoModelForCausalLM

from encoders import device as devices
from encoders.base import check_texts, csr_from_rows, decode_row, progress, topk_indices
from encoders.batching import (
    length_sorted_batches,
    model_max_length,
    pad_batch,
    token_ids,
)
from encoders.models import load_model, load_tokenizer
from encoders.sparse_head import SplitLMHead, max_pool


class EchoSpladeEncoder:
    """``prefix`` / ``echo_prefix`` are optional instruction texts before each copy.
    ``device``: as for SpladeEncoder (documents in bf16/fp16 on an accelerator, batches sized by
    tokens)."""

    def __init__(self, model: str, *, max_length: int | None = None, prefix: str = "",
                 echo_prefix: str = "", top_k: int | None = None, chunk_tokens: int = 1024,
                 progress: bool | None = None, device: str | None = None, batch_tokens: int | None = None):
        self.name = str(model)
        self.device = devices.resolve(device)
        self.doc_dtype = devices.half_dtype(self.device)
        self.batch_tokens = batch_tokens
        self.tokenizer = load_tokenizer(model)
        self.head = SplitLMHead(load_model(model, AutoModelForCausalLM).to(self.device))
        self.dim = self.head.vocab_size
        self.max_length = model_max_length(self.tokenizer, self.head.model.config, max_length)
        bos = self.tokenizer.bos_token_id
        self._bos = [bos] if bos is not None else []
        self._prefix = self.tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
        self._echo = self.tokenizer(echo_prefix, add_special_tokens=False)["input_ids"] if echo_prefix else []
        overhead = len(self._bos) + len(self._prefix) + len(self._echo)
        self.max_text_tokens = (self.max_length - overhead) // 2
        if self.max_text_tokens < 1:
            raise ValueError(f"max_length {self.max_length} leaves no room for the text")
        self.top_k, self.chunk_tokens, self.progress = top_k, chunk_tokens, progress

    def echo_inputs(self, text_ids: list[int]) -> tuple[list[int], list[int]]:
        """Model input for one text and the positions that are pooled (the second copy)."""
        t = text_ids[:self.max_text_tokens]
        first = self._bos + self._prefix + t + self._echo
        return first + t, list(range(len(first), len(first) + len(t)))

    @torch.inference_mode()
    def weights(self, text_ids: list[list[int]], half: bool = False) -> torch.Tensor:
        inputs, pooled = zip(*(self.echo_inputs(t) for t in text_ids))
        input_ids, mask = pad_batch(list(inputs), self.tokenizer.pad_token_id)
        with devices.autocast(self.device, self.doc_dtype if half else None):
            states = self.head.hidden(input_ids.to(self.device), mask.to(self.device))
        rows = torch.tensor([i for i, p in enumerate(pooled) for _ in p], dtype=torch.long, device=self.device)
        cols = torch.tensor([c for p in pooled for c in p], dtype=torch.long, device=self.device)
        return max_pool(states[rows, cols], [len(p) for p in pooled], self.head.weight,
                        self.head.bias, self.chunk_tokens)

    def encode_documents(self, texts: list[str], batch_size: int = 8) -> sp.csr_matrix:
        return self._encode(texts, batch_size, "echo SPLADE documents")

    def encode_queries(self, texts: list[str], batch_size: int = 8) -> sp.csr_matrix:
        return self._encode(texts, batch_size, "echo SPLADE queries")

    def decode(self, row: Any) -> list[tuple[str, float]]:
        return decode_row(row, self.tokenizer.convert_ids_to_tokens)

    def _encode(self, texts: list[str], batch_size: int, desc: str) -> sp.csr_matrix:
        texts = check_texts(texts)
        rows: list[tuple[np.ndarray, np.ndarray]] = [
            (np.empty(0, np.int32), np.empty(0, np.float32))] * len(texts)
        todo = [i for i, t in enumerate(texts) if t.strip()]
        if todo:
            ids = token_ids(self.tokenizer, [texts[i] for i in todo], add_special_tokens=False,
                            truncation=True, max_length=self.max_text_tokens)
            documents = "documents" in desc
            # the model reads each text twice: a text's tokens count double
            lengths = [2 * len(x) for x in ids]
            if documents:
                cap, tokens = devices.batch_plan(self.device, batch_size, self.batch_tokens)
                batches = length_sorted_batches(lengths, cap, tokens)
            else:
                batches = length_sorted_batches(lengths, batch_size)
            for batch in progress(batches, len(batches), len(todo), self.progress, desc):
                w = self.weights([ids[j] for j in batch], half=documents).float().cpu().numpy()
                for row_w, j in zip(w, batch):
                    nz = np.flatnonzero(row_w).astype(np.int32)
                    vals = row_w[nz]
                    if self.top_k is not None:
                        keep = topk_indices(vals, nz, self.top_k)
                        nz, vals = nz[keep], vals[keep]
                    rows[todo[j]] = (nz, vals)
        return csr_from_rows(rows, self.dim)
