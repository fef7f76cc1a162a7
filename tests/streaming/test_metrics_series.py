"""Every series a role will count is exported from its start, at 0: a rate of escalations, dead letters or
retries reads 0 (not "No data") before the first one, so a panel shows it and an alert on it can clear. And an
outage is labelled with the service that had it (a Redis outage as "redis", not as the stage's "process")."""

from __future__ import annotations

import itertools
import socket

import pytest
from prometheus_client import REGISTRY

from dimee.streaming import metrics
from dimee.streaming.config import Settings
from dimee.streaming.runtime import StopFlag, retry
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.memory import InMemoryBroker
from tests.support.helpers import context, deployment

# The labelled metrics whose series the roles start; emptied first so that what other tests of this session
# counted cannot stand in for what a role exports from its start.
STARTED = (metrics.IN, metrics.COMMITTED, metrics.DEAD, metrics.BATCH, metrics.PROCESS, metrics.BATCH_SIZE,
           metrics.RETRIES, metrics.UNAVAILABLE, metrics.PREDICTIONS, metrics.LATENCY, metrics.COST,
           metrics.LABELLED, metrics.CORRECT, metrics.ESCALATIONS, metrics.AUDITS, metrics.ROUTED,
           metrics.AUDITS_REFUSED)


def _exported() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in REGISTRY.collect() for s in m.samples}


def _value(exported: dict, name: str, **labels: str) -> float | None:
    return exported.get((name, tuple(sorted(labels.items()))))


def test_started_roles_export_every_series_they_know_at_zero(workdir, cal):
    from dimee.routers.controller import ThresholdController
    from dimee.routers.router import Router
    from dimee.state.base import REFUSALS
    from dimee.state.memory import InMemoryCentroidStore
    from dimee.workers.tier_worker import TierWorker

    from dimee.method.control import ControlRule

    for metric in STARTED:
        metric.clear()
    served = deployment(workdir, cal, "DIMEE-F")
    plan = served.calibration.plan
    ctx = context(InMemoryBroker(), Topics("zero"), settings=Settings(audit_rate=0.2))
    store = InMemoryCentroidStore()
    Router(ctx, served, store)
    workers = [TierWorker(ctx, served, tier) for tier in plan.tiers]
    ThresholdController(ctx, store, ControlRule(target=0.1))
    exported = _exported()

    for stage in ["router", "controller", *(w.name for w in workers)]:
        for reason in metrics.DEAD_LETTER_REASONS:
            assert _value(exported, "dimee_dead_letters_total", stage=stage, reason=reason) == 0, (stage, reason)
        assert _value(exported, "dimee_messages_in_total", stage=stage) == 0
        assert _value(exported, "dimee_records_committed_total", stage=stage) == 0
        assert _value(exported, "dimee_batch_size_count", stage=stage) == 0
    for service in metrics.SERVICES:
        assert _value(exported, "dimee_service_retries_total", service=service) == 0, service
        assert _value(exported, "dimee_service_unavailable", service=service) == 0, service
    tiers = [t.value for t in plan.tiers]
    for low, high in itertools.pairwise(tiers):  # the escalations the plan has, and no other
        assert _value(exported, "dimee_escalations_total", from_tier=low, to_tier=high) == 0
    assert {dict(k[1])["from_tier"] for k in exported if k[0] == "dimee_escalations_total"} == set(tiers[:-1])
    for tier in tiers:
        assert _value(exported, "dimee_predictions_total", tier=tier) == 0
        assert _value(exported, "dimee_routed_total", tier=tier) == 0
        histograms = {name for name, labels in exported if name.endswith("_count") and ("tier", tier) in labels}
        assert histograms and all(_value(exported, name, tier=tier) == 0 for name in histograms)  # no observation
        assert _value(exported, "dimee_cost_total", tier=tier, component="total") == 0
    for checked in tiers[:-1]:  # what the auditor (the last tier) checks
        for outcome in ("agree", "disagree"):
            assert _value(exported, "dimee_audits_total", tier=checked, outcome=outcome) == 0
    for reason in REFUSALS.values():
        assert _value(exported, "dimee_audits_refused_total", reason=reason) == 0


def test_every_service_an_outage_names_is_started():
    """The services a ServiceUnavailable names are the ones started at 0 (metrics.SERVICES)."""
    import dimee.state.base
    import dimee.state.redis_store

    from dimee.common.errors import ServiceUnavailable

    assert dimee.state.base and dimee.state.redis_store  # for their outages

    def subclasses(cls: type) -> list[type]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    named = {cls.service for cls in subclasses(ServiceUnavailable) if cls.service is not None}
    assert "redis" in named and named <= set(metrics.SERVICES), named - set(metrics.SERVICES)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the block ends: a connection is refused


@pytest.mark.parametrize("call", ["control_state", "snapshot"])
def test_a_redis_outage_is_counted_as_redis_not_as_the_stage_that_called_it(call):
    """Defect: a stage retries its process() as "process"; the store's ServiceUnavailable named no service, so a
    Redis outage was counted and shown as dimee_service_retries_total{service="process"}."""
    from dimee.state.redis_store import RedisCentroidStore

    store = RedisCentroidStore(f"redis://127.0.0.1:{_closed_port()}/0", "dimee:{zero/x}")
    stop, attempts = StopFlag(), []

    def action() -> object:
        attempts.append(1)
        if len(attempts) > 1:  # one retry counted, then the stop: retry re-raises
            stop.set()
        return getattr(store, call)()

    before = {s: metrics.RETRIES.labels(s)._value.get() for s in ("redis", "process")}
    with pytest.raises(Exception, match="Redis"):
        retry(action, "process", stop, first_delay_s=0.001)
    after = {s: metrics.RETRIES.labels(s)._value.get() for s in ("redis", "process")}
    assert {s: after[s] - before[s] for s in after} == {"redis": 1, "process": 0}
