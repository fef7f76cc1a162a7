"""The budget's guarantee: exact bounds, the fixed-sequence test, and — by simulation on a population whose true
losses are known — that small calibration sets get conservative settings, not lucky ones."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta

from dimee.method.cascade_tuning import Recorded, _serve, family, tune_cascade
from dimee.method.certification import RISK, Budget, Guarantee, fixed_sequence, loss_upper_bound, samples_to_show
from dimee.method.tiers import CostModel, TierPlan


def test_the_bound_is_exact_clopper_pearson():
    assert loss_upper_bound(3, 200, 0.05) == pytest.approx(beta.ppf(0.95, 4, 197))
    assert loss_upper_bound(0, 100, 0.05) == pytest.approx(1 - 0.05 ** (1 / 100))  # the closed form at 0 losses
    assert loss_upper_bound(5, 5, 0.05) == 1.0 and loss_upper_bound(0, 0, 0.05) == 1.0


def test_samples_to_show_is_the_first_size_whose_zero_loss_bound_fits():
    needed = samples_to_show(0.005, 0.025)
    assert loss_upper_bound(0, needed, 0.025) <= 0.005 < loss_upper_bound(0, needed - 1, 0.025)


def test_the_test_stops_at_the_first_failure_even_when_a_later_setting_would_pass():
    budget = Budget(1.0, risk=0.05)
    assert fixed_sequence([0, 1, 40, 0], 1000, budget) == 1
    assert fixed_sequence([40, 0], 1000, budget) is None
    assert fixed_sequence([0, 0, 0], 1000, budget) == 2


def test_a_guarantee_says_what_it_shows():
    shown = Guarantee.of(2, 1585, Budget(0.5), certified=True)
    assert shown.describe() == ("loss against the full model ≤ 0.40 pt at 95.0% confidence (2 of 1585 calibration "
                                "samples lost); 0.5-pt budget shown")
    assert Guarantee.of(7, 10, Budget(0.5), certified=True, exact=True).loss_bound == 0.0


# A population of two-class samples on a 3-layer model (mobile 1, edge 2, cloud 3): the full model is right on
# 85%; an early exit says what the full model says with probability equal to its confidence, so answering at
# confidence λ loses about (1 - λ) of the samples sure enough, and the cheap settings are the risky ones.
PLAN, COST = TierPlan.default(1, 2, 3), CostModel()


def population(size: int, rng: np.random.Generator) -> Recorded:
    labels = rng.integers(0, 2, size)
    full = np.where(rng.random(size) < 0.85, labels, 1 - labels)
    probs = np.empty((size, 3, 2))
    for layer in range(2):
        conf = rng.uniform(0.5, 1.0, size)
        said = np.where(rng.random(size) < conf, full, 1 - full)
        probs[:, layer, 1] = np.where(said == 1, conf, 1 - conf)
    probs[:, 2, 1] = np.where(full == 1, 0.9, 0.1)
    probs[..., 0] = 1 - probs[..., 1]
    return Recorded.of(probs, labels)


def cut(data: Recorded, rows: np.ndarray) -> Recorded:
    return Recorded(data.conf[rows], data.correct[rows], len(rows), data.num_labels, data.agree[rows])


def true_drop(truth: Recorded, answer_at: float | None) -> float:
    served = _serve(truth, PLAN, COST, 1, answer_at)
    return float(truth.correct[:, -1].mean() - served.correct.mean())


def point_estimate_choice(data: Recorded, points: float) -> float | None:
    """The rule before the guarantee: the cheapest setting whose calibration accuracy is within the budget."""
    full = data.correct[:, -1].mean()
    fits = [lam for lam in family(data.num_labels) if full - _serve(data, PLAN, COST, 1, lam).correct.mean()
            <= points / 100]
    return min(fits, default=None)


def test_on_small_calibration_sets_the_shown_setting_misses_the_budget_in_at_most_delta_of_draws():
    rng = np.random.default_rng(7)
    truth = population(200_000, rng)
    drops = {lam: true_drop(truth, lam) for lam in family(2)}
    draws, size, points = 200, 400, 2.0
    missed_shown = missed_point = 0
    for _ in range(draws):
        sample = cut(truth, rng.choice(len(truth.conf), size, replace=False))
        shown = tune_cascade(sample, PLAN, COST, 1, Budget(points)).thresholds.exit[1]
        missed_shown += shown is not None and drops[shown] > points / 100
        lucky = point_estimate_choice(sample, points)
        missed_point += lucky is not None and drops[lucky] > points / 100
    # the cascades are tested once at δ = 5%; the point estimate sits on the budget's edge and misses often
    assert missed_shown / draws <= RISK
    assert missed_point / draws >= 0.25


def test_the_two_sided_interval_is_exact_clopper_pearson():
    from dimee.method.certification import rate_interval

    low, high = rate_interval(3, 40)
    assert (low, high) == pytest.approx((beta.ppf(0.025, 3, 38), beta.ppf(0.975, 4, 37)))
    assert rate_interval(0, 40)[0] == 0.0 and rate_interval(40, 40)[1] == 1.0 and rate_interval(0, 0) == (0.0, 1.0)


def test_the_two_tuned_cascades_answer_every_sample_alike_at_every_threshold():
    """Why they are one family, tested once at δ (certification.FAMILIES): from the mobile or from the edge, a
    sample is answered at the first exit up to the edge's cap whose confidence reaches λ, else by the cloud."""
    plan = TierPlan.default(2, 4, 6)
    rng = np.random.default_rng(3)
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=(500, 6))
    data = Recorded.of(probs, rng.integers(0, 3, 500))
    for answer_at in [*family(3), None]:
        mobile, edge = (_serve(data, plan, COST, start, answer_at) for start in (0, 1))
        assert np.array_equal(mobile.correct, edge.correct) and np.array_equal(mobile.agrees, edge.agrees)
        assert np.array_equal(mobile.below, edge.below)
