"""SPLADE (Formal et al.): max over tokens of log(1 + ReLU(MLM logits)), masked by attention."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from transformers import AutoModelForMaskedLM

from encoders import device as devices
from encoders.base import check_texts, csr_from_rows, decode_row, progress, topk_indices
from encoders.batching import (
    length_sorted_batches,
    model_max_length,
    pad_batch,
    token_ids,
)
from encoders.models import DEFAULT_SPLADE, load_model, load_tokenizer
from encoders.sparse_head import SplitLMHead, max_pool, pack_weight

log = logging.getLogger(__name__)


class SpladeEncoder:
    """SPLADE encoder over any ``AutoModelForMaskedLM`` checkpoint (default: splade-tiny).

    ``top_k_documents`` / ``top_k_queries`` optionally keep only that many terms per text.
    ``chunk_tokens`` bounds the LM-head temporary to chunk_tokens x vocab floats.
    ``fused_head`` runs the LM head and max-pooling in the fused C++ kernel when the
    extension is built; False (or no extension) uses chunked torch.mm, the reference.

    ``vocabulary`` (approximate, opt-in): term ids (an array or a ``.npy`` file, e.g. from
    :meth:`calibrate_vocabulary`) the LM head is restricted to, together with the batch's own
    input tokens (rare terms are mostly a text's own words, and calibration cannot know
    them). The head is ~3/4 of the work, so it shrinks in proportion; other terms get weight
    0, kept terms get exactly the weights of the full head.

    ``device`` (default: the process default, ``encoders.device``): on the CPU the fused C++
    head; on an accelerator the chunked torch head (``sparse_head._indexed_max``) and documents
    in bf16/fp16 (the vocabulary projection stays float32). Document batches are sized by
    tokens (``batch_tokens``; ``encoders.device.batch_plan``).
    """

    def __init__(
        self,
        model: str = DEFAULT_SPLADE,
        *,
        max_length: int | None = None,
        query_max_length: int | None = None,
        top_k_documents: int | None = None,
        top_k_queries: int | None = None,
        chunk_tokens: int = 1024,
        progress: bool | None = None,
        vocabulary: np.ndarray | str | None = None,
        fused_head: bool = True,
        device: str | None = None,
        batch_tokens: int | None = None,
        fast_queries: bool = True,
    ):
        self.name = str(model)
        self.device = devices.resolve(device)
        self.doc_dtype = devices.half_dtype(self.device)
        self.batch_tokens = batch_tokens
        self.tokenizer = load_tokenizer(model)
        # moved before the split: the head keeps the (moved) projection weights
        self.head = SplitLMHead(load_model(model, AutoModelForMaskedLM).to(self.device))
        config = self.head.model.config
        self.dim = self.head.vocab_size
        self.max_length = model_max_length(self.tokenizer, config, max_length)
        self.query_max_length = model_max_length(self.tokenizer, config, query_max_length)
        self.top_k_documents = top_k_documents
        self.top_k_queries = top_k_queries
        self.chunk_tokens = chunk_tokens
        self.progress = progress
        self.fused_head = fused_head and self.device.type == "cpu"  # the C++ head is the CPU path
        self._packed = pack_weight(self.head.weight) if self.fused_head else None
        self.vocabulary: torch.Tensor | None = None
        if vocabulary is not None:
            self.set_vocabulary(vocabulary)
        # queries: the transformer through its fused float32 ONNX Runtime graph (a lone query
        # pays PyTorch's per-op overhead many times over on a small model), loaded on the first
        # query and checked against PyTorch on a probe; PyTorch where it cannot be used
        self.fast_queries = fast_queries and self.device.type == "cpu"
        self._query_hidden: Any = None
        self._query_lock = threading.Lock()

    def set_vocabulary(self, vocabulary: np.ndarray | str | None) -> None:
        """Restrict the LM head to these term ids (None: the full vocabulary)."""
        if vocabulary is None:
            self.vocabulary = None
            return
        ids = np.load(vocabulary) if isinstance(vocabulary, (str, Path)) else np.asarray(vocabulary)
        if ids.ndim != 1 or len(ids) == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError("vocabulary must be a non-empty 1-d array of integer term ids")
        if ids.min() < 0 or ids.max() >= self.dim:
            raise ValueError(f"vocabulary term ids must be in [0, {self.dim})")
        self.vocabulary = torch.from_numpy(np.unique(ids).astype(np.int64)).to(self.device)

    def calibrate_vocabulary(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Ids of every term with a non-zero document weight on ``texts`` (full head)."""
        saved, self.vocabulary = self.vocabulary, None
        try:
            m = self.encode_documents(texts, batch_size)
        finally:
            self.vocabulary = saved
        return np.unique(m.indices).astype(np.int32)

    def encode_documents(self, texts: list[str], batch_size: int = 32) -> sp.csr_matrix:
        return self._encode(texts, batch_size, self.max_length, self.top_k_documents, "documents")

    def encode_queries(self, texts: list[str], batch_size: int = 32) -> sp.csr_matrix:
        return self._encode(texts, batch_size, self.query_max_length, self.top_k_queries, "queries")

    def decode(self, row: Any) -> list[tuple[str, float]]:
        return decode_row(row, self.tokenizer.convert_ids_to_tokens)

    def _tokenize(self, texts: list[str], max_length: int) -> list[list[int]]:
        return token_ids(self.tokenizer, texts, truncation=True, max_length=max_length)

    def query_hidden(self):
        """What computes a query batch's pre-projection states: the ONNX path or PyTorch's."""
        if not self.fast_queries:
            return self.head.hidden
        with self._query_lock:
            if self._query_hidden is None:
                self._query_hidden = self._load_query_path()
            return self._query_hidden

    def _load_query_path(self):
        head = getattr(self.head.model, "cls", None)  # BERT-family masked LMs: encoder, then `cls`
        if head is None:
            return self.head.hidden
        try:
            from encoders.models import resolve
            from encoders.onnx_graphs import OnnxTransformer
            graph = OnnxTransformer(resolve(self.name), "fp32")
        except Exception as exc:  # noqa: BLE001 - export unsupported here: PyTorch, as before
            log.warning("%s: no ONNX query graph (%s); queries run in PyTorch", self.name, exc)
            return self.head.hidden

        def hidden(input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return head(graph(input_ids=input_ids, attention_mask=mask).last_hidden_state)
        probe = self._tokenize(["a probe sentence to compare the two runtimes", "short"], self.query_max_length)
        input_ids, mask = pad_batch(probe, self.tokenizer.pad_token_id)
        with torch.inference_mode():
            ref, out = self.head.hidden(input_ids, mask), hidden(input_ids, mask)
        m = mask.bool()
        if ref.shape != out.shape or (ref[m] - out[m]).abs().max() > 1e-3 * ref[m].abs().max().clamp(min=1e-6):
            log.warning("%s: the ONNX query graph disagrees with PyTorch; queries run in PyTorch", self.name)
            return self.head.hidden
        return hidden

    @torch.inference_mode()
    def weights(self, ids: list[list[int]], half: bool = False, queries: bool = False) -> torch.Tensor:
        """Dense SPLADE weights [len(ids), vocab] for one batch of token id lists (on the
        encoder's device; ``half``: the transformer in bf16/fp16 where the device has it;
        ``queries``: through the query path, ``query_hidden``)."""
        lengths = [len(x) for x in ids]
        input_ids, mask = pad_batch(ids, self.tokenizer.pad_token_id)
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        hidden = self.query_hidden() if queries else self.head.hidden
        with devices.autocast(self.device, self.doc_dtype if half else None):
            states = hidden(input_ids, mask)
        # Only unpadded positions reach the vocabulary projection.
        valid = states[mask.bool()]
        if self.vocabulary is None:
            return max_pool(valid, lengths, self.head.weight, self.head.bias, self.chunk_tokens, self._packed)
        keep = torch.unique(torch.cat([self.vocabulary, input_ids[mask.bool()]]))
        bias = None if self.head.bias is None else self.head.bias[keep]
        weight = self.head.weight[keep]
        packed = pack_weight(weight) if self.fused_head else None
        sub = max_pool(valid, lengths, weight, bias, self.chunk_tokens, packed)
        out = torch.zeros((len(ids), self.dim), dtype=sub.dtype, device=sub.device)
        out[:, keep] = sub
        return out

    def _encode(self, texts: Any, batch_size: int, max_length: int, top_k: int | None,
                what: str) -> sp.csr_matrix:
        texts = check_texts(texts)
        if batch_size < 1:  # checked up front, also when every text is empty
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rows: list[tuple[np.ndarray, np.ndarray]] = [
            (np.empty(0, np.int32), np.empty(0, np.float32))] * len(texts)
        # An empty or blank text has no terms: give it an empty row rather than the
        # weights that [CLS] [SEP] alone would produce.
        todo = [i for i, t in enumerate(texts) if t.strip()]
        if todo:
            ids = self._tokenize([texts[i] for i in todo], max_length)
            documents = what == "documents"
            if documents:
                cap, tokens = devices.batch_plan(self.device, batch_size, self.batch_tokens)
                batches = length_sorted_batches([len(x) for x in ids], cap, tokens)
            else:
                batches = length_sorted_batches([len(x) for x in ids], batch_size)
            for batch in progress(batches, len(batches), len(todo), self.progress, f"SPLADE {what}"):
                w = self.weights([ids[j] for j in batch], half=documents, queries=not documents
                                 ).float().cpu().numpy()
                for row_w, j in zip(w, batch):
                    nz = np.flatnonzero(row_w).astype(np.int32)
                    vals = row_w[nz]
                    if top_k is not None:
                        keep = topk_indices(vals, nz, top_k)
                        nz, vals = nz[keep], vals[keep]
                    rows[todo[j]] = (nz, vals)
        return csr_from_rows(rows, self.dim)
