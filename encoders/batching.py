"""Tokenised-batch plumbing shared by the transformer encoders."""

from __future__ import annotations

from typing import Any

import torch


def model_max_length(tokenizer: Any, config: Any, requested: int | None) -> int:
    """The longest input the model takes: tokenizer limit, bounded by position embeddings."""
    limit = getattr(config, "max_position_embeddings", None) or 512
    tok_limit = getattr(tokenizer, "model_max_length", limit)
    if not isinstance(tok_limit, int) or tok_limit > 100_000:  # HF's "unset" sentinel is huge
        tok_limit = limit
    cap = min(limit, tok_limit)
    return cap if requested is None else min(requested, cap)


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), to limit padding."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def pad_batch(ids: list[list[int]], pad_id: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and attention mask for a list of token id lists."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id or 0, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, :len(x)] = torch.tensor(x, dtype=torch.long)
        mask[i, :len(x)] = 1
    return input_ids, mask


def token_ids(tokenizer: Any, texts: list[str], slice_size: int = 256, **kwargs: Any) -> list[list[int]]:
    """Input ids of ``texts``, tokenised a slice at a time: a fast tokenizer's full output
    (offsets, token strings) for a whole corpus costs hundreds of MB; the ids alone do not."""
    ids: list[list[int]] = []
    for lo in range(0, len(texts), slice_size):
        ids.extend(tokenizer(texts[lo:lo + slice_size], **kwargs)["input_ids"])
    return ids
