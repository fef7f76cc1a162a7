"""The centroid store contract (state/base.py), on the in-memory store and on Redis: the running-mean step
of dimee.method.arithmetic, idempotent per sample id, empty pools never moved, an explicit reseed that forgets."""

from __future__ import annotations

import numpy as np
import pytest
from dimee.state.base import Update

from dimee.method.arithmetic import running_mean_step
from tests.support import hand_case as hc
from tests.support.real_services import REDIS, needs


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


def _another_client(store):
    """A second connection to the same centroids, as a second router process would have."""
    if hasattr(store, "url"):
        from dimee.state.redis_store import RedisCentroidStore

        return RedisCentroidStore(store.url, store.namespace.split("{")[1].rstrip("}"))
    return store


def _race(work, *argument_sets) -> None:
    """`work` run at once on each set of arguments, one thread each, until all are done."""
    import threading

    racers = [threading.Thread(target=work, args=arguments) for arguments in argument_sets]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()


def test_concurrent_routers_lose_no_update_and_apply_each_id_once(store):
    """Two routers moving the same pools at once, with overlapping ids (a replay seen by both): every id moves
    its pool exactly once, so each pool ends at the mean of its seed and of its distinct samples' embeddings."""

    rng = np.random.default_rng(1)
    store.seed([np.zeros(4), np.ones(4), None], [1, 1, 0])
    embeddings = {f"id-{i}": (i % 2, rng.normal(size=4)) for i in range(400)}
    ids = list(embeddings)
    batches = [[ids[j] for j in range(start, min(start + 16, 400))] for start in range(0, 400, 16)]
    other = _another_client(store)

    def route(client, order) -> None:
        for batch in order:
            client.apply([Update(embeddings[i][0], embeddings[i][1], i) for i in batch])

    _race(route, (store, batches), (other, batches[::-1]))  # every id offered twice
    snap = store.snapshot()
    assert snap.counts[:2] == [201, 201] and snap.versions[:2] == [200, 200]
    for pool, seed in ((0, np.zeros(4)), (1, np.ones(4))):
        members = [e for p, e in embeddings.values() if p == pool]
        assert snap.means[pool] == pytest.approx((seed + np.sum(members, axis=0)) / 201, rel=1e-9, abs=1e-9)


def test_restoring_fills_an_empty_store_and_keeps_what_is_still_there(store):
    """The way back after lost state (`dimee seed --only-missing`): an empty store gets calibration's pools; a
    seeded one keeps its adapted centroids and seen-markers."""
    from dimee.state.base import NotSeeded

    cal = hc.calibration()
    with pytest.raises(NotSeeded):
        store.snapshot()
    assert store.restore(cal.centroid_arrays(), cal.pool_sizes) == 3
    assert [m.tolist() for m in store.snapshot().means] == [[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]]
    assert store.apply([Update(0, np.array([4.0, 2.0]), "a")]) == [True]
    assert store.restore(cal.centroid_arrays(), cal.pool_sizes) == 0
    assert store.snapshot().means[0].tolist() == [2.0, 1.0]  # adapted, kept
    assert store.apply([Update(0, np.array([4.0, 2.0]), "a")]) == [False]  # its seen-marker too


@pytest.mark.parametrize("store", [pytest.param("redis", marks=needs("redis", bool(REDIS)))], indirect=True)
def test_a_pool_lost_from_redis_is_reported_and_restored_alone(store):
    from dimee.state.base import NotSeeded

    cal = hc.calibration()
    store.seed(cal.centroid_arrays(), cal.pool_sizes)
    store.apply([Update(0, np.array([4.0, 2.0]), "a")])
    store.client.delete(store._key("pool", 1))  # evicted, or a partial failover
    with pytest.raises(NotSeeded, match=r"pools \[1\] are missing"):
        store.snapshot()
    assert store.restore(cal.centroid_arrays(), cal.pool_sizes) == 1
    snap = store.snapshot()
    assert snap.means[0].tolist() == [2.0, 1.0] and snap.means[1].tolist() == [2.0, 0.0]


def test_the_live_control_moves_once_per_audit_by_the_rule_and_a_reseed_resets_it(store):
    from dimee.method.control import Control, ControlRule, replay

    _seed(store)
    rule = ControlRule(target=0.1, step=0.05)
    assert store.control() == Control()
    outcomes = [("a", True), ("b", False), ("a", True), ("c", True)]  # "a" again: a replay
    steps = store.apply_control(outcomes, rule)
    assert steps.applied == [True, True, False, True]
    assert steps.controls == replay([True, False, True], rule)  # the rule of dimee.method.control, exactly
    assert store.control() == steps.controls[-1] and store.control().version == 3
    assert store.apply_control([("b", True)], rule).applied == [False]  # a redelivered audit moves nothing
    restarted = _another_client(store)  # a controller started again (another process) resumes from the store
    assert restarted.control() == steps.controls[-1]
    assert restarted.apply_control([("d", False)], rule).controls == replay([False], rule, steps.controls[-1])
    _seed(store)
    assert store.control() == Control()


def test_concurrent_controllers_lose_no_step(store):

    from dimee.method.control import ControlRule

    _seed(store)
    rule = ControlRule(target=0.0, step=0.001)  # every disagreement adds exactly one step
    ids = [f"audit-{i}" for i in range(200)]
    other = _another_client(store)

    def control(client, order) -> None:
        for start in range(0, len(order), 10):
            client.apply_control([(i, True) for i in order[start:start + 10]], rule)

    _race(control, (store, ids), (other, ids[::-1]))  # every audit offered twice
    assert store.control().version == 200 and store.control().offset == pytest.approx(0.2)
