"""The router's fast path computes the same routing embedding as the model: the Rust tokenizer gives the
workers' tokens, and the folded embedding (numpy, no torch) equals the embedding layer's output averaged
over real tokens, as does the model's own unpadded path that other layers fall back to."""

from __future__ import annotations

import numpy as np
import pytest
from dimee.routers.embedding import FoldedEmbedding, ModelEmbedding, RoutingEmbedder

from dimee.model.artifacts import load_model, load_tokenizer
from dimee.model.tokenize import encode
from dimee.streaming.messages import Sample
from tests.support.helpers import modules_imported_by, sentences


def _samples() -> list[Sample]:
    texts = sentences(40, seed=3)
    out = [Sample(id=f"s{i}", text=t) for i, t in enumerate(texts)]
    out.append(Sample(id="long", text=" ".join(texts * 5)))  # beyond max_length: truncated alike
    out.append(Sample(id="unknown", text="Zyzzyva ÉCLAIR naïve!"))  # unknown words, accents, punctuation
    out += [Sample(id=f"p{i}", text=texts[i], text_pair=texts[-i - 1] * 3) for i in range(5)]  # pairs, mixed
    return out


def _reference(model_dir, samples: list[Sample], raw: bool) -> np.ndarray:
    """The model's routing embedding of each sample alone, as the offline evaluator computes it."""
    model, tokenizer = load_model(model_dir, 0), load_tokenizer(model_dir)
    rows = []
    for s in samples:
        inputs = encode(tokenizer, [s.text], None if s.text_pair is None else [s.text_pair], model.spec.max_length)
        rows.append(model.routing_embedding(**inputs, raw=raw).numpy()[0])
    return np.stack(rows).astype(np.float64)


def test_the_rust_tokens_are_the_workers_tokens(tiny_dir):
    embedder, tokenizer = RoutingEmbedder(tiny_dir), load_tokenizer(tiny_dir)
    samples = _samples()
    tokens = embedder.tokenise(samples)
    ids = np.split(tokens.ids, np.cumsum(tokens.lengths)[:-1])
    for s, got in zip(samples, ids, strict=True):
        want = encode(tokenizer, [s.text], None if s.text_pair is None else [s.text_pair],
                      embedder.spec.max_length)["input_ids"][0]
        assert got.tolist() == want.tolist(), s.id


@pytest.mark.parametrize("raw", [False, True])
def test_the_fast_routing_embedding_equals_the_models(tiny_dir, raw):
    embedder = RoutingEmbedder(tiny_dir, raw=raw)
    assert isinstance(embedder.embedding, FoldedEmbedding)  # the tiny model is BERT-like
    samples = _samples()
    got = embedder.embed(samples)
    assert got.dtype == np.float64 and got.shape == (len(samples), embedder.spec.hidden_size)
    np.testing.assert_allclose(got, _reference(tiny_dir, samples, raw), rtol=1e-4, atol=1e-5)
    # the model's own unpadded path, which any other kind of embedding layer falls back to
    fallback = ModelEmbedding(tiny_dir, raw)(embedder.tokenise(samples))
    np.testing.assert_allclose(fallback, _reference(tiny_dir, samples, raw), rtol=1e-4, atol=1e-5)


def test_a_router_imports_neither_torch_nor_transformers(workdir):
    """The router's start-up and memory: its embedding path needs only numpy, scipy and tokenizers; not even
    scipy.stats (~0.6 s), which the budget's bounds load only when they compute one."""
    code = ("from pathlib import Path; from dimee.routers.router import Router; "
            "from dimee.routers.embedding import RoutingEmbedder; from dimee.composition import roles; "
            f"RoutingEmbedder(Path({str(workdir / 'model')!r})).embed([])")
    assert modules_imported_by(code, ("torch", "transformers", "sklearn", "scipy.stats")) == []
