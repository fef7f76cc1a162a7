"""Every baseline's prediction, tier and cost on the hand-made case (calibrated at α* = 0.6111)."""

import numpy as np
import pytest

from dimee.method.tiers import CostModel
from dimee.offline.evaluation import baselines
from dimee.offline.evaluation.report import build_report, render_markdown, write_report
from tests.support import hand_case as hc


def test_cloud_only(hand_cal):
    r = baselines.cloud_only(hc.records(), hand_cal)
    assert r.cost.tolist() == [1.0, 1.0, 1.0] and r.pred.tolist() == [1, 1, 0]
    assert r.tier_shares() == {"mobile": 0.0, "edge": 0.0, "cloud": 1.0}


def test_single_tiers(hand_cal):
    mobile = baselines.single_tier("Mobile-only", baselines.Tier.MOBILE, hc.records(), hand_cal)
    assert mobile.cost == pytest.approx([0.1, 0.1, 0.1]) and mobile.pred.tolist() == [1, 1, 1]
    edge = baselines.single_tier("Edge-only", baselines.Tier.EDGE, hc.records(), hand_cal)
    # s0 leaves at layer 1 (0.9 ≥ α*), s1 at 2, s2 at the cap 2: 0.2 + 0.05·layers
    assert edge.cost == pytest.approx([0.25, 0.3, 0.3]) and edge.pred.tolist() == [1, 1, 0]


def test_oracle_and_dimee_on_the_calibration_points(hand_cal):
    oracle = baselines.oracle(hc.records(), hand_cal)
    assert oracle.cost == pytest.approx([0.1, 0.3, 1.0])
    assert oracle.routed_pool.tolist() == [0, 1, 2]
    # Each test point is its own pool's centroid, so both routers agree with the oracle.
    for adaptive in (False, True):
        routed = baselines.dimee(hc.records(), hand_cal, adaptive)
        assert routed.routed_pool.tolist() == [0, 1, 2]
        assert routed.cost == pytest.approx(oracle.cost)
    assert baselines.confusion(oracle, hc.records(), hand_cal) == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_early_exit_baseline(hand_cal):
    # Most accurate α on calibration: 0.5556 (s2 leaves at layer 2 with the right class); cost λ_m·τ.
    r = baselines.early_exit(hc.records(), hc.records(), hand_cal)
    assert r.cost == pytest.approx([0.1, 0.1, 0.2]) and r.pred.tolist() == [1, 1, 0]
    assert (r.tier == 0).all()


def test_adaee(hand_cal):
    # UCB1 plays arms 0, 1, 2 first (α = 0.5, 0.556, 0.611): s0, s1 stay on the mobile (conf_1 ≥ α);
    # s2 (conf_1 = 0.55 < 0.611) is offloaded: λ_m·m + o_c + κ = 1.1, predicted at L.
    r = baselines.adaee(hc.records(), hand_cal)
    assert r.cost == pytest.approx([0.1, 0.1, 1.1]) and r.tier.tolist() == [0, 0, 2]
    assert r.pred.tolist() == [1, 1, 0]


def test_i_splitee(hand_cal):
    # Arms k = 1, 2. s0 at k=1 stays (cost 0.1, reward 0.87); s1 at k=2 stays (0.2, reward 0.79);
    # s2: UCB1 picks k=1 (higher mean, equal bonus), 0.55 < α*: offloaded, cost 0.1 + 1.0.
    r = baselines.i_splitee(hc.records(), hand_cal)
    assert r.cost == pytest.approx([0.1, 0.2, 1.1]) and r.tier.tolist() == [0, 0, 2]


def test_random_baselines_cost_what_their_tiers_cost(hand_cal):
    big = hc.records()
    reps = 300
    big.probs, big.labels = np.repeat(big.probs, reps, 0), np.repeat(big.labels, reps)
    big.embeddings = np.repeat(big.embeddings, reps, 0)
    edge_cost = {0: 0.25, 1: 0.3, 2: 0.3}
    for matched in (False, True):
        r = baselines.random_tiers(big, hand_cal, seed=0, matched=matched)
        sample = np.repeat([0, 1, 2], reps)
        expected = np.where(r.tier == 0, 0.1, np.where(r.tier == 2, 1.0, [edge_cost[s] for s in sample]))
        assert r.cost == pytest.approx(expected)
        shares = r.tier_shares()
        assert all(abs(s - 1 / 3) < 0.06 for s in shares.values())  # calibration pools are 1/1/1
    again = baselines.random_tiers(big, hand_cal, seed=0, matched=False)
    assert np.array_equal(again.tier, baselines.random_tiers(big, hand_cal, seed=0, matched=False).tier)


def test_report_rows_and_files(hand_cal, tmp_path):
    report = build_report(hc.records(), hc.records(), hand_cal)
    names = [row["name"] for row in report["methods"]]
    assert names == ["Cloud-only", "Mobile-only", "Edge-only", "Random", "Random-matched", "Early-Exit", "AdaEE",
                     "I-SplitEE", "DIMEE-F", "DIMEE-D", "Oracle", "Floor: agreement", "Floor: agreement, any layer",
                     "Floor: correct, any layer"]
    oracle = report["methods"][names.index("Oracle")]
    assert oracle["cost"] == pytest.approx(1.4 / 3)
    assert oracle["delta_cost"] == pytest.approx(1.4 / 3 - 1)
    assert report["methods"][0]["delta_cost"] == 0.0
    assert set(report["sweeps"]) == {"lambda_m", "lambda_e", "o_c"}
    # A dearer mobile layer can only push DIMEE's α* and routing towards fewer mobile samples.
    mobile_shares = [r["tier_shares"]["mobile"] for r in report["sweeps"]["lambda_m"]]
    assert mobile_shares[0] >= mobile_shares[-1]
    write_report(report, tmp_path)
    for name in ("report.md", "report.json", "accuracy_vs_cost.png", "cost_sweeps.png", "device_ablation.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "| DIMEE-D |" in render_markdown(report, "t")


def test_cost_model_changes_the_cloud_baseline():
    hand_cal = hc.calibration(cost=CostModel(kappa=1.5))
    assert baselines.cloud_only(hc.records(), hand_cal).cost.tolist() == [2.0, 2.0, 2.0]


def test_the_deployed_default_gets_its_own_row_with_its_calibration_bound(hand_cal):
    """Issue 29 item 4: `dimee evaluate` on another data set said nothing of the policy the work folder serves."""
    plain = {row["name"]: row for row in build_report(hc.records(), hc.records(), hand_cal)["methods"]}
    report = build_report(hc.records(), hc.records(), hand_cal, deployed={"name": "Tuned-edge-cascade"})
    names = [row["name"] for row in report["methods"]]
    assert names.index("Tuned-edge-cascade (deployed default)") == names.index("Floor: agreement") - 1
    row = report["methods"][names.index("Tuned-edge-cascade (deployed default)")]
    # The hand calibration's tuned thresholds never exit early: from the edge, every sample goes up to the cloud.
    assert row["tier_shares"]["cloud"] == 1.0 and row["cost"] > plain["Cloud-only"]["cost"]
    assert row["loss_bound"] == 0.0 and row["budget_shown"]
    assert "| Tuned-edge-cascade (deployed default) |" in render_markdown(report, "t")
    same = build_report(hc.records(), hc.records(), hand_cal, deployed={"name": "DIMEE-F"})["methods"]
    deployed = next(r for r in same if r["name"] == "DIMEE-F (deployed default)")
    assert deployed["cost"] == plain["DIMEE-F"]["cost"] and "loss_bound" not in deployed
