"""Every Prometheus metric dimee exports, in one place (scraped from each role's /metrics; see
deploy/prometheus.yml and deploy/grafana/dimee.json). Counters count what a stage computed, so a batch read
again after an aborted transaction or a crash counts again.

Useful queries: mean cost per prediction `sum(rate(dimee_cost_total{component="total"}[5m])) /
sum(rate(dimee_predictions_total[5m]))`; rolling accuracy `sum(rate(dimee_correct_predictions_total[5m])) /
sum(rate(dimee_labelled_predictions_total[5m]))`; p99 latency `histogram_quantile(0.99, sum by (le, tier)
(rate(dimee_latency_seconds_bucket[5m])))`."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram, Info

IN = Counter("dimee_messages_in_total", "Records consumed", ["stage"])
COMMITTED = Counter("dimee_records_committed_total", "Records consumed whose batch was committed (with its outputs)",
                    ["stage"])
OUT = Counter("dimee_messages_out_total", "Records produced", ["stage", "topic"])
DEAD = Counter("dimee_dead_letters_total", "Records sent to the dead-letter topic, by reason", ["stage", "reason"])
BATCH = Histogram("dimee_batch_seconds", "Processing time of one micro-batch", ["stage"])
PROCESS = Counter("dimee_process_seconds_total", "Time a stage spent processing its batches (the model, the "
                  "state store): divided by wall time, how busy it keeps its compute", ["stage"])
BATCH_SIZE = Histogram("dimee_batch_size", "Records in one micro-batch", ["stage"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
LAG = Gauge("dimee_consumer_lag", "Records behind the end of the partition, after the last poll",
            ["group", "topic", "partition"])
RETRIES = Counter("dimee_service_retries_total", "Calls retried because a service was unavailable", ["service"])
UNAVAILABLE = Gauge("dimee_service_unavailable", "1 while a stage waits for an unavailable service", ["service"])

PREDICTIONS = Counter("dimee_predictions_total", "Predictions answered, by the tier that answered", ["tier"])
LATENCY = Histogram("dimee_latency_seconds", "Produce → prediction time, by the tier that answered", ["tier"],
                    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
COST = Counter("dimee_cost_total", "Summed cost of the answered samples, by tier and component "
               "(processing, offload, cloud, total)", ["tier", "component"])
LABELLED = Counter("dimee_labelled_predictions_total", "Answered samples that came with a label", ["tier"])
CORRECT = Counter("dimee_correct_predictions_total", "Answered labelled samples answered right", ["tier"])
AUDITS = Counter("dimee_audits_total", "Answers of a lower tier the full model checked, by that tier and whether "
                 "they agreed", ["tier", "outcome"])
AUDIT_OUTCOMES = ("agree", "disagree")
DRIFT_SCORE = Gauge("dimee_drift_score", "Kolmogorov-Smirnov distance of the last window's values from their "
                    "calibration distribution (0 the same, 1 disjoint)", ["signal"])
DRIFT_DETECTED = Gauge("dimee_drift_detected", "1 while the last window's drift score is above its 0.1% critical "
                       "value", ["signal"])
THRESHOLD_OFFSET = Gauge("dimee_threshold_offset", "The live offset the controller adds to the exit thresholds "
                         "below the cloud (0: the calibrated thresholds)")
AUDITS_REFUSED = Counter("dimee_audits_refused_total", "Audits the controller refused and dead-lettered: no audit copy "
                         "of the id was made in this pipeline, it checked another answer, or a replay", ["reason"])
AUDIT_COPIES_UNRECORDED = Counter("dimee_audit_copies_unrecorded_total", "Audit copies sent whose record the state "
                                  "store did not take (unreachable, refusing writes): the controller refuses their "
                                  "audits", ["tier"])
CENTROID_UPDATES_SKIPPED = Counter("dimee_centroid_updates_skipped_total", "Adaptive routing updates the state "
                                   "store refused (out of memory, a read-only replica): routed, centroids not moved")
CONTROL_UNUSABLE = Gauge("dimee_threshold_control_unusable", "1 while the router cannot use the stored threshold "
                         "control (malformed, unreadable, unreachable): it stamps none, and the workers serve the "
                         "calibrated thresholds")
ANSWERED = Counter("dimee_answered_total", "Prediction records a reader of the predictions topic read, repeats "
                   "included: the count the sink, `dimee tail` and the dashboard show (docs/operations.md)", ["stage"])
ANSWER_REPEATS = Counter("dimee_answer_repeats_total", "Of dimee_answered_total, the records for a sample id already "
                         "read (a sample produced twice, a prediction delivered again)", ["stage"])
ESCALATIONS = Counter("dimee_escalations_total", "Samples passed up a tier", ["from_tier", "to_tier"])

ROUTED = Counter("dimee_routed_total", "Samples routed, by start tier", ["tier"])
CENTROID_SHIFT = Gauge("dimee_centroid_shift", "Distance of a pool's centroid from its calibrated position "
                       "(adaptive routing: how far drift has moved it)", ["pool"])
NEAREST_CENTROID = Histogram("dimee_nearest_centroid_distance", "Distance from a routed sample's embedding to its "
                             "nearest pool centroid (centroid routing): it rises as the stream drifts away from "
                             "the data the centroids were calibrated on",
                             buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 50))
POOL_SAMPLES = Gauge("dimee_pool_samples", "Samples a pool's centroid averages (calibration + adapted)", ["pool"])
DEPLOYMENT = Info("dimee_deployment", "What the role serves: policy, α*, caps, model fingerprint, version")


# A dead letter's reason: the first marker its error contains, else "invalid-field".
DEAD_LETTER_KINDS = (("tombstone", "tombstone"), ("invalid JSON", "invalid-json"), ("not UTF-8", "not-utf8"),
                     ("bytes, more than", "too-large"), ("id reused", "id-reused"), ("processing failed", "processing"),
                     ("label", "bad-label"), ("Field required", "missing-field"), ("Extra inputs", "unknown-field"),
                     ("audit refused", "audit-refused"))
DEAD_LETTER_REASONS = (*dict.fromkeys(kind for _, kind in DEAD_LETTER_KINDS), "invalid-field")
# What `runtime.retry` labels an outage with: the name its caller gives ("broker", "process", "state store")
# unless the ServiceUnavailable names its service (`service`: "redis", "centroid store", "threshold control").
SERVICES = ("broker", "redis", "centroid store", "threshold control", "state store", "process")


def dead_letter_reason(error: str) -> str:
    """A dead letter's error as one of a few reasons (a bounded label set, unlike the error text)."""
    return next((kind for marker, kind in DEAD_LETTER_KINDS if marker in error), "invalid-field")


# Series at 0 from the start. A labelled series exists only once its labels were used: without these, a rate of
# escalations, dead letters or retries is "No data" (not 0) until the first one, and an alert on it cannot fire
# or clear. Each role names the label values it knows when it starts.

def start_process() -> None:
    """Every process: its retry counters and outage gauges, per service."""
    for service in SERVICES:
        RETRIES.labels(service)
        UNAVAILABLE.labels(service).set(0)


def start_stage(stage: str) -> None:
    """A stage's counters of what it reads, computes, commits and dead-letters."""
    start_process()
    for metric in (IN, COMMITTED, BATCH, PROCESS, BATCH_SIZE):
        metric.labels(stage)
    for reason in DEAD_LETTER_REASONS:
        DEAD.labels(stage, reason)


def start_worker(tier: str, next_tier: str | None, components: Iterable[str], audits_of: Iterable[str] = ()) -> None:
    """A tier's worker: its answers, their cost `components`, its escalations to `next_tier`, and (the auditor)
    its audits of the tiers `audits_of`."""
    components = list(components)
    for metric in (PREDICTIONS, LATENCY, LABELLED, CORRECT):
        metric.labels(tier)
    for component in components:
        COST.labels(tier, component)
    if next_tier is not None:
        ESCALATIONS.labels(tier, next_tier)
    for checked in audits_of:
        for outcome in AUDIT_OUTCOMES:
            AUDITS.labels(checked, outcome)
        for component in components:
            COST.labels("audit", component)


def start_router(tiers: Iterable[str]) -> None:
    """The router: the samples it routes to each tier's pool."""
    for tier in tiers:
        ROUTED.labels(tier)


def start_controller(reasons: Iterable[str]) -> None:
    """The threshold controller: the audits it refuses, by reason."""
    for reason in reasons:
        AUDITS_REFUSED.labels(reason)
