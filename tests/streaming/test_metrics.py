"""The Prometheus metrics after a small stream: present, and equal to what the predictions say."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from dimee.composition.pipeline import PipelineOptions, run_pipeline
from dimee.method.tiers import TIER_NAMES
from dimee.streaming.config import Settings
from dimee.streaming.metrics import LATENCY
from tests.support.helpers import deployment, stream_records

HISTOGRAM_COUNT = f"{LATENCY.describe()[0].name}_count"  # how many values the per-tier latency histogram observed


def _sum(name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_metrics_after_a_small_stream(workdir, cal):
    names = ["dimee_predictions_total", "dimee_labelled_predictions_total", "dimee_correct_predictions_total",
             "dimee_routed_total", "dimee_escalations_total", HISTOGRAM_COUNT]
    before = {n: _sum(n) for n in names}
    cost_before = _sum("dimee_cost_total", component="total")
    audit_cost_before = _sum("dimee_cost_total", tier="audit", component="total")
    audits_before = _sum("dimee_audits_total")
    dead_before = _sum("dimee_dead_letters_total", stage="router", reason="invalid-json")
    records = [*stream_records(60, seed=51), b"{not json"]
    settings = Settings(broker="memory://metrics", state="memory://metrics", topic_prefix="metrics", audit_rate=0.3)
    run = run_pipeline(records, deployment(workdir, cal, "Cascade"), settings, PipelineOptions(progress=False))
    delta = {n: _sum(n) - before[n] for n in names}
    predictions = list(run.predictions.values())
    assert delta["dimee_predictions_total"] == delta["dimee_labelled_predictions_total"] == len(predictions) == 60
    # one observation per prediction in the produce → prediction histogram (how many, never how long)
    observations = delta[HISTOGRAM_COUNT]
    assert observations == len(predictions) and delta["dimee_routed_total"] == 60
    assert delta["dimee_correct_predictions_total"] == sum(p.correct for p in predictions)
    assert delta["dimee_escalations_total"] == sum(len(p.path) - 1 for p in predictions) > 0
    # every answer's cost, and every audit's (what Cloud-only would have cost for that sample)
    audit_cost = _sum("dimee_cost_total", tier="audit", component="total") - audit_cost_before
    assert _sum("dimee_audits_total") - audits_before == len(run.audits) > 0
    assert audit_cost == pytest.approx(sum(a.cost.total for a in run.audits.values()))
    assert _sum("dimee_cost_total", component="total") - cost_before - audit_cost == pytest.approx(
        sum(p.cost.total for p in predictions))
    assert _sum("dimee_dead_letters_total", stage="router", reason="invalid-json") - dead_before == 1
    lag = {s.labels["group"]: s.value for m in REGISTRY.collect() if m.name == "dimee_consumer_lag" for s in m.samples}
    for tier in TIER_NAMES:  # every worker group reported its lag, and it is drained
        assert lag[f"metrics.worker.{tier}"] == 0
    info = [m for m in REGISTRY.collect() if m.name == "dimee_deployment"]
    assert info and info[0].samples[0].labels["version"]


@pytest.mark.parametrize(("policy", "observed"), [("DIMEE-F", 40), ("Cascade", 0)])
def test_the_nearest_centroid_distance_is_observed_once_per_centroid_routed_sample(workdir, cal, policy, observed):
    count, total = "dimee_nearest_centroid_distance_count", "dimee_nearest_centroid_distance_sum"
    before = _sum(count), _sum(total)
    settings = Settings(broker=f"memory://d-{policy}", state=f"memory://d-{policy}", topic_prefix=f"d-{policy}")
    run_pipeline(stream_records(40, seed=52), deployment(workdir, cal, policy), settings,
                 PipelineOptions(progress=False))
    assert _sum(count) - before[0] == observed
    assert (_sum(total) - before[1] > 0) == (observed > 0)  # real distances, not zeros
