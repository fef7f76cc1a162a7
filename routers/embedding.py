"""The routing embedding e(x): the embedding layer's output averaged over real tokens (DESIGN.md section 1),
computed without any transformer layer. Shared by the routing strategies and the feedback applier.

The router is on the path of every sample, so this is its hot loop: the batch is tokenised by the Rust
tokenizer directly (the same vocabulary, truncation and special tokens as the workers' `encode`, without the
Python wrapper's per-call work) and embedded without padding and without materialising a hidden state per
token (`FoldedEmbedding`)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tokenizers import Tokenizer

from dimee.messages import Sample
from dimee.model.artifacts import load_model, load_tokenizer


class Tokens(NamedTuple):
    """A batch's tokens end to end: (T,) ids and token types, (B,) lengths."""

    ids: torch.Tensor
    type_ids: torch.Tensor
    lengths: torch.Tensor


class FoldedEmbedding:
    """e(x) = mean_j LayerNorm(w_j + t_j + p_j) (word, token type, position) without a (tokens, H) tensor.

    LayerNorm is γ ⊙ (x − μ)/σ + β with per-token scalars μ and σ, so the mean over tokens is
    γ ⊙ Σ_j (w_j + t_j + p_j − μ_j)/(n σ_j) + β: weighted sums of table rows (an EmbeddingBag) once μ_j and
    σ_j are known. Those come from per-row tables made once at start — each row's mean and squared norm, and
    every (word, type) · position dot product (vocab × 2 × max_length floats) — so a token costs a few scalar
    lookups and one row read. Equal to the embedding layer's output averaged up to float rounding (tested)."""

    def __init__(self, embeddings: torch.nn.Module, max_length: int) -> None:
        with torch.inference_mode():
            words, types = embeddings.word_embeddings.weight, embeddings.token_type_embeddings.weight
            positions = embeddings.position_embeddings.weight[:max_length]
            self.hidden = words.shape[1]
            self.words, self.types, self.positions = words, types, positions
            self.gamma, self.beta = embeddings.LayerNorm.weight, embeddings.LayerNorm.bias
            self.eps = embeddings.LayerNorm.eps
            # per (type, word): mean and squared norm of w + t; per position: the same of p
            typed = words[None] + types[:, None]  # (types, vocab, H)
            self.typed_mean, self.typed_sq = typed.mean(-1), (typed * typed).sum(-1)
            self.pos_mean, self.pos_sq = positions.mean(-1), (positions * positions).sum(-1)
            self.dot = typed @ positions.T  # (types, vocab, max_length): (w + t) · p

    def __call__(self, ids: torch.Tensor, type_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            starts = torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
            pos = torch.arange(len(ids)) - starts
            mean = self.typed_mean[type_ids, ids] + self.pos_mean[pos]
            square = (self.typed_sq[type_ids, ids] + self.pos_sq[pos] + 2 * self.dot[type_ids, ids, pos]) / self.hidden
            inv_sigma = (square - mean * mean).clamp(min=0).add(self.eps).rsqrt()
            offsets = lengths.cumsum(0) - lengths
            bag = torch.nn.functional.embedding_bag
            total = bag(ids, self.words, offsets, mode="sum", per_sample_weights=inv_sigma)
            total += bag(pos, self.positions, offsets, mode="sum", per_sample_weights=inv_sigma)
            total += bag(type_ids, self.types, offsets, mode="sum", per_sample_weights=inv_sigma)
            total -= bag(torch.zeros_like(ids), torch.ones(1, 1), offsets, mode="sum",
                         per_sample_weights=mean * inv_sigma)  # Σ_j μ_j/σ_j, broadcast over H
            return self.gamma * total / lengths.clamp(min=1)[:, None] + self.beta


class RoutingEmbedder:
    def __init__(self, model_dir: Path, raw: bool = False) -> None:
        self.model = load_model(model_dir, num_layers=0)  # the embedding layer only
        self.tokenizer = load_tokenizer(model_dir)
        # A copy of the fast tokenizer's Rust core, so setting truncation here changes nothing for others.
        self.rust = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
        self.rust.no_padding()
        self.rust.enable_truncation(self.model.spec.max_length)  # longest-first, as `encode`'s truncation=True
        self.raw = raw
        self.folded = FoldedEmbedding(self.model.embeddings, self.model.spec.max_length) if _bert_like(
            self.model.embeddings) and not raw else None

    def embed(self, samples: Sequence[Sample]) -> np.ndarray:
        """(N, H) float64 routing embeddings of a batch of samples."""
        return self.embed_tokens(self.tokenise(samples))

    def tokenise(self, samples: Sequence[Sample]) -> Tokens:
        inputs = [s.text if s.text_pair is None else (s.text, s.text_pair) for s in samples]
        encodings = self.rust.encode_batch(inputs)
        return Tokens(torch.tensor(list(chain.from_iterable(e.ids for e in encodings)), dtype=torch.long),
                      torch.tensor(list(chain.from_iterable(e.type_ids for e in encodings)), dtype=torch.long),
                      torch.tensor([len(e.ids) for e in encodings], dtype=torch.long))

    def embed_tokens(self, tokens: Tokens) -> np.ndarray:
        if self.folded is not None:
            out = self.folded(*tokens)
        else:
            out = self.model.packed_routing_embedding(*tokens, raw=self.raw)
        return out.numpy().astype(np.float64)


def _bert_like(embeddings: torch.nn.Module) -> bool:
    """Word, token-type and absolute position embeddings summed, then one LayerNorm (BERT, MiniLM, …)."""
    return all(hasattr(embeddings, name) for name in ("word_embeddings", "token_type_embeddings",
                                                       "position_embeddings", "LayerNorm")) and \
        getattr(embeddings, "position_embedding_type", "absolute") == "absolute"
