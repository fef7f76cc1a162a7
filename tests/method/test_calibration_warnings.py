"""What `dimee calibrate` warns of beyond the recorded exits: an empty pool, and a calibration set too small to
show the accuracy budget at all."""

from __future__ import annotations

import pytest
from scipy.stats import beta

from dimee.method.calibration import empty_pools, too_few_for_the_budget
from dimee.method.certification import RISK
from dimee.method.tiers import TierPlan
from tests.support import hand_case


def test_a_zero_loss_bound_is_the_exact_clopper_pearson_bound_and_needs_598_samples_for_half_a_point():
    # the tuned cascades, which answer alike, are tested once at δ = 0.05: ln 0.05 / ln 0.995 = 597.6
    assert too_few_for_the_budget(598, 0.5) == [] and too_few_for_the_budget(5000, 0.5) == []
    (warning,) = too_few_for_the_budget(597, 0.5)
    assert warning.startswith("597 calibration samples are too few for a 0.5-point budget")
    assert warning.endswith("598 samples can show it")
    (small,) = too_few_for_the_budget(150, 0.5)
    exact = 100 * beta.ppf(1 - RISK, 1, 150)  # the one-sided upper bound after 0 losses in 150
    assert f"bounded to {exact:.2f} points at 95.0% confidence" in small


def test_a_looser_budget_needs_fewer_samples_and_none_is_asked_of_a_zero_budget():
    assert too_few_for_the_budget(119, 2.5) == []  # ln 0.05 / ln 0.975: 119 samples
    assert too_few_for_the_budget(118, 2.5) != []
    assert too_few_for_the_budget(10, 0.0) == []


def test_an_empty_pool_is_named_with_its_tier():
    plan = TierPlan.default(1, 2, 3)
    assert empty_pools(plan, [3, 2, 1], 0.8) == []
    (warning,) = empty_pools(plan, [3, 0, 2], 0.8)
    assert warning.startswith("no calibration sample falls in the edge pool at α = 0.800")


@pytest.mark.parametrize("max_drop", [0.5, 1.0])
def test_calibrating_three_samples_warns_that_they_cannot_show_the_budget(max_drop):
    cal = hand_case.calibration(max_drop=max_drop)
    assert sum("calibration samples are too few" in w for w in cal.warnings) == 1
    assert not any("pool" in w for w in cal.warnings)  # α* = 0.6111 puts one sample in each pool
