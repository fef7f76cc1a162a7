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

        return RedisCentroidStore(store.url, store.namespace)
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


def _copies(store, *ids: str, answer: str = "edge:1") -> None:
    """The audit copies a worker made of these ids (of the edge's answer 1, unless said)."""
    store.mark_audit_copies({i: answer for i in ids})


def _verdicts(*pairs: tuple[str, bool], answer: str = "edge:1") -> list:
    from dimee.state.base import Verdict

    return [Verdict(audit_id, answer, disagreed) for audit_id, disagreed in pairs]


def test_the_live_control_moves_once_per_audit_by_the_rule_and_a_reseed_resets_it(store):
    from dimee.method.control import Control, ControlRule, replay

    _seed(store)
    rule = ControlRule(target=0.1, step=0.05)
    assert store.control() == Control()
    _copies(store, "a", "b", "c", "d")
    outcomes = _verdicts(("a", True), ("b", False), ("a", True), ("c", True))  # "a" again: a replay
    steps = store.apply_control(outcomes, rule)
    assert steps.applied == [True, True, False, True]
    assert steps.controls == replay([True, False, True], rule)  # the rule of dimee.method.control, exactly
    assert store.control() == steps.controls[-1] and store.control().version == 3
    assert store.apply_control(_verdicts(("b", True)), rule).applied == [False]  # a redelivered audit moves nothing
    restarted = _another_client(store)  # a controller started again (another process) resumes from the store
    assert restarted.control() == steps.controls[-1]
    assert restarted.apply_control(_verdicts(("d", False)), rule).controls == replay([False], rule, steps.controls[-1])
    _seed(store)
    assert store.control() == Control()


def test_concurrent_controllers_lose_no_step(store):

    from dimee.method.control import ControlRule

    _seed(store)
    rule = ControlRule(target=0.0, step=0.001)  # every disagreement adds exactly one step
    ids = [f"audit-{i}" for i in range(200)]
    _copies(store, *ids)
    other = _another_client(store)

    def control(client, order) -> None:
        for start in range(0, len(order), 10):
            client.apply_control(_verdicts(*((i, True) for i in order[start:start + 10])), rule)

    _race(control, (store, ids), (other, ids[::-1]))  # every audit offered twice
    assert store.control().version == 200 and store.control().offset == pytest.approx(0.2)


def test_an_audit_counts_only_against_the_copy_this_pipeline_made_and_only_once(store):
    """Forged audits (no copy made, or one of another answer) and replays move nothing and say why; a copy's record
    is consumed by its audit."""
    from dimee.state.base import NO_COPY, OTHER_ANSWER, REPLAYED

    from dimee.method.control import Control, ControlRule

    _seed(store)
    rule = ControlRule(target=0.0, step=0.5, max_move=1.0)
    _copies(store, "made", "other")
    forged = _verdicts(*((f"forged-{i}", True) for i in range(150)))
    steps = store.apply_control([*forged, *_verdicts(("other", True), answer="edge:0")], rule)
    assert steps.refused == [NO_COPY] * 150 + [OTHER_ANSWER] and steps.controls == []
    assert store.control() == Control()
    steps = store.apply_control(_verdicts(("made", True), ("made", True)), rule)
    assert steps.refused == [None, REPLAYED] and store.control() == Control(offset=0.5, version=1)
    assert store.apply_control(_verdicts(("made", True)), rule).refused == [REPLAYED]
    _seed(store)  # a reseed forgets the seen-markers; the consumed record stays consumed
    assert store.apply_control(_verdicts(("made", True)), rule).refused == [NO_COPY]
    assert store.apply_control(_verdicts(("other", False), answer="edge:1"), rule).refused == [None]


def test_a_window_of_audits_moves_the_offset_at_most_max_move(store):
    from dimee.method.control import ControlRule, replay

    _seed(store)
    rule = ControlRule(target=0.0, step=0.05, window=10, max_move=0.2)
    ids = [f"a-{i}" for i in range(30)]
    _copies(store, *ids)
    steps = store.apply_control(_verdicts(*((i, True) for i in ids)), rule)
    offsets = [c.offset for c in steps.controls]
    assert offsets[9] == pytest.approx(0.2) and offsets[19] == pytest.approx(0.4) and offsets[29] == pytest.approx(0.6)
    assert all(b - a <= 0.2 + 1e-12 for a, b in zip([0.0, *offsets[9::10]], offsets[9::10], strict=False))
    assert steps.controls == replay([True] * 30, rule)
    assert store.control_state().anchor == pytest.approx(0.4)  # where the third window began


BAD_CONTROLS = {"garbage": {"offset": "garbage", "version": "3", "anchor": "0"},
                "comma": {"offset": "0,1", "version": "3", "anchor": "0"},
                "negative": {"offset": "-1", "version": "3", "anchor": "0"},
                "nan": {"offset": "nan", "version": "3", "anchor": "0"},
                "inf": {"offset": "inf", "version": "3", "anchor": "0"},
                "above the ceiling": {"offset": "5", "version": "3", "anchor": "0"},
                "version x": {"offset": "0.5", "version": "x", "anchor": "0.5"},
                "negative version": {"offset": "0.5", "version": "-1", "anchor": "0.5"},
                "no anchor": {"offset": "0.5", "version": "3"},
                "wrong type": None}


def _damage(store, fields: dict | None) -> None:
    """Write a control that is not one (None: a key of another type), as an operator's typo or a bug would."""
    if hasattr(store, "client"):
        key = store._key("control")
        store.client.delete(key)
        if fields is None:
            store.client.set(key, "0.5")
        else:
            store.client.hset(key, mapping=fields)
    else:
        store._control = {"offset": 0.5} if fields is None else dict(fields)  # the memory store's own typo


@pytest.mark.parametrize("damage", list(BAD_CONTROLS))
def test_a_damaged_control_is_reported_never_served_and_repaired(store, damage):
    from dimee.state.base import BadControl

    from dimee.method.control import Control, ControlRule

    _seed(store)
    _damage(store, BAD_CONTROLS[damage])
    with pytest.raises(BadControl):  # a service condition: the router serves the calibrated thresholds, the
        store.control()  # controller waits (tests/routers/test_live_control.py)
    _copies(store, "a")
    with pytest.raises(BadControl):
        store.apply_control(_verdicts(("a", True)), ControlRule(target=0.0))
    assert store.repair_control() is not None  # `dimee seed --only-missing`
    assert store.control() == Control()
    assert store.repair_control() is None  # a sound one is kept
    assert store.apply_control(_verdicts(("a", True)), ControlRule(target=0.0, step=0.1)).refused == [None]
    assert store.repair_control() is None and store.control() == Control(offset=0.1, version=1)


@pytest.mark.parametrize("url", ["memory://pipelines", pytest.param(REDIS or "", marks=needs("redis", bool(REDIS)),
                                                                    id="redis")])
def test_two_pipelines_of_one_model_never_touch_each_others_state(url):
    """Issue 28: the state was keyed by model alone, so audits on pipeline A's topics moved pipeline B's offset
    (100 of 100 of B's samples to the cloud) and seeding A wiped B. Now each pipeline (topic prefix) has its own
    keys; a prefix with glob characters matches no other pipeline's keys either."""
    import uuid

    from dimee.state import open_store
    from dimee.state.base import NO_COPY

    from dimee.method.control import Control, ControlRule

    model, cal, rule = f"model-{uuid.uuid4().hex[:8]}", hc.calibration(), ControlRule(target=0.0, step=0.1)
    a, b = open_store(url, model, pipeline="a*"), open_store(url, model, pipeline="ab")
    for store in (a, b):
        store.seed(cal.centroid_arrays(), cal.pool_sizes)
    assert b.apply([Update(0, np.array([4.0, 2.0]), "x")]) == [True]
    _copies(b, "y")
    assert b.apply_control(_verdicts(("y", True)), rule).applied == [True]
    _copies(a, "z")
    assert a.apply_control(_verdicts(("y", True)), rule).refused == [NO_COPY]  # b's copy is not a's
    a.seed(cal.centroid_arrays(), cal.pool_sizes)  # a's reseed: b's centroids, seen-markers and offset stay
    assert b.control() == Control(offset=0.1, version=1) and a.control() == Control()
    assert b.snapshot().means[0].tolist() == [2.0, 1.0] and b.apply([Update(0, np.array([4.0, 2.0]), "x")]) == [False]
    assert b.apply_control(_verdicts(("z", True)), rule).refused == [NO_COPY]  # a's copy is not b's
    for store in (a, b):
        store.close()
