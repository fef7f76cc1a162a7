"""The live threshold controller's update (adaptive-conformal): each audit moves the offset by η·(disagreed − target),
never below the calibrated thresholds nor past the ceiling, and a long stream's disagreement share settles at the
target."""

from __future__ import annotations

import numpy as np
import pytest

from dimee.method.control import (
    CEILING,
    Control,
    ControlRule,
    ControlState,
    next_offset,
    offset_thresholds,
    replay,
    step,
)


def test_a_disagreement_tightens_and_an_agreement_loosens_by_the_rule():
    rule = ControlRule(target=0.1, step=0.05)
    assert next_offset(0.2, True, rule) == pytest.approx(0.2 + 0.05 * 0.9)
    assert next_offset(0.2, False, rule) == pytest.approx(0.2 - 0.05 * 0.1)
    assert next_offset(0.0, False, rule) == 0.0  # never looser than the certified thresholds
    assert next_offset(CEILING, True, rule) == CEILING
    assert offset_thresholds(0.875, 0.875, 0.05) == pytest.approx((0.925, 0.925))


def test_replay_counts_versions_and_resumes():
    rule = ControlRule(target=0.2, step=0.1)
    steps = replay([True, True, False], rule)
    assert [c.version for c in steps] == [1, 2, 3]
    assert [c.offset for c in steps] == pytest.approx([0.08, 0.16, 0.14])
    (resumed,) = replay([False], rule, steps[-1])
    assert resumed.version == 4 and resumed.offset == pytest.approx(0.12)


def test_over_a_long_stream_the_disagreement_share_settles_at_the_target():
    """A toy stream: answering at offset θ disagrees with probability 0.3 − θ (tighter thresholds, fewer
    disagreements). The controller should drive the realised share to the 0.1 target."""
    rng = np.random.default_rng(3)
    rule, control, outcomes = ControlRule(target=0.1, step=0.01), Control(), []
    for _ in range(20_000):
        disagreed = bool(rng.random() < max(0.0, 0.3 - control.offset))
        outcomes.append(disagreed)
        (control,) = replay([disagreed], rule, control)
    assert np.mean(outcomes[5000:]) == pytest.approx(0.1, abs=0.01)
    assert control.offset == pytest.approx(0.2, abs=0.05)


def test_a_window_of_audits_moves_the_offset_at_most_max_move_from_where_it_began():
    """Issue 28: 56 disagreements took the offset from 0 to its ceiling. Now each window of `window` audits moves it
    at most `max_move` from where the window began, down as well as up, and replay resumes a window in progress."""
    rule = ControlRule(target=0.0, step=0.1, window=5, max_move=0.25)
    offsets = [c.offset for c in replay([True] * 15, rule)]
    assert offsets[:5] == pytest.approx([0.1, 0.2, 0.25, 0.25, 0.25])
    assert offsets[5:10] == pytest.approx([0.35, 0.45, 0.5, 0.5, 0.5]) and offsets[-1] == pytest.approx(0.75)
    down = ControlRule(target=1.0, step=0.1, window=5, max_move=0.25)
    assert replay([False] * 5, down, ControlState(control=Control(offset=0.9, version=10), anchor=0.9))[-1].offset == \
        pytest.approx(0.65)
    mid = ControlState(control=Control(offset=0.25, version=3), anchor=0.0)  # the window began at 0
    assert replay([True], rule, mid)[0].offset == pytest.approx(0.25)
    assert step(mid, True, rule) == ControlState(control=Control(offset=0.25, version=4), anchor=0.0)
