"""Multivector (ColBERT-style) encoder: one L2-normalised vector per token, MaxSim scoring.

Token vectors come from a dense model's last hidden states, optionally through a linear
projection. The projection is found, in order: the ``projection`` argument (a .safetensors /
.pt file holding ``weight`` [out, in]); a sentence-transformers / PyLate ``1_Dense`` folder in
the model directory; a ``linear.weight`` tensor in the checkpoint itself (Stanford ColBERT).
So a real ColBERT checkpoint directory loads through this same class.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors.torch import load_file

from encoders.base import check_texts
from encoders.models import DEFAULT_DENSE
from encoders.transformer import TokenStates


def _load_weight(path: Path, keys: tuple[str, ...]) -> torch.Tensor | None:
    state = (load_file(str(path)) if path.suffix == ".safetensors"
             else torch.load(path, map_location="cpu", weights_only=True))
    for k in keys:
        if k in state:
            return state[k].float()
    return None


def find_projection(model_dir: str, projection: str | Path | None) -> torch.Tensor | None:
    """The [out, in] projection matrix for a model, or None for raw hidden states."""
    if projection is not None:
        w = _load_weight(Path(projection), ("weight", "linear.weight"))
        if w is None:
            raise ValueError(f"{projection} has no 'weight' or 'linear.weight' tensor")
        return w
    root = Path(model_dir)
    for f in (root / "1_Dense" / "model.safetensors", root / "1_Dense" / "pytorch_model.bin"):
        if f.is_file():
            return _load_weight(f, ("linear.weight", "weight"))
    ckpt = root / "model.safetensors"
    if ckpt.is_file():
        return _load_weight(ckpt, ("linear.weight",))
    return None


def maxsim(q_tokens: np.ndarray, d_tokens: np.ndarray) -> float:
    """Sum over query tokens of the best dot product with any document token."""
    if len(q_tokens) == 0 or len(d_tokens) == 0:
        return 0.0
    return float((np.asarray(q_tokens) @ np.asarray(d_tokens).T).max(axis=1).sum())


class StackedTokens(NamedTuple):
    """Many documents' token vectors in one block, as a collection stores them: ``codes``
    [sum of lengths, dim] (float32, float16 or int8), ``lengths`` per document, and for int8
    codes one ``scales`` entry per token (vector = code x scale); None otherwise."""
    codes: np.ndarray
    lengths: np.ndarray
    scales: np.ndarray | None = None


def maxsim_scores(q_tokens: np.ndarray, docs: "list[np.ndarray] | StackedTokens") -> np.ndarray:
    """MaxSim of one query against each document, as float32 [len(docs)].

    One matrix product for the whole batch: the documents' token vectors are stacked
    ([sum of lengths, dim] x [dim, query tokens]) and the per-document maxima are taken by
    segment (``np.maximum.reduceat``), so no padding is computed. Equals ``maxsim`` per document.
    ``docs`` already stacked (StackedTokens) skips the stacking; int8 codes are multiplied
    by their scales after the product (one multiply per token and query token, not per
    dimension)."""
    q = np.asarray(q_tokens, dtype=np.float32)
    if not isinstance(docs, StackedTokens):
        lengths = np.array([len(d) for d in docs], dtype=np.int64)
        keep = [np.asarray(d, dtype=np.float32) for d in docs if len(d)]
        flat = (np.concatenate(keep) if len(keep) > 1 else keep[0]) if keep else None
        docs = StackedTokens(flat, lengths)
    lengths = np.asarray(docs.lengths, dtype=np.int64)
    out = np.zeros(len(lengths), dtype=np.float32)
    keep = np.flatnonzero(lengths > 0)
    if len(q) == 0 or len(keep) == 0:
        return out
    sims = np.asarray(docs.codes, dtype=np.float32) @ q.T          # [sum L, query tokens]
    if docs.scales is not None:
        sims *= np.asarray(docs.scales, dtype=np.float32)[:, None]
    starts = np.concatenate(([0], np.cumsum(lengths[keep])[:-1]))
    out[keep] = np.maximum.reduceat(sims, starts, axis=0).sum(axis=1)
    return out


PROJECTION_SEED = 20240601


def fixed_projection(in_dim: int, out_dim: int, seed: int = PROJECTION_SEED) -> np.ndarray:
    """A fixed [out_dim, in_dim] projection with orthonormal rows (QR of a seeded Gaussian):
    the same matrix on every machine and run, so a collection needs only ``out_dim`` to map
    query tokens the way its stored document tokens were mapped. Orthonormal rows keep the
    projected dot products unbiased estimates of in_dim / out_dim x the originals; tokens are
    L2-normalised again after it (``project_tokens``)."""
    if not 0 < out_dim <= in_dim:
        raise ValueError(f"a projection goes to 1..{in_dim} dimensions, not {out_dim}")
    if out_dim == in_dim:
        return np.eye(in_dim, dtype=np.float32)
    g = np.random.default_rng(seed).standard_normal((in_dim, out_dim))
    q, _ = np.linalg.qr(g)  # [in_dim, out_dim], orthonormal columns
    return np.ascontiguousarray(q.T, dtype=np.float32)


def project_tokens(tokens: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """Token vectors through a projection (None: unchanged), L2-normalised again."""
    t = np.asarray(tokens, dtype=np.float32)
    if weight is None or len(t) == 0:
        return t
    t = t @ weight.T
    return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)


class MultiVectorEncoder:
    """``encode_*`` return a list of float32 [n_tokens, dim] arrays, rows unit-norm.

    Every unpadded token is kept, [CLS] and [SEP] included (as ColBERT does); texts longer
    than the model's limit are truncated. Queries run through the fused float32 ONNX graph
    unless ``fast_queries=False``, or its int8 graph with ``query_int8=True``
    (``encoders.transformer.TokenStates``).
    """

    def __init__(self, model: str = DEFAULT_DENSE, *, projection: str | Path | None = None,
                 max_length: int | None = None, progress: bool | None = None, fast_queries: bool = True,
                 device: str | None = None, batch_tokens: int | None = None, query_int8: bool = False):
        self.backbone = TokenStates(model, max_length, progress, fast_queries=fast_queries,
                                    device=device, batch_tokens=batch_tokens, query_int8=query_int8)
        self.device = self.backbone.device
        self.name = self.backbone.name
        self.projection = find_projection(self.backbone.path, projection)
        if self.projection is not None and self.projection.shape[1] != self.backbone.hidden_size:
            raise ValueError(f"projection expects inputs of {self.projection.shape[1]}, "
                             f"model gives {self.backbone.hidden_size}")
        self.dim = self.backbone.hidden_size if self.projection is None else self.projection.shape[0]

    def encode_documents(self, texts: list[str], batch_size: int = 32) -> list[np.ndarray]:
        return self._encode(texts, batch_size, "multivector documents", "documents")

    def encode_queries(self, texts: list[str], batch_size: int = 32) -> list[np.ndarray]:
        # states shared with a dense encoder over the same model (encoders.query_states)
        texts = check_texts(texts)
        return [self._vectors(states) for states in self.backbone.query_states(texts, batch_size)]

    def _vectors(self, states: torch.Tensor) -> np.ndarray:
        if self.projection is not None:
            states = states @ self.projection.T
        return torch.nn.functional.normalize(states, dim=-1).numpy().astype(np.float32, copy=True)

    def _encode(self, texts: list[str], batch_size: int, desc: str, role: str) -> list[np.ndarray]:
        texts = check_texts(texts)
        out: list[np.ndarray] = [np.empty((0, self.dim), np.float32)] * len(texts)
        for idx, states, mask in self.backbone.batches(texts, batch_size, desc, role):
            if self.projection is not None:
                states = states @ self.projection.T
            states = torch.nn.functional.normalize(states, dim=-1)
            lengths = mask.sum(dim=1).tolist()
            for row, i in enumerate(idx):
                out[i] = states[row, :lengths[row]].numpy().astype(np.float32, copy=True)
        return out
