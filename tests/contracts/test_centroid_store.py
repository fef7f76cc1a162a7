"""The centroid store contract (state/base.py), on the in-memory store and on Redis: the running-mean step
of dimee.method, idempotent per sample id, empty pools never moved, an explicit reseed that forgets."""

from __future__ import annotations

import numpy as np
import pytest

from dimee.method import running_mean_step
from state.base import Update
from tests import hand_case as hc


def _seed(store, **calibrate_options) -> None:
    cal = hc.calibration(**calibrate_options)
    store.seed(cal.centroid_arrays(), cal.pool_sizes)


def check_store_semantics(store) -> None:
    """Running mean, idempotence per id, an explicit reseed that forgets seen ids."""
    _seed(store)
    snap = store.snapshot()
    assert snap.counts == [1, 1, 1] and snap.version == 0
    assert [m.tolist() for m in snap.means] == [[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]]
    applied = store.apply([Update(0, np.array([4.0, 2.0]), "a"), Update(0, np.array([2.0, 1.0]), "b"),
                           Update(0, np.array([9.0, 9.0]), "a")])  # "a" again: a replay
    assert applied == [True, True, False]
    snap = store.snapshot()
    assert snap.counts[0] == 3 and snap.versions == [2, 0, 0]
    assert snap.means[0] == pytest.approx([(0 + 4 + 2) / 3, (0 + 2 + 1) / 3])
    assert store.apply([Update(0, np.array([100.0, 100.0]), "b")]) == [False]
    _seed(store)  # an explicit reseed resets means and forgets seen ids
    assert store.apply([Update(1, np.array([4.0, 0.0]), "a")]) == [True]
    assert store.snapshot().means[1].tolist() == [3.0, 0.0]



def test_store_semantics(store):
    check_store_semantics(store)


def test_the_store_computes_the_same_step_as_dimee_method(store):
    rng = np.random.default_rng(0)
    means, counts = [rng.normal(size=8), rng.normal(size=8), None], [5, 3, 0]
    store.seed(means, counts)
    expected = [m.copy() if m is not None else None for m in means]
    expected_counts = list(counts)
    updates = [Update(int(rng.integers(0, 2)), rng.normal(size=8), f"id-{i}", gamma=0.2 if i % 3 == 0 else 0.0)
               for i in range(12)]
    for update in updates:
        expected[update.pool] = running_mean_step(expected[update.pool], update.embedding, expected_counts[update.pool],
                                                  update.gamma)
        expected_counts[update.pool] += 1
    assert store.apply(updates) == [True] * len(updates)
    snapshot = store.snapshot()
    assert snapshot.counts == expected_counts
    for got, want in zip(snapshot.means[:2], expected[:2], strict=True):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
    assert snapshot.means[2] is None
