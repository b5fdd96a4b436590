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


def length_sorted_batches(lengths: list[int], batch_size: int, max_tokens: int | None = None
                          ) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), to limit padding.

    With ``max_tokens`` a batch is sized by tokens: it closes before its padded size
    (texts x longest text) would pass ``max_tokens`` — so a batch of long texts is small and one
    of short texts large — and ``batch_size`` only caps the count (a lone text longer than the
    budget still gets its own batch). Without it, batches hold ``batch_size`` texts."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    if max_tokens is None:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # longest first: the batch's first text sets its padded width
        width = lengths[current[0]] if current else lengths[i]
        if current and (len(current) >= batch_size or (len(current) + 1) * max(width, 1) > max_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


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
