"""Tokenisation into the tensors the encoder takes, for single sentences and sentence pairs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase


def encode(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    text_pairs: Sequence[str | None] | None = None,
    max_length: int = 64,
) -> dict[str, torch.Tensor]:
    """Dynamic right padding to the longest sample in the batch, truncated to max_length."""
    pairs = None
    if text_pairs is not None and any(p is not None for p in text_pairs):
        pairs = [p or "" for p in text_pairs]
    encoded = tokenizer(
        list(texts), pairs, truncation=True, max_length=max_length, padding=True, return_tensors="pt"
    )
    out = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    if "token_type_ids" in encoded:
        out["token_type_ids"] = encoded["token_type_ids"]
    return out
