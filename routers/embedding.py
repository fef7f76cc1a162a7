"""The routing embedding e(x): the embedding layer's output averaged over real tokens (docs/method.md section 1),
computed without any transformer layer. Shared by the routing strategies and the feedback applier.

The router is on the path of every sample, so this is its hot loop, and it needs neither torch nor
transformers: the Rust tokenizer reads the model's tokenizer.json (the workers' vocabulary, truncation and
special tokens), and for a BERT-like embedding layer (`FoldedEmbedding`) a few tables made at start from
its weights (read with safetensors as numpy) give e(x) without a hidden state per token. A router so built
starts in about a second and holds a few hundred MB instead of torch's gigabyte. Another kind of embedding
layer falls back to the model itself (`ModelEmbedding`, torch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
from safetensors import safe_open
from scipy import sparse
from tokenizers import Tokenizer

from dimee.common.workdir import Workdir
from dimee.model.spec import ModelSpec, load_spec
from dimee.streaming.messages import Sample

LAYER = {"words": "embeddings.word_embeddings.weight", "types": "embeddings.token_type_embeddings.weight",
         "positions": "embeddings.position_embeddings.weight", "gamma": "embeddings.LayerNorm.weight",
         "beta": "embeddings.LayerNorm.bias"}  # the tensors of a BERT-like embedding layer in model.safetensors


class Tokens(NamedTuple):
    """A batch's tokens end to end: (T,) ids and token types, (B,) lengths."""

    ids: np.ndarray
    type_ids: np.ndarray
    lengths: np.ndarray

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Each token's sample and position within it."""
        sample = np.repeat(np.arange(len(self.lengths)), self.lengths)
        return sample, np.arange(len(self.ids)) - np.repeat(np.cumsum(self.lengths) - self.lengths, self.lengths)


class Embedding(Protocol):
    def __call__(self, tokens: Tokens) -> np.ndarray:
        """(B, H) float64 routing embeddings."""


class FoldedEmbedding:
    """e(x) = mean_j LayerNorm(w_j + t_j + p_j) (word, token type, position) without a (tokens, H) array.

    LayerNorm is γ ⊙ (x − μ)/σ + β with per-token scalars μ and σ, so the mean over tokens is
    γ ⊙ Σ_j (w_j + t_j + p_j − μ_j)/(n σ_j) + β: weighted sums of table rows (a sparse product) once μ_j
    and σ_j are known. Those come from per-row tables made once at start — each row's mean and squared norm,
    and every (word + type) · position dot product (vocab × 2 × max_length floats) — so a token costs a few
    scalar lookups. Equal to the embedding layer's output averaged up to float rounding (tested). With
    `raw`, the mean of the word embeddings alone."""

    def __init__(self, layer: dict[str, np.ndarray], eps: float, max_length: int, raw: bool = False) -> None:
        words, types = layer["words"], layer["types"]
        positions = layer["positions"][:max_length]
        self.words, self.types, self.positions, self.raw = words, types, positions, raw
        self.gamma, self.beta, self.eps = layer["gamma"].astype(np.float64), layer["beta"].astype(np.float64), eps
        self.hidden = words.shape[1]
        if raw:
            return
        # row statistics without a float64 copy of the vocabulary (the router's memory is a goal)
        def squares(a: np.ndarray) -> np.ndarray:
            return np.einsum("ij,ij->i", a, a).astype(np.float64)

        def means(a: np.ndarray) -> np.ndarray:
            return a.mean(1, dtype=np.float64)

        self.typed_mean = means(words)[None, :] + means(types)[:, None]  # (types, vocab)
        self.typed_sq = squares(words)[None, :] + 2.0 * (types @ words.T) + squares(types)[:, None]
        self.pos_mean, self.pos_sq = means(positions), squares(positions)
        self.dot = (words @ positions.T)[None] + (types @ positions.T)[:, None]  # (types, vocab, max_length)

    @classmethod
    def load(cls, model_dir: Path, spec: ModelSpec, raw: bool) -> FoldedEmbedding | None:
        """From the model's weights, or None where the layer is not BERT-like (absolute positions, one
        LayerNorm after the sum)."""
        if spec.backbone_config.get("position_embedding_type", "absolute") != "absolute":
            return None
        with safe_open(str(model_dir / Workdir.WEIGHTS), framework="np") as weights:
            if not set(LAYER.values()) <= set(weights.keys()):
                return None
            # float32 whatever the file holds (a half-precision copy too): the sparse products need it
            layer = {name: weights.get_tensor(key).astype(np.float32) for name, key in LAYER.items()}
        return cls(layer, float(spec.backbone_config.get("layer_norm_eps", 1e-12)), spec.max_length, raw)

    def __call__(self, tokens: Tokens) -> np.ndarray:
        ids, types, lengths = tokens
        sample, pos = tokens.rows()
        count = np.maximum(lengths, 1)[:, None]
        if self.raw:
            return self._sum(self.words, sample, ids, np.ones(len(ids))) / count
        mean = self.typed_mean[types, ids] + self.pos_mean[pos]
        square = (self.typed_sq[types, ids] + self.pos_sq[pos] + 2.0 * self.dot[types, ids, pos]) / self.hidden
        inv_sigma = 1.0 / np.sqrt(np.maximum(square - mean * mean, 0.0) + self.eps)
        total = (self._sum(self.words, sample, ids, inv_sigma) + self._sum(self.positions, sample, pos, inv_sigma)
                 + self._sum(self.types, sample, types, inv_sigma))
        total -= np.bincount(sample, weights=mean * inv_sigma, minlength=len(lengths))[:, None]  # Σ μ_j/σ_j
        return self.gamma * total / count + self.beta

    @staticmethod
    def _sum(table: np.ndarray, sample: np.ndarray, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Per sample, the weighted sum of the table rows its tokens name: one sparse × dense product (in the
        table's float32: float64 weights would make scipy copy the whole table to float64 on every call)."""
        picks = sparse.csr_matrix((weights.astype(table.dtype), (sample, rows)),
                                  shape=(int(sample.max(initial=-1)) + 1, len(table)))
        return np.asarray(picks @ table, dtype=np.float64)


class ModelEmbedding:
    """Any other embedding layer: the model's own (torch), on the unpadded tokens."""

    def __init__(self, model_dir: Path, raw: bool) -> None:
        from dimee.model.artifacts import load_model

        self.model, self.raw = load_model(model_dir, num_layers=0), raw

    def __call__(self, tokens: Tokens) -> np.ndarray:
        import torch

        ids, types, lengths = (torch.from_numpy(a) for a in tokens)
        return self.model.packed_routing_embedding(ids, types, lengths, raw=self.raw).numpy().astype(np.float64)


def rust_tokenizer(model_dir: Path, max_length: int) -> Tokenizer:
    """The model's tokenizer as the workers' `encode` applies it, minus the padding (longest-first truncation
    to max_length, as `truncation=True`)."""
    path = model_dir / "tokenizer.json"
    if path.exists():
        tokenizer = Tokenizer.from_file(str(path))
    else:  # a tokenizer saved without its fast form: let transformers convert it
        from dimee.model.artifacts import load_tokenizer

        tokenizer = Tokenizer.from_str(load_tokenizer(model_dir).backend_tokenizer.to_str())
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


class RoutingEmbedder:
    def __init__(self, model_dir: Path, raw: bool = False) -> None:
        spec = load_spec(model_dir)
        self.spec, self.raw = spec, raw
        self.tokenizer = rust_tokenizer(model_dir, spec.max_length)
        # without character offsets (unused here) where the tokenizers library offers it: a fifth faster
        self._encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        self.embedding: Embedding = FoldedEmbedding.load(model_dir, spec, raw) or ModelEmbedding(model_dir, raw)

    def embed(self, samples: Sequence[Sample]) -> np.ndarray:
        """(N, H) float64 routing embeddings of a batch of samples."""
        return self.embed_tokens(self.tokenise(samples))

    def tokenise(self, samples: Sequence[Sample]) -> Tokens:
        inputs = [s.text if s.text_pair is None else (s.text, s.text_pair) for s in samples]
        encodings = self._encode(inputs)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        ids = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int64, count=int(lengths.sum()))
        types = np.fromiter((t for e in encodings for t in e.type_ids), dtype=np.int64, count=len(ids))
        return Tokens(ids, types, lengths)

    def embed_tokens(self, tokens: Tokens) -> np.ndarray:
        return self.embedding(tokens)
