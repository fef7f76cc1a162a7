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
    """Dynamic right padding to the longest sample in the batch, truncated to max_length. A sample is encoded
    as it would be alone: single sentences and sentence pairs in one batch are tokenised apart (a single
    sentence never gets an empty second segment), then padded together."""
    pairs = list(text_pairs) if text_pairs is not None else [None] * len(texts)
    if all(p is None for p in pairs) or all(p is not None for p in pairs):
        given = None if pairs[0] is None else pairs
        encoded = tokenizer(list(texts), given, truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt")
    else:
        rows: list = [None] * len(texts)
        for has_pair in (False, True):
            index = [i for i, p in enumerate(pairs) if (p is not None) == has_pair]
            part = tokenizer([texts[i] for i in index], [pairs[i] for i in index] if has_pair else None,
                             truncation=True, max_length=max_length)
            for row, i in enumerate(index):
                rows[i] = {key: values[row] for key, values in part.items()}
        encoded = tokenizer.pad(rows, padding=True, return_tensors="pt")
    out = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    if "token_type_ids" in encoded:
        out["token_type_ids"] = encoded["token_type_ids"]
    return out


def token_counts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                 text_pairs: Sequence[str | None] | None = None, max_length: int = 64) -> list[int]:
    """How many tokens the encoder reads of each sample (special tokens included): what a worker's `encode`
    keeps, so also the length of the hidden state an escalation carries."""
    counts: list[int] = []
    for start in range(0, len(texts), 256):
        pairs = None if text_pairs is None else text_pairs[start:start + 256]
        mask = encode(tokenizer, texts[start:start + 256], pairs, max_length)["attention_mask"]
        counts.extend(int(n) for n in mask.sum(1))
    return counts
