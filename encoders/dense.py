"""Dense sentence embeddings: mean of the last hidden states under the attention mask, L2-normalised
(the sentence-transformers recipe of all-MiniLM-L6-v2)."""

from __future__ import annotations

import numpy as np
import torch

from encoders.base import check_texts
from encoders.models import DEFAULT_DENSE
from encoders.transformer import TokenStates


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over unpadded positions: [B, L, H], [B, L] -> [B, H]."""
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


class DenseEncoder:
    """``encode_*`` return float32 [n, dim] arrays with unit-norm rows.

    Queries run through the fused float32 ONNX Runtime graph (``encoders.onnx_graphs``;
    PyTorch's vectors to ~1e-7, a lone query ~2.4x faster) unless ``fast_queries=False``.
    ``int8=True`` runs documents through the fused int8 graph (~1.6x the throughput on a 2-core
    AVX2 CPU, approximate) instead of PyTorch. ``query_int8=True`` runs queries through the
    int8 graph: ~3.5x less CPU per lone query, but 0.0045 nDCG@10 less on SciFact's train queries
    in dense search (int8 documents alone cost 0.0002); in a reranked hybrid search, where the
    query's vector is one list of three and MaxSim re-scores, 0.0007 (BENCHMARKS.md, "Encoding
    speed" and "Stored token vectors").

    An empty string is encoded like any text (its [CLS] [SEP] embedding), as
    sentence-transformers does, so every row stays a unit vector.
    """

    def __init__(self, model: str = DEFAULT_DENSE, *, max_length: int | None = None,
                 progress: bool | None = None, int8: bool = False, fast_queries: bool = True,
                 device: str | None = None, batch_tokens: int | None = None, query_int8: bool = False):
        self.int8 = int8
        self.backbone = TokenStates(model, max_length, progress, int8=int8, fast_queries=fast_queries,
                                    device=device, batch_tokens=batch_tokens, query_int8=query_int8)
        self.device = self.backbone.device
        self.name = self.backbone.name
        self.dim = self.backbone.hidden_size

    def encode_documents(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return self._encode(texts, batch_size, "dense documents", "documents")

    def encode_queries(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        # states shared with a multivector encoder over the same model (encoders.query_states)
        texts = check_texts(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, states in enumerate(self.backbone.query_states(texts, batch_size)):
            out[i] = torch.nn.functional.normalize(states.mean(dim=0), dim=-1).numpy()
        return out

    def _encode(self, texts: list[str], batch_size: int, desc: str, role: str) -> np.ndarray:
        texts = check_texts(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for idx, states, mask in self.backbone.batches(texts, batch_size, desc, role):
            pooled = torch.nn.functional.normalize(mean_pool(states, mask), dim=-1)
            out[idx] = pooled.numpy()
        return out
