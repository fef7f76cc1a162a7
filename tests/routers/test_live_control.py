"""Bad threshold-control state never stops the stream (issue 28): a stored control that is not one (malformed,
another type, an infinity) leaves the router serving the calibrated thresholds (it stamps none), with a log line,
`dimee_threshold_control_unusable` and a /readyz reason; `dimee seed --only-missing` resets it and the router stamps
the stored control again. Before, the router dead-lettered every sample (30 of 30), and `inf` made the workers
dead-letter every sample."""

from __future__ import annotations

import pytest
from dimee.producers.producer import ProduceOptions, produce
from dimee.routers import controller as controller_module
from dimee.routers.router import Router
from dimee.state.base import RefusesWrites, Verdict
from dimee.state.memory import InMemoryCentroidStore
from structlog.testing import capture_logs

from dimee.method.control import Control, ControlRule
from dimee.streaming import metrics
from dimee.streaming.health import Health
from dimee.streaming.messages import Routed, Sample
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.memory import InMemoryBroker
from tests.support.helpers import context, deployment, stream_records

DAMAGED = {"garbage": {"offset": "garbage", "version": "1", "anchor": "0"},
           "comma": {"offset": "0,1", "version": "1", "anchor": "0"},
           "negative": {"offset": "-1", "version": "1", "anchor": "0"},
           "nan": {"offset": "nan", "version": "1", "anchor": "0"},
           "inf": {"offset": "inf", "version": "1", "anchor": "0"},
           "version x": {"offset": "0.5", "version": "x", "anchor": "0.5"}}


def _route(workdir, cal, store, name: str) -> tuple[Router, list[Routed]]:
    broker, topics = InMemoryBroker(), Topics(name)
    produce(broker, topics, stream_records(30, seed=5), ProduceOptions(progress=False))
    router = Router(context(broker, topics), deployment(workdir, cal, "Edge+escalation"), store, "r")
    router.run(idle_exit_s=1.0)
    assert broker.read_all(topics.dead_letter) == [] and router.dead_letters == 0
    routed = [Routed.model_validate_json(r.value) for t in ("mobile", "edge", "cloud")
              for r in broker.read_all(topics.tier(t))]
    assert len(routed) == 30
    return router, routed


@pytest.mark.parametrize("damage", list(DAMAGED))
def test_a_damaged_control_leaves_the_router_serving_the_calibrated_thresholds(workdir, cal, damage, monkeypatch):
    health = Health()
    monkeypatch.setattr(controller_module, "HEALTH", health)
    store = InMemoryCentroidStore()
    store.seed(cal.centroid_arrays(), cal.pool_sizes)
    store._control = dict(DAMAGED[damage])  # as a typo, a bug or a forged write would leave the Redis hash
    with capture_logs() as said:
        _, routed = _route(workdir, cal, store, f"bad-{damage.replace(' ', '-')}")
    assert all(message.control is None for message in routed)  # the workers serve the calibrated thresholds
    assert any(e["event"].startswith("threshold control unusable") for e in said)
    assert metrics.CONTROL_UNUSABLE._value.get() == 1
    ok, detail = health.ready()
    assert not ok and any(r.startswith("threshold control unusable") and "--only-missing" in r
                          for r in detail["waiting_for"])
    assert store.repair_control() is not None  # what `dimee seed --only-missing` does
    store.mark_audit_copies({"a": "edge:1"})
    store.apply_control([Verdict("a", "edge:1", True)], ControlRule(target=0.0, step=0.1))
    _, routed = _route(workdir, cal, store, f"repaired-{damage.replace(' ', '-')}")
    assert all(message.control == Control(offset=0.1, version=1) for message in routed)
    assert metrics.CONTROL_UNUSABLE._value.get() == 0
    assert not any(r.startswith("threshold control") for r in health.ready()[1]["waiting_for"])


class _OutOfMemory(InMemoryCentroidStore):
    """A Redis out of memory: reads answer, writes are refused."""

    def __init__(self) -> None:
        super().__init__()
        self.full = True

    def apply(self, updates, read=None):
        if self.full:
            raise RefusesWrites("Redis at redis://r:6379/0 refuses the command: OOM command not allowed")
        return super().apply(updates, read)


def test_an_adaptive_router_goes_on_routing_while_the_store_refuses_writes(workdir, cal, monkeypatch):
    """Issue 28: Redis out of memory dead-lettered 16 of 30 samples (the adaptive update failed). Now the batch is
    routed with the centroids as they are, said in a log line, a metric and a /readyz reason, until writes pass."""
    from dimee.routers import strategies

    health = Health()
    monkeypatch.setattr(strategies, "HEALTH", health)
    store = _OutOfMemory()
    store.seed(cal.centroid_arrays(), cal.pool_sizes)
    skipped = metrics.CENTROID_UPDATES_SKIPPED._value.get()
    broker, topics = InMemoryBroker(), Topics("oom")
    produce(broker, topics, stream_records(30, seed=6), ProduceOptions(progress=False))
    router = Router(context(broker, topics), deployment(workdir, cal, "DIMEE-D"), store, "r")
    with capture_logs() as said:
        router.run(idle_exit_s=1.0)
    assert router.dead_letters == 0 and broker.read_all(topics.dead_letter) == []
    assert sum(len(broker.read_all(topics.tier(t))) for t in ("mobile", "edge", "cloud")) == 30
    assert metrics.CENTROID_UPDATES_SKIPPED._value.get() - skipped == 30
    assert store.snapshot().counts == list(cal.pool_sizes)  # nothing moved
    assert sum(e["event"].startswith("centroids not moved") for e in said) == 1
    assert any(r.startswith("centroid updates refused") for r in health.ready()[1]["waiting_for"])
    store.full = False
    strategy = router.strategy
    assert isinstance(strategy, strategies.CentroidRouting)
    strategy.decide([Sample(id="after", text="a store with room again")])
    assert strategy.refusal is None and sum(store.snapshot().counts) == sum(cal.pool_sizes) + 1
    assert not any(r.startswith("centroid updates") for r in health.ready()[1]["waiting_for"])
