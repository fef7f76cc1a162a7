"""Exit layers, pools, reward, α*, centroids and routing on the hand-made case."""

import numpy as np
import pytest

from dimee.method import arithmetic
from dimee.method.calibration import Calibration
from dimee.method.tiers import CostModel, Tier, TierPlan
from tests.support import hand_case as hc


def test_exit_layers_and_pools():
    plan = TierPlan.default(hc.M, hc.N, 3)
    assert arithmetic.exit_layers(hc.PROBS, 0.8).tolist() == [1, 2, 3]
    assert arithmetic.exit_layers(hc.PROBS, 0.5).tolist() == [1, 1, 1]  # 1/C: everything leaves at layer 1
    assert arithmetic.exit_layers(hc.PROBS, 0.99).tolist() == [3, 3, 3]  # nobody passes: τ = L
    assert arithmetic.exit_layers(hc.PROBS, 0.8, cap=np.array([3, 1, 2])).tolist() == [1, 1, 2]
    assert arithmetic.true_pools(hc.PROBS, 0.8, plan).tolist() == [0, 1, 2]
    assert arithmetic.true_pools(hc.PROBS, 0.5, plan).tolist() == [0, 0, 0]


def test_reward_matches_hand_computation():
    plan = TierPlan.default(hc.M, hc.N, 3)
    cost = CostModel()
    # α = 0.8: s0 easy 0.90 − 0.3·0.1·1 = 0.87; s1 moderate 0.85 − 0.3·(0.2 + 0.05·2) = 0.76;
    # s2 hard 0.70 − 0.3·(0.5 + 0.5) = 0.40
    assert arithmetic.rewards(hc.PROBS, 0.8, plan, cost) == pytest.approx([0.87, 0.76, 0.40])
    # α = 1.0: every sample hard, conf_L − 0.3: 0.69, 0.60, 0.40
    assert arithmetic.rewards(hc.PROBS, 1.0, plan, cost) == pytest.approx([0.69, 0.60, 0.40])
    curve = [arithmetic.rewards(hc.PROBS, a, plan, cost).mean() for a in hc.GRID]
    assert curve == pytest.approx(hc.REWARD)


def test_calibration_alpha_pools_and_centroids():
    cal = hc.calibration()
    assert cal.alpha == pytest.approx(hc.ALPHA_STAR)
    assert cal.reward_curve == pytest.approx(hc.REWARD)
    assert cal.pool_sizes == [1, 1, 1]
    assert cal.centroids == [[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]]
    assert cal.full_model_accuracy == 1.0


def test_beta_moves_alpha():
    """A heavier cost weight makes the cheap, all-easy threshold win."""
    cal = hc.calibration(cost=CostModel(beta=2.0))
    assert cal.alpha == pytest.approx(0.5)
    assert cal.pool_sizes == [3, 0, 0]


def test_accuracy_budget_objective():
    # Routing by true pool: α = 0.5 → all easy, s2 wrong (acc 2/3, cost 0.1); α = 0.5556 → s2 moderate at
    # layer 2, right (acc 1.0, cost (0.1 + 0.1 + 0.3)/3); every larger α costs more.
    tight = hc.calibration(objective="accuracy-budget", max_drop=0.5)
    assert tight.alpha == pytest.approx(hc.GRID[1])
    assert tight.cost_curve[1] == pytest.approx(0.5 / 3)
    loose = hc.calibration(objective="accuracy-budget", max_drop=40)
    assert loose.alpha == pytest.approx(0.5)


def test_empty_pools_have_no_centroid_and_are_never_routed_to(tmp_path):
    cal = hc.calibration(cost=CostModel(beta=2.0))
    assert cal.centroids[1] is None and cal.centroids[2] is None
    cal.save(tmp_path / "calibration.json")
    loaded = Calibration.load(tmp_path / "calibration.json")
    assert loaded == cal
    far_away = np.array([[0.0, 400.0], [-50.0, 3.0]])
    for adaptive in (False, True):
        routed = arithmetic.route(far_away, loaded.centroid_arrays(), loaded.pool_sizes, "euclidean", adaptive)
        assert routed.tolist() == [0, 0]


def test_no_centroid_at_all_goes_to_the_cloud():
    assert arithmetic.nearest_pool(np.zeros(2), [None, None, None], "euclidean") == 2


def test_fixed_routing_picks_the_nearest_centroid():
    means = [np.array([0.0, 0.0]), np.array([2.0, 0.0]), np.array([0.0, 4.0])]
    points = np.array([[0.2, 0.1], [1.9, -0.3], [0.5, 3.0], [1.2, 0.0]])
    assert arithmetic.route(points, means, [1, 1, 1], "euclidean", adaptive=False).tolist() == [0, 1, 2, 1]
    assert arithmetic.nearest_pool(np.array([10.0, 0.1]), means, "cosine") == 1


def test_adaptive_routing_updates_the_running_mean():
    means = [np.array([0.0, 0.0]), np.array([10.0, 0.0]), np.array([0.0, 10.0])]
    counts = [1, 1, 1]
    # e1 = (4, 0) → pool 0 (dist 4 < 6); μ0 = (0,0) + ((4,0) − (0,0))/2 = (2, 0), N0 = 2.
    # e2 = (5.5, 0) → pool 0 now (dist 3.5 < 4.5), though it was nearer pool 1 before the update.
    routed = arithmetic.route(np.array([[4.0, 0.0], [5.5, 0.0]]), means, counts, "euclidean", adaptive=True)
    assert routed.tolist() == [0, 0]
    fixed = arithmetic.route(np.array([[4.0, 0.0], [5.5, 0.0]]), means, counts, "euclidean", adaptive=False)
    assert fixed.tolist() == [0, 1]
    assert means[0].tolist() == [0.0, 0.0] and counts == [1, 1, 1]  # the caller's centroids are untouched


def test_serve_costs():
    plan = TierPlan.default(hc.M, hc.N, 3)
    served = arithmetic.serve(hc.PROBS, np.array([0, 1, 2]), plan, 0.8, CostModel())
    assert served.exit_layer.tolist() == [1, 2, 3]
    assert served.cost == pytest.approx([0.1, 0.3, 1.0])
    assert served.pred.tolist() == [1, 1, 0]
    assert CostModel().breakdown(Tier.EDGE, 2) == pytest.approx(
        {"processing": 0.1, "offload": 0.2, "cloud": 0.0, "total": 0.3})


def test_plan_validation():
    with pytest.raises(ValueError):
        TierPlan.default(4, 4, 6)


def test_the_plan_alone_holds_the_caps(tmp_path):
    """m, n and L are read from the plan: the saved file says each cap once, and reads back the same."""
    import json

    cal = hc.calibration()
    assert (cal.m, cal.n, cal.num_layers) == (hc.M, hc.N, 3)
    cal.save(tmp_path / "calibration.json")
    written = json.loads((tmp_path / "calibration.json").read_text())
    assert not {"m", "n", "num_layers"} & written.keys()
    assert written["plan"] == [{"tier": "mobile", "cap": 1}, {"tier": "edge", "cap": 2}, {"tier": "cloud", "cap": 3}]
    assert Calibration.load(tmp_path / "calibration.json") == cal


def test_an_older_calibration_file_still_loads(tmp_path):
    """calibration.json written before the plan was the caps' one home also holds m, n and num_layers: it loads
    into the same plan; where those fields disagree with the plan it is refused, not read one way or the other."""
    import json

    from pydantic import ValidationError

    cal = hc.calibration()
    older = {**cal.model_dump(mode="json"), "m": hc.M, "n": hc.N, "num_layers": 3}
    (tmp_path / "calibration.json").write_text(json.dumps(older, indent=2))
    loaded = Calibration.load(tmp_path / "calibration.json")
    assert loaded == cal and loaded.plan == TierPlan.default(hc.M, hc.N, 3)
    (tmp_path / "calibration.json").write_text(json.dumps({**older, "n": 3, "num_layers": 4}))
    with pytest.raises(ValidationError, match="disagree with the plan"):
        Calibration.load(tmp_path / "calibration.json")
