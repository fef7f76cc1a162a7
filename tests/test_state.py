"""Centroid stores: running mean, idempotence per sample id, empty pools. Redis runs in the integration tests."""

import numpy as np
import pytest

from state.base import NotSeeded, Update
from state.memory import InMemoryCentroidStore
from tests import hand_case as hc


def _seed(store, **calibrate_options) -> None:

    cal = hc.calibration(**calibrate_options)
    store.seed(cal.centroid_arrays(), cal.pool_sizes)


def check_store_semantics(store) -> None:
    """Shared by the in-memory test here and the Redis integration test."""
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


def test_memory_store_semantics():
    check_store_semantics(InMemoryCentroidStore())


def test_unseeded_memory_store():
    with pytest.raises(NotSeeded, match="--reseed"):
        InMemoryCentroidStore().snapshot()


def test_updates_to_an_empty_pool_are_skipped():
    from dimee.tiers import CostModel

    store = InMemoryCentroidStore()
    _seed(store, cost=CostModel(beta=2.0))
    assert store.apply([Update(2, np.array([1.0, 1.0]), "x")]) == [False]
    assert store.snapshot().means[2] is None
