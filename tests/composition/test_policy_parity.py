"""Every named policy, streamed through the roles (embedded broker and store), serves each sample exactly as
the offline evaluator scores it: same start tier, same tier and exit layer, same prediction, same cost.

Samples sitting on a float tie are left out: a confidence within a hair of a served threshold (the escalated
hidden state travels as fp16), or two centroids at nearly the same distance. Feedback policies route on
feedback that arrives asynchronously in the stream, so for them the start tier is taken from the stream and
the serving from it is checked."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from dimee.common.workdir import Workdir
from dimee.composition.pipeline import PipelineOptions, run_pipeline
from dimee.data.dataset import Splits, TextDataset
from dimee.method.calibration import Calibration
from dimee.method.escalation import serve_escalating
from dimee.method.learned_router import LearnedRouter
from dimee.method.routing_features import FeatureExtractor, load_rarity
from dimee.method.routing_policy import POLICIES
from dimee.method.thresholds import TierThresholds
from dimee.method.tiers import TIERS
from dimee.model.artifacts import load_model, load_tokenizer
from dimee.offline.evaluation.policies import PolicyInputs, offline_policy
from dimee.offline.evaluation.routing_study import StudyOptions, run_study
from dimee.streaming.config import Settings
from dimee.streaming.deployment import Deployment
from tests.support.helpers import sentences, stream_records
from tests.support.stream_checks import offline_records


def _tiny_splits(count: int) -> TextDataset:
    texts = sentences(count, seed=100)  # the calibration sentences of tests.support.helpers.tiny_workdir
    return TextDataset("tiny", texts, [len(t) % 2 for t in texts], ["0", "1"])


@pytest.fixture(scope="module")
def studied(workdir, tmp_path_factory):
    """A copy of the tiny work folder after `run_study`: learned router, token rarity, tuned thresholds."""
    work = Workdir(tmp_path_factory.mktemp("studied") / "w")
    shutil.copytree(workdir, work.root)
    calibration = _tiny_splits(200)
    cal_records = [{"id": str(i), "text": t, "label": y} for i, (t, y) in
                   enumerate(zip(calibration.texts, calibration.labels, strict=True))]
    offline_records(cal_records, work.root).save(work.exits("calibration"))
    train = TextDataset("tiny", sentences(120, seed=300), [0, 1] * 60, ["0", "1"])
    test_texts = stream_records(80, seed=5)
    test = TextDataset("tiny", [r["text"] for r in test_texts], [r["label"] for r in test_texts], ["0", "1"])
    run_study(Splits(train, calibration, test), work, offline_records(test_texts, work.root),
              StudyOptions(frontier=False))
    return work


def _ties(probs: np.ndarray, cal: Calibration, thresholds: TierThresholds) -> np.ndarray:
    """Samples whose confidence at a layer some tier runs lies within a hair of that tier's thresholds: a
    hair of 1e-4 up to the mobile's cap (fp32 in both), 5e-3 above it (an escalated hidden state is fp16)."""
    conf, layer_no = probs.max(-1), np.arange(1, probs.shape[1] + 1)
    band = np.where(layer_no <= cal.plan[0][1], 1e-4, 5e-3)
    exit_conf, below = thresholds.arrays()
    near = np.zeros(len(conf), bool)
    for tier, (_, cap) in enumerate(cal.plan):
        for value in (exit_conf[tier], below[tier]):
            if np.isfinite(value):
                near |= ((np.abs(conf - value) < band) & (layer_no <= cap)).any(1)
    return near


def _centroid_ties(embeddings: np.ndarray, cal: Calibration) -> np.ndarray:
    means = [m for m in cal.centroid_arrays() if m is not None]
    dist = np.sort(np.stack([np.linalg.norm(embeddings - m, axis=1) for m in means], 1), 1)
    return (dist[:, 1] - dist[:, 0]) < 1e-3


@pytest.mark.parametrize("name", list(POLICIES))
def test_every_policy_streams_as_it_was_scored(studied, name):
    policy = POLICIES[name]
    cal = Calibration.load(studied.calibration)
    deployment = Deployment(studied, cal, policy)
    records = stream_records(90, seed=31)
    prefix = f"parity-{abs(hash(name)) % 10**8}"
    # one partition: the adaptive router moves centroids in arrival order, which the offline run replays
    settings = Settings(broker=f"memory://{prefix}", state=f"memory://{prefix}", topic_prefix=prefix, partitions=1)
    run = run_pipeline(records, deployment, settings, PipelineOptions(progress=False))
    assert sorted(run.predictions) == sorted(r["id"] for r in records)

    exits = offline_records(records, studied.root)
    model, tokenizer = load_model(studied.model, 0), load_tokenizer(studied.model)
    features = FeatureExtractor(model, tokenizer, load_rarity(studied.rarity)).extract([r["text"] for r in records])
    learned = LearnedRouter.load(studied.learned_router) if policy.router == "learned" else None
    offline = offline_policy(policy, learned)(PolicyInputs(exits, features), cal)
    thresholds = policy.served_thresholds(cal)
    unstable = _ties(exits.probs, cal, thresholds)
    if policy.router == "centroid":
        unstable |= _centroid_ties(exits.embeddings, cal)
    assert unstable.mean() < 0.4
    plan = cal.plan
    streamed_start = np.array([plan.index(run.predictions[r["id"]].path[0]) for r in records])
    if policy.feedback:  # serve from the start the stream chose
        journey = serve_escalating(exits.probs, streamed_start, cal, policy.escalation, thresholds)
        expected_tier, expected_layer = plan.tier_indices(journey.final), journey.exit_layer
        expected_pred, expected_cost = journey.pred, journey.cost
    else:
        offline_start = offline.routed_pool if offline.routed_pool is not None else np.full(len(records), plan.index(
            policy.router))
        assert (streamed_start == offline_start)[~unstable].all(), name
        expected_tier, expected_layer, expected_pred, expected_cost = (offline.tier, offline.exit_layer, offline.pred,
                                                                        offline.cost)
    for i, record in enumerate(records):
        if unstable[i]:
            continue
        p = run.predictions[record["id"]]
        assert (TIERS.index(p.tier), p.exit_layer, p.label_pred) == (expected_tier[i], expected_layer[i],
                                                                     expected_pred[i]), (name, record["id"])
        assert p.cost.total == pytest.approx(expected_cost[i]), (name, record["id"])
