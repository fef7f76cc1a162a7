"""Features a router can compute before any transformer layer runs: the routing embedding, the mean of the
raw word embeddings, token count, how rare the tokens were in the training split, and contrast words
(sentiment that turns mid-sentence is a classic hard case). All from the embedding layer and the tokenizer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from dimee.model.early_exit import EarlyExitEncoder
from dimee.model.tokenize import encode

CONTRAST_WORDS = ("but", "however", "although", "though", "yet", "not", "n't", "nor", "despite", "still")
SCALAR_NAMES = ("token_count", "rarity_mean", "rarity_max", "unseen_share", "contrast_words")


@dataclass
class TokenRarity:
    """-log relative frequency of each token id in the training split (add-one smoothed)."""

    counts: dict[int, int]
    total: int
    vocab_size: int

    @classmethod
    def fit(cls, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> TokenRarity:
        counts: dict[int, int] = {}
        total = 0
        for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
            for token in ids:
                counts[token] = counts.get(token, 0) + 1
            total += len(ids)
        return cls(counts, total, len(tokenizer))

    def score(self, token: int) -> float:
        return float(-np.log((self.counts.get(token, 0) + 1) / (self.total + self.vocab_size)))

    def to_json(self) -> dict:
        return {"counts": {str(k): v for k, v in self.counts.items()}, "total": self.total,
                "vocab_size": self.vocab_size}

    @classmethod
    def from_json(cls, data: dict) -> TokenRarity:
        return cls({int(k): v for k, v in data["counts"].items()}, data["total"], data["vocab_size"])


class FeatureExtractor:
    def __init__(self, embedder: EarlyExitEncoder, tokenizer: PreTrainedTokenizerBase, rarity: TokenRarity) -> None:
        self.embedder, self.tokenizer, self.rarity = embedder, tokenizer, rarity
        self._contrast = {i for w in CONTRAST_WORDS for i in tokenizer(w, add_special_tokens=False)["input_ids"]}

    @property
    def names(self) -> list[str]:
        hidden = self.embedder.spec.hidden_size
        return [f"emb_{i}" for i in range(hidden)] + [f"raw_{i}" for i in range(hidden)] + list(SCALAR_NAMES)

    def scalars(self, texts: Sequence[str], pairs: Sequence[str | None] | None = None) -> np.ndarray:
        pair_list = list(pairs) if pairs is not None else [None] * len(texts)
        rows = []
        for text, pair in zip(texts, pair_list, strict=True):
            ids = self.tokenizer(text, pair, add_special_tokens=False, truncation=True,
                                 max_length=self.embedder.spec.max_length)["input_ids"]
            scores = [self.rarity.score(t) for t in ids] or [0.0]
            unseen = sum(self.rarity.counts.get(t, 0) == 0 for t in ids) / max(len(ids), 1)
            rows.append([len(ids), float(np.mean(scores)), float(np.max(scores)), unseen,
                         sum(t in self._contrast for t in ids)])
        return np.asarray(rows, dtype=np.float64)

    def extract(self, texts: Sequence[str], pairs: Sequence[str | None] | None = None,
                batch_size: int = 128) -> np.ndarray:
        blocks = []
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            chunk_pairs = list(pairs[start : start + batch_size]) if pairs is not None else None
            inputs = encode(self.tokenizer, chunk, chunk_pairs, self.embedder.spec.max_length)
            with torch.inference_mode():
                emb = self.embedder.routing_embedding(**inputs).double().numpy()
                raw = self.embedder.routing_embedding(**inputs, raw=True).double().numpy()
            blocks.append(np.hstack([emb, raw, self.scalars(chunk, chunk_pairs)]))
        return np.vstack(blocks)


def save_rarity(rarity: TokenRarity, path: Path) -> None:
    path.write_text(json.dumps(rarity.to_json()))


def load_rarity(path: Path) -> TokenRarity:
    return TokenRarity.from_json(json.loads(path.read_text()))
