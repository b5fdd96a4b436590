"""SPLADE pooling over an LM head without materialising batch x seq x vocab logits.

SPLADE weights are ``max_t log(1 + relu(h_t W^T + b))`` over the unpadded tokens t of a text.
log1p∘relu is monotone, so it commutes with the max: we take the max of the raw logits and
activate once per (text, term). The bias is constant over t, so it is added after the max.
The C++ kernel (native/splade_head.hpp) keeps the logits in registers and writes only the
per-text maxima (the idea of Sparton's fused LM-head kernel, on the CPU); the reference path
computes raw logits for ``chunk_tokens`` unpadded tokens at a time and folds them into a
running per-text max, so its peak extra memory is chunk_tokens x vocab instead of
batch x seq x vocab.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

# the fused head + max kernel (native/splade_head.hpp), or None: chunked torch.mm instead
from .native import MODULE as _native


class _Passthrough(nn.Module):
    """Stands in for the output projection so the model returns pre-projection states."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class SplitLMHead:
    """A ``*ForMaskedLM`` / ``*ForCausalLM`` split into "hidden states after the head's own
    transform" and the vocabulary projection (weight, bias).

    Generic over architectures: the module returned by ``get_output_embeddings()`` is swapped
    for a passthrough, so the model's usual forward (including BERT's dense+gelu+LayerNorm head
    transform or a decoder's final norm) yields the states the projection would consume.
    The model passed in is modified; keep a separate copy for plain ``.logits``.
    """

    def __init__(self, model: nn.Module):
        if getattr(model.config, "final_logit_softcapping", None):
            # capping happens after the projection, which the chunked max-pooling fuses away
            raise ValueError(f"{type(model).__name__} caps its final logits (final_logit_softcapping); "
                             "chunked SPLADE pooling needs plain LM-head logits")
        decoder = model.get_output_embeddings()
        if not isinstance(decoder, nn.Linear):
            raise TypeError(f"output embeddings must be nn.Linear, got {type(decoder).__name__}")
        self.weight = decoder.weight.detach()
        bias = decoder.bias
        self.bias = bias.detach() if bias is not None else None
        name = next(n for n, m in model.named_modules() if m is decoder)
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, _Passthrough())
        self.model = model
        self.vocab_size = self.weight.shape[0]

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return out.logits if hasattr(out, "logits") else out[0]


def pack_weight(weight: torch.Tensor) -> np.ndarray | None:
    """The head's [vocab, hidden] weight in the fused kernel's layout [tiles, hidden, 16]
    (16 vocabulary rows interleaved per hidden unit), or None without the C++ extension."""
    if _native is None:
        return None
    vocab, hidden = weight.shape
    tiles = -(-vocab // 16)
    w = np.zeros((tiles * 16, hidden), dtype=np.float32)
    w[:vocab] = weight.detach().float().numpy()
    return np.ascontiguousarray(w.reshape(tiles, 16, hidden).transpose(0, 2, 1))


def max_pool(
    states: torch.Tensor,
    lengths: list[int],
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    chunk_tokens: int = 1024,
    packed: np.ndarray | None = None,
) -> torch.Tensor:
    """SPLADE weights [n_texts, vocab] from the concatenated states of the pooled tokens.

    ``states`` is [sum(lengths), hidden]: the tokens of text 0, then text 1, ... (padding
    already removed). A text with length 0 gets an all-zero row. With ``packed`` (from
    :func:`pack_weight`) the maxima come from the fused C++ kernel, else from chunked torch.mm.
    """
    n, vocab = len(lengths), weight.shape[0]
    # Text i owns tokens [starts[i], starts[i+1]).
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    if packed is not None:
        out = torch.from_numpy(_native.splade_max_logits(
            np.ascontiguousarray(states.detach().numpy(), dtype=np.float32), packed, starts, vocab,
            torch.get_num_threads()))
    elif states.device.type != "cpu":
        out = _indexed_max(states, lengths, weight, chunk_tokens)
    else:
        out = _chunked_max(states, starts.tolist(), weight, chunk_tokens)
    empty = torch.from_numpy(np.diff(starts) == 0).to(out.device)
    if bias is not None:
        out += bias
    out[empty] = 0.0
    return torch.log1p(torch.relu(out))


def _chunked_max(states: torch.Tensor, starts: list[int], weight: torch.Tensor,
                 chunk_tokens: int) -> torch.Tensor:
    """Per-text max of the raw logits, ``chunk_tokens`` rows of logits at a time (reference)."""
    n, vocab = len(starts) - 1, weight.shape[0]
    out = torch.full((n, vocab), float("-inf"), dtype=weight.dtype)
    total = starts[-1]
    # The only large temporary, reused across chunks (fresh allocations would page-fault).
    buf = torch.empty((min(chunk_tokens, max(total, 1)), vocab), dtype=weight.dtype)
    wt = weight.T
    text = 0
    for lo in range(0, total, chunk_tokens):
        hi = min(lo + chunk_tokens, total)
        logits = torch.mm(states[lo:hi], wt, out=buf[:hi - lo])
        while text < n and starts[text] < hi:
            a, b = max(starts[text], lo), min(starts[text + 1], hi)
            if b > a:
                torch.maximum(out[text], logits[a - lo:b - lo].amax(dim=0), out=out[text])
            if starts[text + 1] <= hi:
                text += 1
            else:
                break
    return out


def _indexed_max(states: torch.Tensor, lengths: list[int], weight: torch.Tensor,
                 chunk_tokens: int) -> torch.Tensor:
    """The accelerator path (Sparton's idea, in plain torch): per chunk of ``chunk_tokens``
    tokens, one matrix product for the logits and one scatter-max (``index_reduce_``) into the
    per-text maxima — no Python loop over texts, no batch x seq x vocab tensor. float32 logits
    whatever the states' dtype, so half-precision encoders keep the head exact."""
    n, vocab = len(lengths), weight.shape[0]
    device = states.device
    owner = torch.repeat_interleave(torch.arange(n, device=device),
                                    torch.tensor(lengths, device=device, dtype=torch.long))
    out = torch.full((n, vocab), float("-inf"), dtype=torch.float32, device=device)
    wt = weight.to(device=device, dtype=torch.float32).T
    for lo in range(0, int(owner.numel()), chunk_tokens):
        hi = min(lo + chunk_tokens, int(owner.numel()))
        logits = states[lo:hi].float() @ wt
        with warnings.catch_warnings():  # "index_reduce() is in beta": the API we use is stable enough
            warnings.simplefilter("ignore", UserWarning)
            out.index_reduce_(0, owner[lo:hi], logits, "amax", include_self=True)
    return out


def naive_splade(logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Reference: the textbook formula over the full [batch, seq, vocab] logits."""
    act = torch.log1p(torch.relu(logits)) * attention_mask.unsqueeze(-1).to(logits.dtype)
    return act.amax(dim=1)
