"""Confidence signals and their agreement AUROC, on arrays small enough to work every number by hand."""

import math

import numpy as np
import pytest

from dimee.method import signals


@pytest.mark.parametrize(("scores", "positive", "expected"), [
    ([0.1, 0.2, 0.8, 0.9], [False, False, True, True], 1.0),  # separates perfectly
    ([0.9, 0.8, 0.2, 0.1], [False, False, True, True], 0.0),  # the other way round
    ([0.5, 0.5, 0.5, 0.5], [False, True, False, True], 0.5),  # all tied: each pair counts one half
    ([1, 2, 3, 4], [True, False, True, False], 0.25),  # of the 4 (pos, neg) pairs only 3 > 2 is ordered
    ([1, 1, 2], [True, False, True], 0.75),  # (1 vs 1) tie ½ + (2 vs 1) 1, over 2 pairs
])
def test_auroc_by_hand(scores, positive, expected):
    assert signals.auroc(np.array(scores), np.array(positive)) == pytest.approx(expected)


@pytest.mark.parametrize("positive", [[True, True, True], [False, False, False], []])
def test_auroc_is_nan_with_one_class(positive):
    assert math.isnan(signals.auroc(np.arange(len(positive), dtype=float), np.array(positive, dtype=bool)))


def test_patience_counts_consecutive_equal_predictions_up_to_each_exit():
    # predictions per exit: s0 0 0 1 1 1, s1 1 0 1 0 1, s2 2 2 2 2 2
    preds = np.array([[0, 0, 1, 1, 1], [1, 0, 1, 0, 1], [2, 2, 2, 2, 2]])
    probs = np.full((3, 5, 3), 0.1)
    np.put_along_axis(probs, preds[..., None], 0.8, axis=-1)
    assert signals.patience_count(probs).tolist() == [[1, 2, 1, 2, 3], [1, 1, 1, 1, 1], [1, 2, 3, 4, 5]]


def test_patience_orders_by_count_then_max_softmax():
    # One exit each, reached with counts 2, 2, 1 (the first two agree with the exit before).
    probs = np.array([[[0.2, 0.8], [0.45, 0.55]],
                      [[0.4, 0.6], [0.4, 0.6]],
                      [[0.8, 0.2], [0.0, 1.0]]])
    at_exit_2 = signals.patience(probs)[:, 1]
    # count 2 with max-softmax 0.6 > count 2 with 0.55 > count 1 even with max-softmax 1.0
    assert at_exit_2[1] > at_exit_2[0] > at_exit_2[2]


def test_margin_and_negative_entropy():
    probs = np.array([[[0.5, 0.3, 0.2], [1.0, 0.0, 0.0]]])
    assert signals.max_softmax(probs)[0].tolist() == [0.5, 1.0]
    assert signals.margin(probs)[0] == pytest.approx([0.2, 1.0])
    expected = 0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2)
    assert signals.negative_entropy(probs)[0] == pytest.approx([expected, 0.0])  # 0 log 0 = 0, not NaN


# Three samples, three exits, two classes; predictions s0 1 1 1, s1 1 0 1, s2 0 0 1.
CASE = np.array([
    [[0.2, 0.8], [0.4, 0.6], [0.1, 0.9]],
    [[0.3, 0.7], [0.9, 0.1], [0.2, 0.8]],
    [[0.7, 0.3], [0.55, 0.45], [0.4, 0.6]],
])


def test_agreement_auroc_per_exit():
    rows = signals.agreement_auroc(CASE)
    assert [r["layer"] for r in rows] == [1, 2]  # every exit but the last
    # Exit 1: s0 (0.8) and s1 (0.7) agree with the last layer, s2 (0.7) does not: 1 + ½ over 2 pairs. Every
    # patience count is 1 and, with two classes, margin and entropy order as max-softmax: all tie, and the
    # report names today's signal.
    assert rows[0]["agree"] == pytest.approx(2 / 3) and rows[0]["differ"] == 1
    assert rows[0]["auroc"] == pytest.approx({name: 0.75 for name in signals.SIGNALS})
    assert rows[0]["best"] == "max-softmax"
    # Exit 2: only s0 agrees (max-softmax 0.6, count 2); s1 (0.9, count 1) and s2 (0.55, count 2) differ.
    # Max-softmax puts s0 between them (½); patience puts s0 (2.30) over s2 (2.275) and s1 (1.45).
    assert rows[1]["agree"] == pytest.approx(1 / 3) and rows[1]["differ"] == 2
    assert rows[1]["auroc"] == pytest.approx({"max-softmax": 0.5, "margin": 0.5, "neg-entropy": 0.5,
                                              "patience": 1.0})
    assert rows[1]["best"] == "patience"


def test_best_signal_needs_to_beat_an_earlier_one_by_the_shown_precision():
    # Rounding alone (float32 probabilities) moves a tied signal in its last digits: not a better signal.
    assert signals.best_signal({"max-softmax": 0.6421, "margin": 0.6421004, "patience": 0.63}) == "max-softmax"
    assert signals.best_signal({"max-softmax": 0.57, "margin": 0.57, "patience": 0.582}) == "patience"
    assert signals.best_signal({"max-softmax": math.nan, "patience": math.nan}) is None


def test_agreement_auroc_where_every_sample_agrees():
    probs = np.array([[[0.2, 0.8], [0.1, 0.9]], [[0.4, 0.6], [0.3, 0.7]]])
    (row,) = signals.agreement_auroc(probs)
    assert row["differ"] == 0 and row["best"] is None
    assert all(math.isnan(v) for v in row["auroc"].values())
