"""What only the in-memory centroid store does; the shared contract is tests/contracts/test_centroid_store.py."""

import numpy as np
import pytest
from dimee.state.base import NotSeeded, Update
from dimee.state.memory import InMemoryCentroidStore

from tests.support import hand_case as hc


def _seed(store, **calibrate_options) -> None:
    cal = hc.calibration(**calibrate_options)
    store.seed(cal.centroid_arrays(), cal.pool_sizes)


def test_unseeded_memory_store():
    with pytest.raises(NotSeeded, match="--reseed"):
        InMemoryCentroidStore().snapshot()


def test_updates_to_an_empty_pool_are_skipped():
    from dimee.method.tiers import CostModel

    store = InMemoryCentroidStore()
    _seed(store, cost=CostModel(beta=2.0))
    assert store.apply([Update(2, np.array([1.0, 1.0]), "x")]) == [False]
    assert store.snapshot().means[2] is None


def test_two_models_of_one_data_set_never_share_centroids(tmp_path):
    """Keys used to be namespaced by the data set's name alone, so a second model overwrote the first's."""
    from dimee.streaming.deployment import Deployment
    from tests.support.helpers import tiny_workdir

    first = Deployment.load(tiny_workdir(tmp_path / "a", seed=0), "DIMEE-F")
    second = Deployment.load(tiny_workdir(tmp_path / "b", seed=1), "DIMEE-F")
    assert first.calibration.model_id == second.calibration.model_id == "tiny"
    assert first.state_id != second.state_id and first.state_id.startswith("tiny-")
    assert Deployment.load(tmp_path / "a", "DIMEE-D").state_id == first.state_id  # the policy does not matter
