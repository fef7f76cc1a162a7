"""All roles in one process (threads over one transport and state store): producer → router → tier
workers → sink. With memory:// broker and state this is the embedded default; with kafka:// and redis://
it runs the same code against real services. A `Collector` listens to the stages' committed batches, so the
run knows when every sample is answered without reading any stage's internals."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dimee.composition import roles
from dimee.method.control import Control
from dimee.producers.producer import ProduceOptions, produce
from dimee.streaming.audit import AuditPlan
from dimee.streaming.config import Settings
from dimee.streaming.deployment import Deployment
from dimee.streaming.messages import Audit, Message, Prediction
from dimee.streaming.runtime import StopFlag, log, retry
from dimee.streaming.stage import BatchLimits, Output, Stage
from dimee.streaming.transport.base import Topics


@dataclass
class PipelineRun:
    predictions: dict[str, Prediction]
    summary: dict
    seconds: float
    dead_letters: int
    duplicates: int
    audits: dict[str, Audit] = field(default_factory=dict)  # by sample id
    controls: list[tuple[bool, Control]] = field(default_factory=list)  # the controller's steps: (disagreed, after)
    # ids the producer could not confirm (a commit Kafka never answered): they may or may not be in the stream
    unacknowledged: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PipelineOptions:
    reseed: bool = True  # seed the centroid store from calibration.json first
    limits: BatchLimits = field(default_factory=BatchLimits)
    sink_path: Path | None = None
    timeout_s: float = 3600.0
    rate: float | None = None
    progress: bool = True


class Collector:
    """The in-process run's view of what its stages committed: predictions (first of each id), audits, applied
    feedback, dead letters."""

    def __init__(self, topics: Topics | None = None, audit: AuditPlan | None = None) -> None:
        self._lock = threading.Lock()
        self.topics, self.audit = topics or Topics(), audit or AuditPlan()
        self.predictions: dict[str, Prediction] = {}
        self.audits: dict[str, Audit] = {}
        self.awaiting_audit: set[str] = set()  # answered, picked for an audit, audit not committed yet
        self.duplicates = self.feedback_applied = self.dead_letters = 0
        self.feedback_sent = self.predictions_sent = 0  # by the workers, in batches they committed
        self.reached_sink = self.keyed_letters = self.controlled = 0
        self.dead_keys: set[str] = set()

    def committed(self, stage: str, messages: Sequence[Message], outputs: Sequence[Output]) -> None:
        with self._lock:
            self.feedback_sent += sum(o.topic == self.topics.feedback for o in outputs)
            self.predictions_sent += sum(o.topic == self.topics.predictions for o in outputs)
            if stage == "feedback":
                self.feedback_applied += len(messages)
            if stage == "sink":
                self.reached_sink += len(messages)
            if stage == "controller":
                self.controlled += len(messages)
            for message in messages if stage == "sink" else ():
                assert isinstance(message, Prediction)
                if message.id in self.predictions:
                    self.duplicates += 1
                else:
                    self.predictions[message.id] = message
                    if self.audit.audits(message.tier.value, message.id) and message.id not in self.audits:
                        self.awaiting_audit.add(message.id)
            for output in outputs:
                if output.topic == self.topics.audits:
                    audit = Audit.model_validate_json(output.value)
                    self.audits.setdefault(audit.id, audit)
                    self.awaiting_audit.discard(audit.id)

    def dead_lettered(self, stage: str, key: str | None) -> None:
        with self._lock:
            self.dead_letters += 1
            if key:  # a record produced without an id has an empty key
                self.dead_keys.add(key)
                self.keyed_letters += 1

    def finished(self, records: list, feedback: bool, control: bool = False) -> bool:
        """Every keyed record answered or dead-lettered (repeats of an id included: each reached the sink or a
        dead letter), every keyless one dead-lettered, feedback applied."""
        keyed = [str(r["id"]) for r in records if isinstance(r, dict) and r.get("id")]
        keyless = len(records) - len(keyed)
        with self._lock:
            answered = set(keyed) <= (self.predictions.keys() | self.dead_keys)
            audits_in = not self.awaiting_audit - self.dead_keys  # an audit copy dead-lettered counts as done
            every_record = self.reached_sink + self.keyed_letters >= len(keyed)
            letters = self.dead_letters - self.keyed_letters >= keyless
            # a worker reports a pool only where it observed one; its batch's callback ran once its predictions did
            applied = not feedback or (self.predictions_sent >= self.reached_sink
                                       and self.feedback_applied >= self.feedback_sent)
            controlled = not control or self.controlled >= len(self.audits)
            return answered and every_record and letters and applied and audits_in and controlled


def run_pipeline(records: list, deployment: Deployment, settings: Settings,
                 options: PipelineOptions | None = None) -> PipelineRun:
    """Stream `records` through every role of `deployment` (its policy sets router and workers)."""
    options = options or PipelineOptions()
    audit = AuditPlan(settings.audit_rate, deployment.calibration.plan.tiers[-1].value)
    collector, stop = Collector(Topics(settings.topic_prefix), audit), StopFlag()
    ctx = roles.context(settings, stop=stop, limits=options.limits, events=collector)
    ctx.transport.ensure_topics(ctx.topics.all(), settings.partitions, settings.replication_factor)
    store = roles.centroid_store(settings, deployment)
    if options.reseed:  # an unavailable store is waited for here as anywhere else
        calibration = deployment.calibration
        retry(lambda: store.seed(calibration.centroid_arrays(), calibration.pool_sizes), "state store", stop)
    router = roles.router(ctx, deployment, store)
    sink = roles.sink(ctx, options.sink_path, deployment)
    stages: list[Stage] = [router, *roles.workers(ctx, deployment), sink]
    if deployment.policy.feedback:
        stages.append(roles.feedback(ctx, router))
    controller = roles.controller(ctx, deployment, store) if settings.control else None
    stages += [controller] if controller is not None else []
    threads = [threading.Thread(target=stage.run, name=stage.name, daemon=True) for stage in stages]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    try:
        produced = produce(ctx.transport, ctx.topics, records,
                           ProduceOptions(rate=options.rate, stop=stop, progress=options.progress, total=len(records)))
        unsure = set(produced.unacknowledged)  # never in the stream, or in it unconfirmed: not waited for
        expected = [r for r in records if not (isinstance(r, dict) and r.get("id") in unsure)]
        _wait(lambda: collector.finished(expected, deployment.policy.feedback, settings.control), threads, stop,
              options.timeout_s)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        store.close()
    return PipelineRun(dict(collector.predictions), sink.stats.summary(), time.perf_counter() - started,
                       collector.dead_letters, collector.duplicates, dict(collector.audits),
                       list(controller.applied) if controller is not None else [], produced.unacknowledged)


def _wait(done, threads: list[threading.Thread], stop: StopFlag, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stop.is_set() and not done():
        if not all(t.is_alive() for t in threads):
            log.error("a pipeline stage died; stopping")
            return
        time.sleep(0.05)
