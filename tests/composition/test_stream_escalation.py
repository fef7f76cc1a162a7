"""Escalation and feedback in the stream (embedded broker and store) agree with the offline evaluator."""

from __future__ import annotations

import numpy as np
import pytest
from dimee.state.base import namespace
from dimee.state.memory import shared_store

from dimee.composition.pipeline import PipelineOptions, run_pipeline
from dimee.method import arithmetic
from dimee.method.escalation import serve_escalating
from dimee.method.routing_policy import get
from dimee.method.tiers import TIERS
from dimee.streaming.config import Settings
from tests.support.helpers import deployment, stream_records
from tests.support.stream_checks import offline_records


@pytest.mark.parametrize(("policy", "mode", "band"),
                         [("Cascade", "continue", 5e-3), ("Edge+escalation", "continue", 5e-3)])
def test_streamed_escalation_matches_the_offline_journey(workdir, cal, policy, mode, band):
    records = stream_records(160, seed=21)
    settings = Settings(broker=f"memory://{policy}", state=f"memory://{policy}", topic_prefix=policy)
    run = run_pipeline(records, deployment(workdir, cal, policy), settings, PipelineOptions(progress=False))
    assert sorted(run.predictions) == sorted(r["id"] for r in records)
    test = offline_records(records, workdir)
    start = 0 if policy == "Cascade" else 1
    journey = serve_escalating(test.probs, np.full(len(records), start), cal, mode)
    # fp16 hidden states move confidences by ~1e-3: leave out samples that close to the threshold
    stable = ~(np.abs(test.probs.max(-1) - cal.alpha) < band).any(1)
    assert stable.mean() > 0.6
    paths = journey.paths(cal.plan)
    escalated = 0
    for i, record in enumerate(records):
        if not stable[i]:
            continue
        p = run.predictions[record["id"]]
        assert [t.value for t in p.path] == paths[i]
        assert TIERS.index(p.tier) == journey.final[i] and p.exit_layer == journey.exit_layer[i]
        assert p.label_pred == journey.pred[i]
        assert p.cost.total == pytest.approx(journey.cost[i])
        assert p.layers_run == journey.layers_run[i]
        escalated += len(p.path) > 1
    assert escalated > 0


def test_recompute_pays_again_in_the_stream(workdir, cal):
    records = stream_records(60, seed=22)
    settings = Settings(broker="memory://recompute", state="memory://recompute", topic_prefix="recompute")
    policy = get("Cascade").model_copy(update={"escalation": "recompute"})
    run = run_pipeline(records, deployment(workdir, cal).with_policy(policy), settings, PipelineOptions(progress=False))
    test = offline_records(records, workdir)
    journey = serve_escalating(test.probs, np.zeros(len(records), dtype=int), cal, "recompute")
    on_tie = (np.abs(test.probs.max(-1) - cal.alpha) < 1e-4).any(1)
    for i, record in enumerate(records):
        if not on_tie[i]:
            p = run.predictions[record["id"]]
            assert p.cost.total == pytest.approx(journey.cost[i]) and p.layers_run == journey.layers_run[i]


def test_feedback_moves_the_observed_pools_centroids(workdir, cal):
    records = stream_records(120, seed=23)
    settings = Settings(broker="memory://fb", state="memory://fb", topic_prefix="fb")
    run = run_pipeline(records, deployment(workdir, cal, "Feedback-adaptive+esc"), settings,
                       PipelineOptions(progress=False))
    assert len(run.predictions) == len(records)
    snap = shared_store("memory://fb", namespace("fb", deployment(workdir, cal).state_id)).snapshot()
    test = offline_records(records, workdir)
    observed = np.bincount(arithmetic.true_pools(test.probs, cal.alpha, cal.plan), minlength=3)
    added = np.array(snap.counts) - np.array(cal.pool_sizes)
    assert added.sum() == len(records)  # every sample reported once, never twice
    assert np.abs(added - observed).sum() <= 4  # = offline observed pools, up to fp16 ties at the threshold


def test_a_priced_hidden_state_costs_the_same_streamed_and_offline(workdir, cal):
    """With a measured cost model pricing the hidden state a `continue` escalation carries, the stream and
    the evaluator charge the same per sample."""
    from dimee.method.escalation import with_carry

    priced = cal.model_copy(update={"cost_model": cal.cost_model.model_copy(update={"o_hidden_per_kb": 0.01})})
    records = stream_records(80, seed=24)
    settings = Settings(broker="memory://carry", state="memory://carry", topic_prefix="carry")
    run = run_pipeline(records, deployment(workdir, priced, "Cascade"), settings, PipelineOptions(progress=False))
    test = offline_records(records, workdir)
    journey = serve_escalating(test.probs, np.zeros(len(records), dtype=int), priced, "continue")
    charged = with_carry(journey, test.hidden_kb(), priced, "continue")
    stable = ~(np.abs(test.probs.max(-1) - priced.alpha) < 5e-3).any(1)
    escalated = 0
    for i, record in enumerate(records):
        if stable[i]:
            p = run.predictions[record["id"]]
            assert p.cost.total == pytest.approx(charged.cost[i])
            escalated += len(p.path) > 1
    assert escalated > 0 and (charged.cost > journey.cost).any()
