"""The cost floors, the bootstrap interval and the tuned cascade, on the hand case (tests/support/hand_case.py) and
on random exits where the search's claims are checked against serving."""

from __future__ import annotations

import numpy as np
import pytest

from dimee.method.cascade_tuning import Recorded, tune_cascade
from dimee.method.escalation import serve_escalating, with_carry
from dimee.method.exits import ExitRecords
from dimee.method.routing_policy import POLICIES
from dimee.method.tiers import CostModel, TierPlan
from dimee.offline.evaluation import floors
from tests.support import hand_case as hc

# Hand case, default costs (λm 0.1, λe 0.05, o_e 0.2, o_c + κ 1.0), α* = 0.6111, m = 1, n = 2. The full model
# says 1, 1, 0. s0: mobile layer 1 says 1 (cost 0.1). s1: mobile answers at its cap, layer 1, with 1 (0.1).
# s2: mobile says 1 (wrong); the edge says 0 at its cap, layer 2: 0.2 + 2 × 0.05 = 0.3.


def test_agreement_floor_by_hand(hand_cal):
    floor = floors.agreement_floor(hc.records(), hand_cal)
    assert floor.cost.tolist() == pytest.approx([0.1, 0.1, 0.3])
    assert floor.tier.tolist() == [0, 0, 1] and floor.accuracy(hc.LABELS) == 1.0


def test_any_layer_floors_by_hand(hand_cal):
    agreement = floors.agreement_floor_any_layer(hc.records(), hand_cal)
    assert agreement.cost.tolist() == pytest.approx([0.1, 0.1, 0.3])
    # with s1 labelled 0, no layer is right about it: the correct floor answers it as cheaply as possible
    relabelled = ExitRecords(hc.PROBS, hc.EMBEDDINGS, np.array([1, 0, 0]))
    correct = floors.correct_floor_any_layer(relabelled, hand_cal)
    assert correct.cost.tolist() == pytest.approx([0.1, 0.1, 0.3])
    assert correct.pred.tolist() == [1, 1, 0]


def test_the_cloud_only_policy_is_the_full_model(hand_cal):
    """Defect: the deployed Cloud-only early-exited at α*; the study scored the full model."""
    thresholds = POLICIES["Cloud-only"].served_thresholds(hand_cal)
    journey = serve_escalating(hc.PROBS, np.full(3, 2), hand_cal, "off", thresholds)
    assert journey.exit_layer.tolist() == [3, 3, 3]
    assert journey.pred.tolist() == hc.PROBS[:, -1].argmax(-1).tolist()


def test_tuned_cascade_by_hand(hand_cal):
    """Within 0 points of the full model: s2 must reach the edge's layer 2, so the mobile must pass it up
    (exit threshold above 0.55) yet keep s1 (at most 0.6); cost 0.1 + 0.1 + (0.1 + 0.2 + 0.05)."""
    tuned = tune_cascade(Recorded.of(hc.PROBS, hc.LABELS), hand_cal.plan, hand_cal.cost_model, 0, 0.0)
    assert tuned.accuracy == 1.0 and tuned.cost == pytest.approx(0.55 / 3)
    assert 0.55 < tuned.thresholds.exit[0] <= 0.6


@pytest.mark.parametrize(("start", "per_kb"), [(0, 0.0), (1, 0.0), (0, 0.02)])
def test_the_search_scores_what_serving_does(hand_cal, start, per_kb):
    rng = np.random.default_rng(start)
    logits = rng.normal(size=(300, 6, 3)) * np.linspace(0.5, 3, 6)[None, :, None]
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = np.where(rng.random(300) < 0.8, probs[:, -1].argmax(-1), rng.integers(0, 3, 300))
    plan, cost = TierPlan.default(2, 4, 6), CostModel(o_hidden_per_kb=per_kb)
    cal = hand_cal.model_copy(update={"plan": plan, "m": 2, "n": 4, "num_layers": 6, "num_labels": 3,
                                      "cost_model": cost})
    hidden_kb = rng.integers(5, 60, 300) * 0.768  # tokens × 384 units × 2 bytes
    tuned = tune_cascade(Recorded.of(probs, labels, hidden_kb), plan, cost, start, max_drop=2.0)
    journey = with_carry(serve_escalating(probs, np.full(300, start), cal, "continue", tuned.thresholds), hidden_kb,
                         cal, "continue")
    assert (journey.pred == labels).mean() == pytest.approx(tuned.accuracy)
    assert journey.cost.mean() == pytest.approx(tuned.cost, rel=1e-5)
    assert tuned.accuracy >= (probs[:, -1].argmax(-1) == labels).mean() - 0.02 - 1e-9
    # nothing cheaper than the full cascade at α* passes the budget unnoticed
    plain = with_carry(serve_escalating(probs, np.full(300, start), cal, "continue"), hidden_kb, cal, "continue")
    if (plain.pred == labels).mean() >= (probs[:, -1].argmax(-1) == labels).mean() - 0.02:
        assert tuned.cost <= plain.cost.mean() + 1e-9


def test_bootstrap_interval():
    same = np.array([True, False] * 50)
    assert floors.paired_bootstrap([same], same.astype(float)) == [(0.0, 0.0)]
    better = same.copy()
    better[1::2][:10] = True  # 10 more right out of 100
    (low, high), = floors.paired_bootstrap([better], same.astype(float))
    assert 0.0 < low < 0.1 < high


def test_a_majority_class_exit_is_warned_about():
    """Defect: weak early exits saying the majority class with confidence ≥ α made the reward's α* look
    cheap and right, silently. 100 samples, 60 of class 0; layer 1 says class 0 at 0.9 for all of them."""
    from dimee.method.calibration import one_class_exits

    labels = np.array([0] * 60 + [1] * 40)
    probs = np.zeros((100, 3, 2))
    probs[:, 0] = [0.9, 0.1]
    probs[:, 1:, 0] = np.where(labels == 0, 0.95, 0.05)[:, None]
    probs[:, 1:, 1] = 1 - probs[:, 1:, 0]
    warnings = one_class_exits(probs, labels, alpha=0.8)
    assert len(warnings) == 1 and warnings[0].startswith("exit 1 answers 100% of the 100 samples")
    assert one_class_exits(probs, labels, alpha=0.92) == []  # at this α nobody leaves at layer 1


def test_the_deployed_default_follows_the_accuracy_budget_unless_told_reward(hand_cal):
    from dimee.offline.evaluation.routing_study import StudyOptions, _default

    rows = {"DIMEE-F": {"accuracy": 0.70, "cost": 0.2}, "Tuned-edge-cascade": {"accuracy": 0.995, "cost": 0.4},
            "Cloud-only": {"accuracy": 1.0, "cost": 1.0}}
    assert StudyOptions().objective == "accuracy-budget"
    assert _default(rows, hand_cal, StudyOptions())[0] == "Tuned-edge-cascade"
    assert _default(rows, hand_cal, StudyOptions(objective="reward"))[0] == "DIMEE-F"
