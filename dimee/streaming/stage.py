"""The loop every stream stage runs: poll a micro-batch → validate (failures to the dead-letter topic) →
process → hand the outputs to the stage's delivery (dimee/streaming/delivery.py: exactly-once where the broker
has transactions, at-least-once otherwise), which commits the input offsets once the broker has the outputs.
Nothing is committed past a failure: an unavailable broker or state store is retried with backoff, and on a
stop signal the current batch is finished and committed before the stage returns. The stage drives the
broker only through the transport's interfaces (dimee/streaming/transport/base.py)."""

from __future__ import annotations

import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dimee.common.errors import ServiceUnavailable
from dimee.streaming.config import Settings, setting_default
from dimee.streaming.delivery import AtLeastOnce, Delivery, ExactlyOnce, InFlight
from dimee.streaming.health import HEALTH
from dimee.streaming.messages import DeadLetter, Message, MessageError, envelope, parse
from dimee.streaming.metrics import BATCH_SIZE, DEAD, IN, LAG, PROCESS, dead_letter_reason, start_stage
from dimee.streaming.runtime import StopFlag, log, retry
from dimee.streaming.transport.base import Consumer, Producer, Record, Topics, Transport


@dataclass(frozen=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes
    timestamp_s: float | None = None  # the record's timestamp, where the broker keeps one
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def of(cls, topic: str, message: Message) -> Output:
        """A message keyed by its sample id, with its timing and trace fields as timestamp and headers."""
        timestamp, headers = envelope(message)
        return cls(topic, message.id.encode(), message.to_bytes(), timestamp, headers)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class BatchLimits:
    """A stage's batch limits. Their defaults are Settings' (the one home of each), so that a stage built
    in-process waits as long as a deployed role; the roles' commands take them from the environment (DIMEE_*)."""

    max_batch: int = setting_default("max_batch")
    max_wait_s: float = setting_default("max_wait_ms") / 1000.0  # how long a partial batch waits for more records
    poll_timeout_s: float = setting_default("poll_timeout_s")  # also how soon an idle stage notices a stop
    max_poll_interval_s: float = setting_default("max_poll_interval_s")
    # batches computed while the broker takes the one in flight, then sent together (one transaction): under
    # load a stage commits less often instead of waiting for each commit
    max_queued_batches: int = setting_default("max_queued_batches")
    # the least time between two sends (transactions, under exactly-once), as Kafka Streams' commit.interval.ms:
    # batches computed sooner wait, up to max_queued_batches, whichever comes first; 0: as soon as the broker
    # has taken the previous one
    commit_interval_s: float = setting_default("commit_interval_ms") / 1000.0


class StageEvents(Protocol):
    """What a stage reports after each committed batch, for whoever composes stages (the in-process
    pipeline's collector; metrics could listen the same way)."""

    def committed(self, stage: str, messages: Sequence[Message], outputs: Sequence[Output]) -> None: ...

    def dead_lettered(self, stage: str, key: str | None) -> None: ...


class NoEvents:
    def committed(self, stage: str, messages: Sequence[Message], outputs: Sequence[Output]) -> None:
        pass

    def dead_lettered(self, stage: str, key: str | None) -> None:
        pass


@dataclass(frozen=True)
class StageContext:
    """Everything a stage shares with the other stages of its process."""

    transport: Transport
    topics: Topics
    settings: Settings = field(default_factory=Settings)
    stop: StopFlag = field(default_factory=StopFlag)
    limits: BatchLimits = field(default_factory=BatchLimits)
    events: StageEvents = field(default_factory=NoEvents)
    instance_id: str | None = None  # names this process's stages in their outputs; default ROLE-HOST-PID

    def instance(self, role: str) -> str:
        """ROLE-INSTANCE_ID: stable across restarts where an instance id is given (`dimee up` gives one)."""
        return f"{role}-{self.instance_id}" if self.instance_id else f"{role}-{socket.gethostname()}-{os.getpid()}"


class Stage(ABC):
    """Subclasses say what a valid message is and what outputs a batch of them makes."""

    name: str = "stage"
    message_type: type[Message]

    def __init__(self, context: StageContext, in_topics: list[str], group_id: str) -> None:
        self.context = context
        self.transport, self.topics = context.transport, context.topics
        self.stop, self.limits = context.stop, context.limits
        self.max_text_chars = context.settings.max_text_chars
        self.in_topics, self.group_id = in_topics, group_id
        self.consumer: Consumer | None = None
        # Until open() picks one by the guarantee: a delivery that has opened nothing and committed nothing.
        self.delivery: Delivery = AtLeastOnce(self.name, group_id, context)
        self.exactly_once = False
        self.dead_letters = 0
        start_stage(self.name)
        HEALTH.expect(self.name, "starting")  # a stage with a model says so while it loads it

    @abstractmethod
    def process(self, batch: list[tuple[Record, Message]]) -> list[Output]:
        """Outputs for a batch of valid messages; may raise ServiceUnavailable (then retried)."""

    @property
    def producer(self) -> Producer | None:
        return self.delivery.producer

    @property
    def processed(self) -> int:
        return self.delivery.processed

    def open(self) -> None:
        settings, transport = self.context.settings, self.transport
        HEALTH.expect(self.name, "waiting for the broker")  # until its topics exist and its clients are made
        self.exactly_once = settings.exactly_once(transport.supports_transactions)
        kind = ExactlyOnce if self.exactly_once else AtLeastOnce
        self.delivery = kind(self.name, self.group_id, self.context)
        log.info("delivery", stage=self.name, guarantee=self.delivery.guarantee,
                 transactional_id=self.delivery.transactional_id)
        # Every topic of the stream: a first send to a missing one would create it with the broker's defaults.
        retry(lambda: transport.ensure_topics(sorted({*self.in_topics, *self.topics.all()}), settings.partitions,
                                              settings.replication_factor), "broker", self.stop)
        self.delivery.open(self.topics.all())  # the producer, then the consumer: never both at once (operations.md)
        self._open_consumer()

    def _open_consumer(self) -> None:
        # read_committed wherever the broker has transactions: never see an aborted batch's outputs.
        self.consumer = self.delivery.consumer = retry(lambda: self.transport.consumer(
            self.in_topics, self.group_id, self.limits.max_poll_interval_s,
            read_committed=self.transport.supports_transactions), "broker", self.stop)
        self.consumer.guard(self.name, self.stop)

    def _tend_consumer(self) -> None:
        """After each poll: a consumer lost for good is replaced (what it polled and was not sent is read
        again), and the lag is reported."""
        assert self.consumer is not None
        if self.consumer.lost():
            self.delivery.drop_unsent()
            self.consumer.close()
            self._open_consumer()
        for (topic, partition), behind in self.consumer.lag().items():
            LAG.labels(self.group_id, topic, str(partition)).set(behind)

    def close(self) -> None:
        self.delivery.close()

    def collect(self) -> list[Record]:
        """A micro-batch: up to max_batch records, waiting at most max_wait_s after the first arrived. A broker
        outage before the first record is waited out; after it, the records in hand are the batch."""
        consumer = self.consumer
        assert consumer is not None
        wait_s = self.delivery.poll_wait(self.limits.poll_timeout_s)
        records = retry(lambda: consumer.poll(self.limits.max_batch, wait_s), "broker", self.stop)
        deadline = time.monotonic() + self.limits.max_wait_s
        while records and len(records) < self.limits.max_batch and (remaining := deadline - time.monotonic()) > 0:
            try:
                more = consumer.poll(self.limits.max_batch - len(records), remaining)
            except ServiceUnavailable:
                break
            if not more:
                break
            records.extend(more)
        return records

    def dead_letter(self, record: Record, reason: str) -> Output:
        self.dead_letters += 1
        self.context.events.dead_lettered(self.name, None if record.key is None else
                                          record.key.decode("utf-8", "replace"))
        DEAD.labels(self.name, dead_letter_reason(reason)).inc()
        letter = DeadLetter.for_record(self.name, record, reason)
        log.warning("dead letter", stage=self.name, topic=record.topic, offset=record.offset, error=reason)
        return Output(self.topics.dead_letter, record.key, letter.to_bytes())

    def parse_context(self) -> dict:
        """What validation needs beyond the message itself (limits; a role adds e.g. its model's classes)."""
        return {"max_text_chars": self.max_text_chars, "max_message_bytes": self.context.settings.max_message_bytes}

    def handle(self, records: list[Record]) -> None:
        """One micro-batch, under the rule that a failure tied to one record dead-letters that record with
        its reason and the batch goes on; only an unavailable service is retried."""
        started = time.perf_counter()
        IN.labels(self.name).inc(len(records))
        BATCH_SIZE.labels(self.name).observe(len(records))
        valid, outputs = validate(records, self.message_type, self.parse_context(), self.dead_letter)
        computing = time.perf_counter()
        valid, produced = process_isolated(valid, lambda batch: retry(lambda: self.process(batch), "process",
                                                                      self.stop), self.dead_letter, self.name)
        PROCESS.labels(self.name).inc(time.perf_counter() - computing)
        valid, produced = within_size_limit(valid, produced, self.context.settings.max_message_bytes,
                                            self.topics.dead_letter, self.dead_letter)
        outputs.extend(produced)
        offsets: dict[tuple[str, int], int] = {}
        for record in records:  # dead-lettered ones too: their offsets are committed with the batch's outputs
            partition = (record.topic, record.partition)
            offsets[partition] = max(record.offset + 1, offsets.get(partition, 0))
        self.delivery.hand(InFlight([message for _, message in valid], outputs, None, started, len(records),
                                    offsets=offsets))

    def run(self, idle_exit_s: float | None = None) -> None:
        """Until stopped (or idle for idle_exit_s, used by batch jobs and tests). Stopped in the middle of an
        outage, it returns normally: nothing past the outage was committed, so nothing is lost."""
        try:
            self.open()
            HEALTH.expect(self.name, "joining its consumer group")
            log.info("stage started", stage=self.name, topics=self.in_topics, group=self.group_id)
            self._loop(idle_exit_s)
            self.delivery.finish()  # the last batches: committed before the stage returns
        except ServiceUnavailable as exc:
            if not self.stop.is_set():
                raise
            log.warning("stopped during an outage; uncommitted records will be read again", stage=self.name,
                        error=str(exc))
        finally:
            self.close()
            log.info("stage stopped", stage=self.name, processed=self.processed, dead_letters=self.dead_letters,
                     signal=self.stop.reason)

    def _loop(self, idle_exit_s: float | None) -> None:
        last_record = time.monotonic()
        while not self.stop.is_set():
            records = self.collect()
            self._tend_consumer()
            HEALTH.beat(self.name)
            HEALTH.ready_stage(self.name)  # a poll came back: the group is joined
            if records:
                self.handle(records)
                last_record = time.monotonic()
            elif self.delivery.catch_up():
                continue  # sent what waited for the broker, or committed the batch in flight
            elif idle_exit_s is not None and time.monotonic() - last_record > idle_exit_s:
                return


DeadLettering = Callable[[Record, str], Output]  # Stage.dead_letter: counts, reports and makes the letter


def validate(records: list[Record], message_type: type[Message], context: dict,
             dead_letter: DeadLettering) -> tuple[list[tuple[Record, Message]], list[Output]]:
    """The records that parse as valid messages, and a dead letter for each of the others, with its reason."""
    valid, letters = [], []
    for record in records:
        try:
            valid.append((record, parse(message_type, record.value, context, key=record.key)))
        except MessageError as exc:
            letters.append(dead_letter(record, str(exc)))
    return valid, letters


def process_isolated(valid: list[tuple[Record, Message]], process: Callable[[list], list[Output]],
                     dead_letter: DeadLettering, stage: str) -> tuple[list, list[Output]]:
    """process(), and if it fails for another reason than a service, each record on its own: the ones that
    fail again are dead-lettered with the error (a per-sample model error, an undecodable state)."""
    if not valid:
        return valid, []
    try:
        return valid, process(valid)
    except ServiceUnavailable:
        raise
    except Exception as exc:
        if len(valid) == 1:
            log.error("record failed", stage=stage, offset=valid[0][0].offset, error=repr(exc))
            return [], [dead_letter(valid[0][0], f"processing failed: {type(exc).__name__}: {exc}")]
    kept, outputs = [], []
    for pair in valid:
        ok, produced = process_isolated([pair], process, dead_letter, stage)
        kept += ok
        outputs += produced
    return kept, outputs


def within_size_limit(valid: list[tuple[Record, Message]], outputs: list[Output], limit: int, dead_letter_topic: str,
                      dead_letter: DeadLettering) -> tuple[list[tuple[Record, Message]], list[Output]]:
    """An output the broker would refuse for its size dead-letters the record that made it (and its other
    outputs), instead of being retried for ever."""
    too_big = {out.key for out in outputs if len(out.value) > limit and out.topic != dead_letter_topic}
    if not too_big:
        return valid, outputs
    kept = [out for out in outputs if out.key not in too_big or out.topic == dead_letter_topic]
    for record, _ in valid:
        if record.key in too_big:
            kept.append(dead_letter(record, f"an output of this record exceeds the {limit}-byte limit"))
    return [(r, m) for r, m in valid if r.key not in too_big], kept
