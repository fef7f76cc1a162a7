"""Batched early exit equals the one-sample loop; partitions hold and load only their own layers."""

import numpy as np
import pytest
import torch
from safetensors import safe_open

from dimee.common.workdir import Workdir
from dimee.model.artifacts import load_model, load_tokenizer
from dimee.model.early_exit import Resume
from dimee.model.tokenize import encode
from tests.support.helpers import sentences


def _one_at_a_time(model, tokenizer, texts, alpha, cap):
    preds, layers, confs = [], [], []
    for text in texts:
        out = model.early_exit(encode(tokenizer, [text]), alpha=alpha, cap=cap)
        preds.append(int(out.pred[0]))
        layers.append(int(out.exit_layer[0]))
        confs.append(float(out.confidence[0]))
    return np.array(preds), np.array(layers), np.array(confs)


def _near_threshold(model, tokenizer, texts, alpha, tol=1e-4):
    """Samples whose confidence at some layer sits within tol of alpha: float noise may flip them."""
    probs = model.exit_probabilities(**encode(tokenizer, texts)).max(-1).values
    return ((probs - alpha).abs() < tol).any(1).numpy()


@pytest.mark.parametrize(("alpha", "cap"), [(0.7, None), (0.9, None), (0.8, 3), (0.5, 2), (1.01, 4)])
def test_batched_early_exit_matches_one_sample_loop(tiny_dir, alpha, cap):
    model, tokenizer = load_model(tiny_dir), load_tokenizer(tiny_dir)
    texts = sentences(64, seed=1)
    batched = model.early_exit(encode(tokenizer, texts), alpha=alpha, cap=cap)
    preds, layers, confs = _one_at_a_time(model, tokenizer, texts, alpha, cap)
    stable = ~_near_threshold(model, tokenizer, texts, alpha)
    assert stable.sum() > 50
    assert np.array_equal(batched.pred.numpy()[stable], preds[stable])
    assert np.array_equal(batched.exit_layer.numpy()[stable], layers[stable])
    assert np.allclose(batched.confidence.numpy()[stable], confs[stable], atol=1e-5)
    if cap is not None:
        assert batched.exit_layer.max() <= cap


def test_threshold_spreads_exits_over_layers(tiny_dir):
    """Guard for the test above: the tiny model really exits at several different layers."""
    model, tokenizer = load_model(tiny_dir), load_tokenizer(tiny_dir)
    out = model.early_exit(encode(tokenizer, sentences(64, seed=1)), alpha=0.9)
    assert len(set(out.exit_layer.tolist())) >= 3


def test_early_exit_agrees_with_recorded_probabilities(tiny_dir):
    model, tokenizer = load_model(tiny_dir), load_tokenizer(tiny_dir)
    texts = sentences(32, seed=2)
    inputs = encode(tokenizer, texts)
    probs = model.exit_probabilities(**inputs)
    conf = probs.max(-1).values
    out = model.early_exit(inputs, alpha=0.85)
    for i in range(len(texts)):
        passing = (conf[i] >= 0.85).nonzero()
        expected = int(passing[0]) + 1 if len(passing) else model.num_layers
        assert int(out.exit_layer[i]) == expected
        assert int(out.pred[i]) == int(probs[i, expected - 1].argmax())


@pytest.mark.parametrize("k", [0, 1, 2, 4, 6])
def test_partition_holds_only_its_layers(tiny_dir, k):
    part = load_model(tiny_dir, num_layers=k)
    assert part.num_layers == k and len(part.heads) == k
    keys = part.state_dict().keys()
    assert not any(key.startswith(f"layers.{k}.") or key.startswith(f"heads.{k}.") for key in keys)
    with safe_open(str(tiny_dir / Workdir.WEIGHTS), framework="pt") as weights:
        stored = set(weights.keys())
    assert set(keys) <= stored
    assert len(stored - set(keys)) > 0 or k == 6


def test_partition_outputs_equal_the_full_models_first_exits(tiny_dir):
    full, part = load_model(tiny_dir), load_model(tiny_dir, num_layers=2)
    tokenizer = load_tokenizer(tiny_dir)
    inputs = encode(tokenizer, sentences(16, seed=3))
    assert torch.allclose(full.exit_probabilities(**inputs)[:, :2], part.exit_probabilities(**inputs), atol=1e-6)
    with pytest.raises(ValueError):
        part.early_exit(inputs, alpha=0.9, cap=3)


def test_routing_embedding_ignores_padding(tiny_dir):
    router = load_model(tiny_dir, num_layers=0)
    tokenizer = load_tokenizer(tiny_dir)
    texts = ["good movie", "a very long and boring movie with a dull plot and a slow story"]
    alone = router.routing_embedding(**encode(tokenizer, texts[:1]))
    padded = router.routing_embedding(**encode(tokenizer, texts))[:1]
    assert torch.allclose(alone, padded, atol=1e-6)
    raw = router.routing_embedding(**encode(tokenizer, texts[:1]), raw=True)
    ids = encode(tokenizer, texts[:1])["input_ids"][0]
    assert torch.allclose(raw[0], router.embeddings.word_embeddings.weight[ids].mean(0), atol=1e-6)


def test_continue_from_a_hidden_state_equals_running_through(tiny_dir):
    model, tokenizer = load_model(tiny_dir), load_tokenizer(tiny_dir)
    inputs = encode(tokenizer, sentences(8, seed=4))
    first = model.early_exit(inputs, alpha=2.0, cap=2, keep_hidden=True)  # alpha > 1: nobody exits early
    resumed = model.early_exit(inputs, alpha=0.8, resume=Resume(2, first.hidden))
    direct = model.early_exit(inputs, alpha=0.8)
    late = direct.exit_layer > 2
    assert torch.equal(resumed.pred[late], direct.pred[late])
    assert torch.equal(resumed.exit_layer[late], direct.exit_layer[late])


def test_a_sentence_pair_does_not_change_its_batch_mates_tokens(tiny_dir):
    tokenizer = load_tokenizer(tiny_dir)
    mixed = encode(tokenizer, ["good movie", "bad plot"], [None, "fun story"])
    alone = encode(tokenizer, ["good movie"])
    width = alone["input_ids"].shape[1]
    assert mixed["input_ids"][0, :width].tolist() == alone["input_ids"][0].tolist()
    assert mixed["attention_mask"][0].sum() == alone["attention_mask"][0].sum()  # no empty second segment
    pair = encode(tokenizer, ["bad plot"], ["fun story"])
    assert mixed["input_ids"][1, : pair["input_ids"].shape[1]].tolist() == pair["input_ids"][0].tolist()


def test_a_loaded_model_is_the_saved_model(tiny_dir):
    """Loading skips the random init (every weight comes from the file): every parameter and buffer, and so
    every output, is the saved model's."""
    from tests.support.helpers import tiny_model

    saved, loaded = tiny_model(6, seed=0).eval(), load_model(tiny_dir)
    expected = {**dict(saved.named_parameters()), **dict(saved.named_buffers())}
    got = {**dict(loaded.named_parameters()), **dict(loaded.named_buffers())}
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name
    inputs = encode(load_tokenizer(tiny_dir), sentences(16, seed=3))
    torch.testing.assert_close(loaded.exit_probabilities(**inputs), saved.exit_probabilities(**inputs))
