"""The router's fast path computes the same routing embedding as the model: the Rust tokenizer gives the
workers' tokens, and the folded embedding equals the embedding layer's output averaged over real tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dimee.messages import Sample
from dimee.model.tokenize import encode
from routers.embedding import RoutingEmbedder
from tests.helpers import sentences


def _samples() -> list[Sample]:
    texts = sentences(40, seed=3)
    out = [Sample(id=f"s{i}", text=t) for i, t in enumerate(texts)]
    out.append(Sample(id="long", text=" ".join(texts * 5)))  # beyond max_length: truncated alike
    out.append(Sample(id="unknown", text="Zyzzyva ÉCLAIR naïve!"))  # unknown words, accents, punctuation
    out += [Sample(id=f"p{i}", text=texts[i], text_pair=texts[-i - 1] * 3) for i in range(5)]  # pairs, mixed
    return out


def _reference(embedder: RoutingEmbedder, samples: list[Sample], raw: bool) -> np.ndarray:
    """The model's routing embedding of each sample alone, as the offline evaluator computes it."""
    rows = []
    for s in samples:
        inputs = encode(embedder.tokenizer, [s.text], None if s.text_pair is None else [s.text_pair],
                        embedder.model.spec.max_length)
        rows.append(embedder.model.routing_embedding(**inputs, raw=raw).numpy()[0])
    return np.stack(rows).astype(np.float64)


def test_the_rust_tokens_are_the_workers_tokens(tiny_dir):
    embedder = RoutingEmbedder(tiny_dir)
    samples = _samples()
    tokens = embedder.tokenise(samples)
    lengths = tokens.lengths.tolist()
    ids = torch.split(tokens.ids, lengths)
    for s, got in zip(samples, ids, strict=True):
        want = encode(embedder.tokenizer, [s.text], None if s.text_pair is None else [s.text_pair],
                      embedder.model.spec.max_length)["input_ids"][0]
        assert got.tolist() == want.tolist(), s.id


@pytest.mark.parametrize("raw", [False, True])
def test_the_fast_routing_embedding_equals_the_models(tiny_dir, raw):
    embedder = RoutingEmbedder(tiny_dir, raw=raw)
    assert (embedder.folded is not None) is (not raw)
    samples = _samples()
    got = embedder.embed(samples)
    assert got.dtype == np.float64 and got.shape == (len(samples), embedder.model.spec.hidden_size)
    np.testing.assert_allclose(got, _reference(embedder, samples, raw), rtol=1e-4, atol=1e-5)
    # the unpadded path of the model itself, which the folded one replaces where the layer is BERT-like
    tokens = embedder.tokenise(samples)
    packed = embedder.model.packed_routing_embedding(*tokens, raw=raw).numpy()
    np.testing.assert_allclose(packed, _reference(embedder, samples, raw), rtol=1e-4, atol=1e-5)
