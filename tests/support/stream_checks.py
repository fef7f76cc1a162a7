"""Checks shared by the in-memory role tests and the Kafka + Redis integration tests."""

from __future__ import annotations

import numpy as np

from dimee.data.dataset import TextDataset
from dimee.method.calibration import Calibration
from dimee.method.exits import ExitRecords
from dimee.method.tiers import TIERS
from dimee.model.artifacts import load_model, load_tokenizer
from dimee.model.tokenize import token_counts
from dimee.offline.evaluation import baselines
from dimee.offline.training import record_exit_probabilities
from dimee.streaming.messages import Prediction


def offline_records(records: list[dict], workdir) -> ExitRecords:
    """What the offline evaluator records for these samples: every exit of the full model."""
    model, tokenizer = load_model(workdir / "model"), load_tokenizer(workdir / "model")
    data = TextDataset("s", [r["text"] for r in records], [r["label"] for r in records], ["0", "1"],
                       ids=[r["id"] for r in records])
    probs, embeddings = record_exit_probabilities(model, tokenizer, data)
    tokens = token_counts(tokenizer, data.texts, None, model.spec.max_length)
    return ExitRecords(probs, embeddings, np.array(data.labels), np.array(tokens))


def offline_dimee(records: list[dict], workdir, cal: Calibration, adaptive: bool = False):
    """The offline evaluator's DIMEE row for these samples, plus a mask of samples sitting on a float tie."""
    test = offline_records(records, workdir)
    probs, embeddings = test.probs, test.embeddings
    result = baselines.dimee(test, cal, adaptive)
    conf = probs.max(-1)
    on_tie = (np.abs(conf - cal.alpha) < 1e-4).any(1)
    means = [m for m in cal.centroid_arrays() if m is not None]
    dist = np.sort(np.stack([np.linalg.norm(embeddings - m, axis=1) for m in means], 1), 1)
    on_tie |= (dist[:, 1] - dist[:, 0]) < 1e-4
    return result, on_tie


def assert_matches_offline(predictions: dict[str, Prediction], records: list[dict], workdir, cal: Calibration) -> None:
    result, on_tie = offline_dimee(records, workdir, cal)
    assert on_tie.mean() < 0.05
    checked = 0
    for i, record in enumerate(records):
        if on_tie[i]:
            continue
        streamed = predictions[record["id"]]
        assert TIERS.index(streamed.tier) == result.tier[i], record["id"]
        assert streamed.label_pred == result.pred[i], record["id"]
        assert abs(streamed.cost.total - result.cost[i]) < 1e-9
        checked += 1
    assert checked > 0
