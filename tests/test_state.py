"""What only the in-memory centroid store does; the shared contract is tests/contracts/test_centroid_store.py."""

import numpy as np
import pytest

from state.base import NotSeeded, Update
from state.memory import InMemoryCentroidStore
from tests import hand_case as hc


def _seed(store, **calibrate_options) -> None:
    cal = hc.calibration(**calibrate_options)
    store.seed(cal.centroid_arrays(), cal.pool_sizes)


def test_unseeded_memory_store():
    with pytest.raises(NotSeeded, match="--reseed"):
        InMemoryCentroidStore().snapshot()


def test_updates_to_an_empty_pool_are_skipped():
    from dimee.tiers import CostModel

    store = InMemoryCentroidStore()
    _seed(store, cost=CostModel(beta=2.0))
    assert store.apply([Update(2, np.array([1.0, 1.0]), "x")]) == [False]
    assert store.snapshot().means[2] is None
