"""Escalation, the learned router and feedback adaptation, on hand-made cases."""

import numpy as np
import pytest

from dimee.method import arithmetic, learned_router
from dimee.method.escalation import serve_escalating
from dimee.offline.evaluation.policies import PolicyInputs, policy_table
from tests.support import hand_case as hc


def test_cascade_with_continue(hand_cal):
    j = serve_escalating(hc.PROBS, np.zeros(3, dtype=int), hand_cal, "continue")
    # s0 leaves the mobile at layer 1 (0.1); s1 fails there (0.6 < α), continues on the edge at layer 2:
    # 0.1 + o_e 0.2 + λ_e·1; s2 fails on both, continues in the cloud at layer 3: 0.1 + 0.25 + o_c + κ.
    assert j.cost == pytest.approx([0.1, 0.35, 1.35])
    assert j.exit_layer.tolist() == [1, 2, 3] and j.hops.tolist() == [1, 2, 3]
    assert j.paths(hand_cal.plan) == [["mobile"], ["mobile", "edge"], ["mobile", "edge", "cloud"]]
    assert j.pred.tolist() == [1, 1, 0] and j.layers_run.tolist() == [1, 2, 3]


def test_recompute_pays_for_the_layers_again(hand_cal):
    j = serve_escalating(hc.PROBS, np.zeros(3, dtype=int), hand_cal, "recompute")
    # the edge runs layers 1-2 again (0.2 + 0.05·2), the cloud layers 1-3 (1.0 + 0)
    assert j.cost == pytest.approx([0.1, 0.4, 1.4])
    assert j.layers_run.tolist() == [1, 3, 6]


def test_off_answers_at_the_cap_like_the_paper(hand_cal):
    j = serve_escalating(hc.PROBS, np.zeros(3, dtype=int), hand_cal, "off")
    plan, alpha, costs = hand_cal.plan, hand_cal.alpha, hand_cal.cost_model
    served = arithmetic.serve(hc.PROBS, np.zeros(3, dtype=int), plan, alpha, costs)
    assert j.cost == pytest.approx(served.cost) and j.pred.tolist() == served.pred.tolist() == [1, 1, 1]
    assert j.hops.tolist() == [1, 1, 1]


def test_no_escalation_beyond_the_cloud(hand_cal):
    j = serve_escalating(hc.PROBS, np.full(3, 2), hand_cal.model_copy(update={"alpha": 0.999}), "continue")
    assert j.final.tolist() == [2, 2, 2] and j.exit_layer.tolist() == [3, 3, 3]
    assert j.cost == pytest.approx([1.0, 1.0, 1.0])


def test_reward_matrix_and_cost_aware_decision(hand_cal):
    matrix = learned_router.reward_matrix(hc.PROBS, hand_cal, "continue")
    # rows: start tier; columns: true pool (s0 easy, s1 moderate, s2 hard); conf_exit − 0.3·journey cost
    assert matrix == pytest.approx(np.array([[0.87, 0.745, 0.295], [0.825, 0.76, 0.31], [0.6, 0.55, 0.4]]))
    router = learned_router.LearnedRouter(feature_names=["x"], mean=[0.0], scale=[1.0], coef=[[0.0]] * 3,
                                          intercept=[0.0] * 3, classes=[0, 1, 2], num_pools=3, C=1.0,
                                          cv_log_loss={}, reward_matrix=matrix.tolist(), escalation="continue",
                                          seed=0)
    assert router.decide(np.eye(3)).tolist() == [0, 1, 2]
    # p = (0.2, 0.5, 0.3): mobile 0.635, edge 0.638, cloud 0.515 → the edge
    assert router.decide(np.array([[0.2, 0.5, 0.3]])).tolist() == [1]
    # p = (0.4, 0.3, 0.3): mobile 0.660 beats the edge's 0.651
    assert router.decide(np.array([[0.4, 0.3, 0.3]])).tolist() == [0]


def _separable(n=300, seed=0):
    rng = np.random.default_rng(seed)
    pools = rng.integers(0, 3, n)
    features = rng.normal(size=(n, 4)) + np.eye(3, 4)[pools] * 3
    probs = np.repeat(hc.PROBS, n // 3 + 1, 0)[:n]
    return features, pools, probs


def test_learned_router_is_reproducible_and_round_trips(tmp_path, hand_cal):
    features, pools, probs = _separable()
    names = ["a", "b", "c", "d"]
    training = learned_router.TrainingSet(features, names, pools, probs)
    first, oof = learned_router.fit(training, hand_cal, "continue", seed=3)
    second, oof2 = learned_router.fit(training, hand_cal, "continue", seed=3)
    assert first == second and np.array_equal(oof, oof2)
    assert (oof.argmax(1) == pools).mean() > 0.9  # out-of-fold, on separable data
    first.save(tmp_path / "router.json")
    loaded = learned_router.LearnedRouter.load(tmp_path / "router.json")
    assert np.allclose(loaded.predict_proba(features), first.predict_proba(features))
    assert (loaded.predict_proba(features).argmax(1) == pools).mean() > 0.9
    _, other_oof = learned_router.fit(training, hand_cal, "continue", seed=4)
    assert not np.array_equal(oof, other_oof)  # another seed, other folds


def test_feedback_moves_the_observed_pools_centroid():
    means = [np.array([0.0, 0.0]), np.array([10.0, 0.0]), None]
    # The sample is routed to pool 0 (nearest) but observed to be hard (pool 2, which was empty).
    start = arithmetic.Centroids(means, [1, 1, 0], "euclidean")
    samples = np.array([[1.0, 0.0], [1.0, 0.1]])
    routed = arithmetic.route_with_feedback(samples, start, observed=np.array([2, 2]))
    assert routed.tolist() == [0, 2]  # after feedback the hard centroid sits on the first sample
    samples = np.array([[4.0, 0.0], [0.2, 0.0]])
    ema = arithmetic.route_with_feedback(samples, start, observed=np.array([0, 0]), gamma=0.5)
    assert ema.tolist() == [0, 0]
    assert means[0].tolist() == [0.0, 0.0]  # caller's centroids untouched


def test_policy_rows_on_the_hand_case(hand_cal):
    table = policy_table(None)
    data = PolicyInputs(hc.records())
    cascade = table["Cascade"](data, hand_cal)
    assert cascade.cost == pytest.approx([0.1, 0.35, 1.35]) and cascade.tier.tolist() == [0, 1, 2]
    edge = table["Edge+escalation"](data, hand_cal)
    assert edge.cost == pytest.approx([0.25, 0.3, 1.3])
    oracle = table["Oracle+esc"](data, hand_cal)
    assert oracle.cost == pytest.approx([0.1, 0.3, 1.0])


def test_only_tuned_cascades_and_the_full_model_carry_a_guarantee(hand_cal):
    from dimee.method.routing_policy import POLICIES

    assert POLICIES["Cloud-only"].guarantee(hand_cal).loss_bound == 0.0
    assert POLICIES["Tuned-edge-cascade"].guarantee(hand_cal) == hand_cal.cascade_guarantees["edge"]
    assert POLICIES["DIMEE-F"].guarantee(hand_cal) is None and POLICIES["Edge+escalation"].guarantee(hand_cal) is None


def test_policy_resolution(tmp_path):
    from dimee.common.errors import DimeeError
    from dimee.method.routing_policy import POLICIES, resolve, save_default

    assert resolve(tmp_path).name == "DIMEE-F"  # nothing measured yet: the paper's router
    save_default(tmp_path, "Edge+escalation", "cheapest within budget")
    chosen = resolve(tmp_path)
    assert (chosen.name, chosen.router, chosen.escalation) == ("Edge+escalation", "edge", "continue")
    assert resolve(tmp_path, "DIMEE-D").adaptive  # the paper stays one flag away
    with pytest.raises(DimeeError, match="unknown policy"):
        resolve(tmp_path, "Oracle")
    assert {p.router for p in POLICIES.values()} <= {"centroid", "learned", "mobile", "edge", "cloud"}
