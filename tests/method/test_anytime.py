"""The anytime-valid bets (dimee.method.anytime): a setting over the budget is shown within it in at most δ of
streams however long one watches; one well within it is shown; the fixed sequence stops at the first setting
over the budget."""

from __future__ import annotations

import numpy as np

from dimee.method.anytime import Bets


def _ever_certified(rate: float, streams: int, length: int, budget: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    bets = Bets(streams, budget, risk=0.05)  # one bet per independent stream, all at the same rate
    for _ in range(length):
        bets.observe(rng.random(streams) < rate)
    return float(bets.reached.mean())


def test_a_setting_at_the_budget_is_shown_within_it_in_at_most_delta_of_streams_watched_all_along():
    # At the budget itself (the hardest null) 400 streams of 6,000 losses each, looked at after every one.
    assert _ever_certified(0.005, streams=400, length=6000, budget=0.005, seed=1) <= 0.05


def test_a_setting_well_within_the_budget_is_shown():
    assert _ever_certified(0.0005, streams=50, length=3000, budget=0.005, seed=2) >= 0.9


def test_the_fixed_sequence_certifies_the_safe_prefix_only():
    rng = np.random.default_rng(3)
    rates = np.array([0.0, 0.001, 0.002, 0.03, 0.0])  # the fourth is over the budget: the fifth is never reached
    bets = Bets(len(rates), budget=0.01, risk=0.05)
    for _ in range(5000):
        bets.observe(rng.random(len(rates)) < rates)
    assert bets.certified() == 3 and bets.reached[4]


def test_the_reverse_bet_flags_a_setting_over_the_budget():
    rng = np.random.default_rng(4)
    watch = Bets(2, budget=0.005, risk=0.05, below=False)
    for _ in range(3000):
        watch.observe(rng.random(2) < np.array([0.03, 0.001]))
    assert watch.reached.tolist() == [True, False]

