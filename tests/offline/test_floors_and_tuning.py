"""The cost floors, the bootstrap interval and the tuned cascade, on the hand case (tests/support/hand_case.py) and
on random exits where the search's claims are checked against serving."""

from __future__ import annotations

import numpy as np
import pytest

from dimee.method.cascade_tuning import Recorded, family, tune_cascade
from dimee.method.certification import Budget, loss_upper_bound
from dimee.method.escalation import serve_escalating, with_carry
from dimee.method.exits import ExitRecords
from dimee.method.routing_policy import POLICIES
from dimee.method.thresholds import TierThresholds
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


def test_three_samples_show_no_budget_so_the_tuned_cascade_sends_everything_to_the_cloud(hand_cal):
    """Before the guarantee, three samples tuned the mobile's threshold to 0.55 < t ≤ 0.6 (cost 0.55 / 3): lucky,
    not shown. Now nothing passes, no tier below the cloud answers early, and the full model answers all three:
    s0-s2 each run the mobile (0.1), the edge's layer 2 (0.2 + 0.05) and the cloud (1.0)."""
    tuned = tune_cascade(Recorded.of(hc.PROBS, hc.LABELS), hand_cal.plan, hand_cal.cost_model, 0, Budget(0.5))
    assert tuned.thresholds.exit == [None, None, None] and tuned.thresholds.keep == [None, None, None]
    assert tuned.accuracy == 1.0 and tuned.cost == pytest.approx(1.35)
    assert tuned.guarantee.certified and tuned.guarantee.loss_bound == 0.0  # the full model's answer, surely


@pytest.mark.parametrize(("start", "per_kb"), [(0, 0.0), (1, 0.0), (0, 0.02)])
def test_the_search_scores_what_serving_does(hand_cal, start, per_kb):
    rng = np.random.default_rng(start)
    logits = rng.normal(size=(300, 6, 3)) * np.linspace(0.5, 3, 6)[None, :, None]
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = np.where(rng.random(300) < 0.8, probs[:, -1].argmax(-1), rng.integers(0, 3, 300))
    plan, cost = TierPlan.default(2, 4, 6), CostModel(o_hidden_per_kb=per_kb)
    cal = hand_cal.model_copy(update={"plan": plan, "num_labels": 3, "cost_model": cost})  # the plan says m, n, L
    hidden_kb = rng.integers(5, 60, 300) * 0.768  # tokens × 384 units × 2 bytes
    tuned = tune_cascade(Recorded.of(probs, labels, hidden_kb), plan, cost, start, Budget(2.0))
    journey = with_carry(serve_escalating(probs, np.full(300, start), cal, "continue", tuned.thresholds), hidden_kb,
                         cal, "continue")
    assert (journey.pred == labels).mean() == pytest.approx(tuned.accuracy)
    assert journey.cost.mean() == pytest.approx(tuned.cost, rel=1e-5)
    full = probs[:, -1].argmax(-1) == labels
    lost = int((full & (journey.pred != labels)).sum())
    assert tuned.thresholds.exit[start] is not None  # 300 samples can show 2 points: something answers early
    assert tuned.guarantee.losses == lost and tuned.guarantee.loss_bound <= 0.02
    # the next setting of the family, one step cheaper, is over the budget: the search stopped there
    lower = max(v for v in family(3) if v < tuned.thresholds.exit[start])
    cheaper = tune_thresholds_at(plan, start, lower)
    next_lost = with_carry(serve_escalating(probs, np.full(300, start), cal, "continue", cheaper), hidden_kb, cal,
                           "continue")
    assert loss_upper_bound(int((full & (next_lost.pred != labels)).sum()), 300, Budget(2.0).risk) > 0.02


def tune_thresholds_at(plan: TierPlan, start: int, answer_at: float) -> TierThresholds:
    return TierThresholds(exit=[answer_at if start <= i < len(plan) - 1 else None for i in range(len(plan))],
                          keep=[None] * len(plan))


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


def test_the_deployed_default_is_the_cheapest_shown_within_the_budget_unless_told_reward(hand_cal):
    from dimee.method.certification import Guarantee
    from dimee.offline.evaluation.baselines import MethodResult
    from dimee.offline.evaluation.routing_study import StudyOptions, _default

    def row(name: str, cost: float) -> MethodResult:
        return MethodResult(name, hc.LABELS, np.zeros(3, int), np.full(3, cost))

    on_cal = [row("DIMEE-F", 0.2), row("Tuned-edge-cascade", 0.4), row("Cloud-only", 1.0), row("Oracle", 0.1)]
    shown = Guarantee.of(0, 900, Budget(0.5), certified=True)
    cal = hand_cal.model_copy(update={"cascade_guarantees": {"edge": shown}})
    assert StudyOptions().objective == "accuracy-budget"
    chosen = _default(on_cal, cal, StudyOptions())
    assert (chosen.name, chosen.guarantee) == ("Tuned-edge-cascade", shown)  # DIMEE-F is cheaper, but not shown
    # a tuned cascade that showed nothing sends everything to the cloud, dearer than Cloud-only itself
    on_cal[1] = row("Tuned-edge-cascade", 1.35)
    assert _default(on_cal, cal, StudyOptions()).name == "Cloud-only"
    assert _default(on_cal, cal, StudyOptions(objective="reward")).name == "DIMEE-F"


def test_the_drift_report_names_the_default_study_would_deploy(hand_cal):
    """Three calibration samples show nothing: the default a drift run reports is the full model."""
    from dimee.offline.experiments import shown_default

    assert shown_default(hc.records(), hand_cal) == "Cloud-only"
