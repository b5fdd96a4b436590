"""A transformer encoder's per-token hidden states, batched by length (dense and multivector)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModel

from encoders import device as devices
from encoders.base import progress
from encoders.batching import (
    length_sorted_batches,
    model_max_length,
    pad_batch,
    token_ids,
)
from encoders.models import load_model, load_tokenizer, resolve
from encoders.onnx_graphs import OnnxTransformer, cache_dirs
from encoders.query_states import QueryStates, shared

log = logging.getLogger(__name__)


def sentence_transformers_max_length(path: str) -> int | None:
    """``max_seq_length`` of a sentence-transformers folder (MiniLM: 256), if it has one."""
    cfg = Path(path) / "sentence_bert_config.json"
    if cfg.is_file():
        return json.loads(cfg.read_text()).get("max_seq_length")
    return None


class TokenStates:
    """Loads a transformer + tokenizer and yields last hidden states for batches of texts.

    The model that runs depends on the role of the texts:

    - documents: the Hugging Face ``AutoModel`` in PyTorch; with ``int8=True`` the model's fused
      int8 ONNX Runtime graph instead (approximate, ~1.6x the throughput on long inputs).
    - queries: the fused float32 ONNX Runtime graph (``fast_queries=True``, the default; always
      with ``int8=True``): PyTorch's states to float rounding with a fraction of its per-op
      overhead, so a lone MiniLM query encodes ~2.4x faster. Loaded on the first query, so
      document-only users never pay for it. It is checked against PyTorch on a probe text when
      it loads, and an architecture it cannot reproduce falls back to PyTorch (logged).
      ``query_int8=True``: the fused int8 graph instead (~3.5x less CPU per lone MiniLM query,
      approximate: per-token cosine ~0.99 to PyTorch's; what it costs in nDCG@10 is in
      BENCHMARKS.md, "Encoding speed" and "Stored token vectors").

    ``device`` (default: the process default, ``encoders.device``): where the PyTorch model
    runs. On an accelerator documents run in bf16/fp16 in batches sized by tokens, and queries
    run in PyTorch there too (the ONNX graphs are the CPU's; ``int8`` needs the CPU).
    """

    def __init__(self, model: str, max_length: int | None = None, progress: bool | None = None,
                 int8: bool = False, fast_queries: bool = True, device: str | None = None,
                 batch_tokens: int | None = None, query_int8: bool = False):
        self.name = str(model)
        self.path = resolve(model)
        self.device = devices.resolve(device)
        if int8 and self.device.type != "cpu":
            raise devices.DeviceError(f"int8 (ONNX Runtime) documents run on the CPU, not on {self.device}")
        if query_int8 and self.device.type != "cpu":
            raise devices.DeviceError(f"int8 (ONNX Runtime) queries run on the CPU, not on {self.device}")
        if query_int8 and not fast_queries:
            raise ValueError("query_int8 runs queries through an ONNX graph: it needs fast_queries=True")
        self.query_precision = "int8" if query_int8 else "fp32"
        self.doc_dtype = devices.half_dtype(self.device)
        self.batch_tokens = batch_tokens
        self.tokenizer = load_tokenizer(model)
        self.int8 = int8
        self.fast_queries = (fast_queries or int8) and self.device.type == "cpu"
        self.int8_model: OnnxTransformer | None = None
        self.model: Any = None  # PyTorch, for documents (absent with int8=True)
        if int8:
            self.config = AutoConfig.from_pretrained(self.path)
            self.int8_model = OnnxTransformer(self.path, "int8")
        else:
            self.model = load_model(model, AutoModel).to(self.device)
            self.config = self.model.config
        if max_length is None:
            max_length = sentence_transformers_max_length(self.path)
        self.max_length = model_max_length(self.tokenizer, self.config, max_length)
        self.hidden_size = self.config.hidden_size
        self.progress = progress
        # shared with every TokenStates that computes the same query states (the dense and the
        # multivector encoder over one MiniLM): one query graph, one forward pass per query
        # (the ONNX graphs' cache location is part of the key: another cache, another graph)
        runtime = ("onnx", self.query_precision, *map(str, cache_dirs())) if self.fast_queries else ("torch",)
        self.shared_queries: QueryStates = shared((self.path, self.max_length, str(self.device), *runtime))

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return token_ids(self.tokenizer, texts, truncation=True, max_length=self.max_length)

    def query_model(self) -> Any:
        """The model queries run through (see the class docstring)."""
        if not self.fast_queries:
            return self.model
        side = self.shared_queries
        with side.model_lock:
            if side.model is None:
                side.model = self._load_query_graph()
            return side.model

    def query_states(self, texts: list[str], batch_size: int = 32) -> list[torch.Tensor]:
        """Unpadded last hidden states [n_tokens, hidden] (float32, CPU) of each query, computed
        once for every encoder that shares them (``encoders.query_states``)."""
        def compute(todo: list[str]) -> list[torch.Tensor]:
            out: list[Any] = [None] * len(todo)
            for idx, states, mask in self.batches(todo, batch_size, "queries", "queries"):
                for row, n in enumerate(mask.sum(dim=1).tolist()):
                    out[idx[row]] = states[row, :n].float().clone()
            return out
        return self.shared_queries.get(texts, compute)

    def _load_query_graph(self) -> Any:
        try:
            graph = OnnxTransformer(self.path, self.query_precision)
        except Exception as exc:  # export or fusion unsupported for this architecture
            if self.model is None:
                raise
            log.warning("%s: no ONNX query graph (%s); queries run in PyTorch", self.name, exc)
            return self.model
        if self.model is not None and not self._same_states(graph):
            log.warning("%s: the ONNX query graph disagrees with PyTorch; queries run in PyTorch", self.name)
            return self.model
        return graph

    @torch.inference_mode()
    def _same_states(self, graph: OnnxTransformer) -> bool:
        ids = self.tokenize(["a probe sentence to compare the two runtimes", "short"])
        input_ids, mask = pad_batch(ids, self.tokenizer.pad_token_id)
        ref = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        out = graph(input_ids=input_ids, attention_mask=mask).last_hidden_state
        if ref.shape != out.shape:
            return False
        m = mask.bool()
        if self.query_precision == "int8":  # approximate by design: every token's direction kept
            return bool(torch.nn.functional.cosine_similarity(ref[m], out[m], dim=-1).min() >= 0.95)
        return bool((ref[m] - out[m]).abs().max() <= 1e-3 * ref[m].abs().max().clamp(min=1e-6))

    @torch.inference_mode()
    def batches(self, texts: list[str], batch_size: int, desc: str, role: str = "documents"
                ) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """(text indices, hidden states [B, L, H], attention mask [B, L]) per batch;
        ``role`` is "documents" or "queries" (which model runs)."""
        if role == "queries":
            model = self.query_model()
        elif role == "documents":
            model = self.int8_model if self.int8 else self.model
        else:
            raise ValueError(f"role must be 'documents' or 'queries', got {role!r}")
        ids = self.tokenize(texts)
        torch_model = model is self.model
        if role == "documents":
            cap, tokens = devices.batch_plan(self.device if torch_model else torch.device("cpu"),
                                             batch_size, self.batch_tokens)
            groups = length_sorted_batches([len(x) for x in ids], cap, tokens)
        else:
            groups = length_sorted_batches([len(x) for x in ids], batch_size)
        half = self.doc_dtype if role == "documents" and torch_model else None
        for group in progress(groups, len(groups), len(texts), self.progress, desc):
            input_ids, mask = pad_batch([ids[i] for i in group], self.tokenizer.pad_token_id)
            if torch_model and self.device.type != "cpu":
                with devices.autocast(self.device, half):
                    out: Any = model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device))
                # float32 on the CPU for the pooling that follows (callers work in numpy)
                yield group, out.last_hidden_state.float().cpu(), mask
            else:
                out = model(input_ids=input_ids, attention_mask=mask)
                yield group, out.last_hidden_state, mask
