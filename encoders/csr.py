"""CSR / CSRv2: sparse codes from a top-k sparse autoencoder over frozen dense embeddings.

(Wen et al. 2025, "Beyond Matryoshka: Contrastive Sparse Representation"; CSRv2.) The encoder
keeps the k largest ReLU pre-activations of a wide hidden layer (4-32x the input), so every
text becomes a k-sparse vector over ``hidden`` latents that goes through the same sparse index
as SPLADE. Training (``training.csr``) combines reconstruction, a dead-latent auxiliary
loss, an optional contrastive loss on (query, relevant document) pairs, and CSRv2's progressive
k-annealing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from encoders.base import csr_from_rows, decode_row


class TopKSAE(nn.Module):
    """x -> z = TopK_k(ReLU(W_enc (x - b_pre) + b_enc)) -> x_hat = W_dec z + b_pre."""

    def __init__(self, d_in: int, hidden: int, k: int):
        super().__init__()
        self.d_in, self.hidden, self.k = d_in, hidden, k
        self.b_pre = nn.Parameter(torch.zeros(d_in))
        dec = torch.randn(hidden, d_in)
        dec = dec / dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(dec)  # rows = latent directions, kept unit-norm
        self.W_enc = nn.Parameter(dec.clone())  # tied at init, as in Gao et al. 2024
        self.b_enc = nn.Parameter(torch.zeros(hidden))

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_pre) @ self.W_enc.T + self.b_enc

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(x))

    def encode(self, x: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """Dense [n, hidden] tensor with at most k non-zeros per row."""
        pre = self.pre_activations(x)
        vals, idx = pre.topk(k or self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, idx, vals)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_pre

    def decode_topk(self, vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``decode`` from the k (value, latent) pairs per row: gathers k decoder rows instead
        of multiplying a mostly-zero [n, hidden] matrix (the training hot path)."""
        return torch.einsum("nk,nkd->nd", vals, self.W_dec[idx]) + self.b_pre

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8))

    def save(self, path: str | Path, meta: dict[str, Any]) -> None:
        torch.save({"state": self.state_dict(), "d_in": self.d_in, "hidden": self.hidden,
                    "k": self.k, "meta": meta}, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> tuple[TopKSAE, dict[str, Any]]:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
        sae = cls(ckpt["d_in"], ckpt["hidden"], ckpt["k"])
        sae.load_state_dict(ckpt["state"])
        return sae.eval(), ckpt["meta"]


def codes_to_csr(z: torch.Tensor) -> sp.csr_matrix:
    z = z.detach().cpu().numpy()
    rows = []
    for r in z:
        nz = np.flatnonzero(r).astype(np.int32)
        rows.append((nz, r[nz].astype(np.float32)))
    return csr_from_rows(rows, z.shape[1])


class CSREncoder:
    """Sparse encoder: dense model -> top-k SAE codes. ``dim`` is the number of latents.

    Load a trained checkpoint with ``CSREncoder.load(path)``; it records its dense model.
    """

    tokenizer = None  # latents are no tokens: a client's sparse vector for CSR gives indices

    def __init__(self, dense: Any, sae: TopKSAE, k: int | None = None):
        if dense.dim != sae.d_in:
            raise ValueError(f"dense model gives {dense.dim} dims, autoencoder expects {sae.d_in}")
        self.dense, self.sae = dense, sae
        self.k = k or sae.k
        self.dim = sae.hidden
        self.name = f"csr-k{self.k}"

    @classmethod
    def load(cls, path: str | Path, k: int | None = None, progress: bool | None = None,
             dense_model: str | None = None, **dense_kwargs: Any) -> CSREncoder:
        """A trained checkpoint over its dense model (the one it records, or ``dense_model``);
        ``dense_kwargs`` (device, fast_queries, ...) go to the DenseEncoder."""
        from encoders.dense import DenseEncoder
        sae, meta = TopKSAE.load(path)
        return cls(DenseEncoder(dense_model or meta["dense_model"], progress=progress, **dense_kwargs), sae, k)

    @torch.inference_mode()
    def codes(self, embeddings: np.ndarray) -> sp.csr_matrix:
        return codes_to_csr(self.sae.encode(torch.from_numpy(np.asarray(embeddings, np.float32)), self.k))

    def encode_documents(self, texts: list[str], batch_size: int = 32) -> sp.csr_matrix:
        return self.codes(self.dense.encode_documents(texts, batch_size))

    def encode_queries(self, texts: list[str]) -> sp.csr_matrix:
        return self.codes(self.dense.encode_queries(texts))

    def decode(self, row: Any) -> list[tuple[str, float]]:
        return decode_row(row, lambda ids: [f"latent_{i}" for i in ids])
