"""The loop every stream stage runs: poll a micro-batch → validate (failures to the dead-letter topic) →
process → deliver the outputs and commit the input offsets. Delivery is exactly-once where the broker has
transactions (outputs and offsets in one transaction, read by read_committed consumers) and at-least-once
otherwise (send → flush until acknowledged → commit). Nothing is committed past a failure: an unavailable
broker or state store is retried with backoff, and on a stop signal the current batch is finished and
committed before the stage returns.

Delivery overlaps the next batch's compute: a batch's outputs are sent (in exactly-once mode, its
transaction is committed on a background thread) and the stage polls and processes the next batch while
the broker acknowledges. Before the next batch is sent, the previous one is settled — acknowledged, then its
offsets committed as they stood when it was sent (at-least-once), or its transaction's outcome awaited. A
batch that fails to settle is handled as before (sent again, or the consumer rewound to the committed
offsets), and then the batch computed meanwhile is dropped unsent, to be read again: at most one batch is
ever in flight, and no offset is committed past a batch whose outputs the broker has not taken."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from dimee.common.errors import Rebalanced, ServiceUnavailable
from dimee.streaming.config import Settings
from dimee.streaming.health import HEALTH
from dimee.streaming.messages import DeadLetter, Message, MessageError, envelope, parse
from dimee.streaming.metrics import BATCH, BATCH_SIZE, COMMITTED, DEAD, IN, LAG, OUT, PROCESS, dead_letter_reason
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


POLL_STUCK_S = 60.0  # a poll asks for at most a second of waiting: one not back after this never will be
REJOIN_S = 45.0  # a consumer not in its group this long is replaced (a rebalance takes seconds)


@dataclass(frozen=True)
class BatchLimits:
    max_batch: int = 32
    max_wait_s: float = 0.05  # how long a partial batch waits for more records
    poll_timeout_s: float = 0.5  # also how soon an idle stage notices a stop
    max_poll_interval_s: float = 300.0
    # batches computed while the broker takes the one in flight, then sent together (one transaction): under
    # load a stage commits less often instead of waiting for each commit
    max_queued_batches: int = 8


@dataclass
class InFlight:
    """Computed batches, and once sent, their outputs on their way to the broker (settled before the next
    ones are sent)."""

    messages: list[Message]
    outputs: list[Output]
    mark: object  # once sent: the consumer's offsets right after these batches (Consumer.mark)
    started: float
    records: int  # input records, dead-lettered ones included
    resend: bool = False  # at-least-once: a send failed, so all are sent again when settling
    commit: Future | None = None  # exactly-once: the transaction's commit, running beside the next batch


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
        self.producer: Producer | None = None
        self._retired: Producer | None = None  # a failed producer its replacement takes over from
        self.exactly_once = False
        self._transactional_id: str | None = None
        self.processed = 0
        self.dead_letters = 0
        self.in_flight: InFlight | None = None
        self._unjoined_since: float | None = None
        self.computed: list[InFlight] = []  # batches computed while the broker took the one in flight
        self._sending: InFlight | None = None  # the batches `_deliver` is about to send
        self._committer: ThreadPoolExecutor | None = None
        HEALTH.expect(self.name, "loading its model")

    @abstractmethod
    def process(self, batch: list[tuple[Record, Message]]) -> list[Output]:
        """Outputs for a batch of valid messages; may raise ServiceUnavailable (then retried)."""

    def open(self) -> None:
        settings, transport = self.context.settings, self.transport
        self.exactly_once = settings.exactly_once(transport.supports_transactions)
        # A stable id per stage and instance: a restarted (or duplicated) instance fences its predecessor.
        self._transactional_id = f"{self.group_id}.{self.context.instance(self.name)}" if self.exactly_once else None
        log.info("delivery", stage=self.name, guarantee="exactly-once" if self.exactly_once else "at-least-once",
                 transactional_id=self._transactional_id)
        topics = sorted({*self.in_topics, self.topics.dead_letter})
        retry(lambda: transport.ensure_topics(topics, settings.partitions, settings.replication_factor), "broker",
              self.stop)
        self._committer = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-commit")
        # Producer, then consumer, one after the other: opened at once (the producer's transactional init
        # beside the consumer's group join, ~0.5-1 s sooner ready), kafka-python 3.0.12's consumer was once
        # seen stuck for good looking for its group coordinator, spinning a core (make bench, 2026-11-27).
        self.producer = retry(lambda: transport.producer(self._transactional_id), "broker", self.stop)
        # read_committed wherever the broker has transactions: never see an aborted batch's outputs.
        self.consumer = retry(lambda: transport.consumer(self.in_topics, self.group_id, self.limits.max_poll_interval_s,
                                                         read_committed=transport.supports_transactions),
                              "broker", self.stop)
        threading.Thread(target=self._watch_polls, name=f"{self.name}-poll-watchdog", daemon=True).start()

    def _rejoin_if_lost(self) -> None:
        """A consumer that has not been a settled member of its group for REJOIN_S is replaced. kafka-python
        3.0.12's consumer was seen looking for its group coordinator for good (every poll returning empty), with
        the cluster healthy: a new client joins in seconds. Whatever was polled and not sent is dropped, to be
        read again from the committed offsets."""
        assert self.consumer is not None
        if self.consumer.joined():
            self._unjoined_since = None
            return
        now = time.monotonic()
        if self._unjoined_since is None:
            self._unjoined_since = now
        if now - self._unjoined_since < REJOIN_S:
            return
        log.warning("the consumer did not rejoin its group; replacing it", stage=self.name,
                    waited_s=round(now - self._unjoined_since))
        self.settle()
        self.computed = []
        lost = self.consumer
        threading.Thread(target=lost.close, name=f"{self.name}-close-lost", daemon=True).start()  # may hang too
        self.consumer = retry(lambda: self.transport.consumer(
            self.in_topics, self.group_id, self.limits.max_poll_interval_s,
            read_committed=self.transport.supports_transactions), "broker", self.stop)
        self._unjoined_since = None

    def _watch_polls(self) -> None:
        """kafka-python 3.0.12's consumer was seen (make bench, 2026-11-27: about one run in ten of five roles)
        never returning from a poll, whatever its timeout: its IO thread stopped running the poll's task.
        Nothing in the process can free it, so the role exits (status 70) for its supervisor to restart it
        (`dimee up`, a container's restart policy), and the restarted role reads on from the committed offsets:
        nothing is lost. An outage is not this: a poll then returns or raises within its timeout."""
        while not self.stop.is_set():
            self.stop.wait(5.0)
            since = getattr(self.consumer, "polling_since", None)
            if since is not None and time.monotonic() - since > POLL_STUCK_S:
                log.error("the Kafka client stopped answering; exiting to be restarted", stage=self.name,
                          stuck_s=round(time.monotonic() - since))
                logging.shutdown()
                os._exit(70)

    def close(self) -> None:
        if self._committer is not None:
            self._committer.shutdown(wait=True)
        if self.consumer is not None:
            self.consumer.close()
        if self.producer is not None:
            self.producer.close()

    def collect(self) -> list[Record]:
        """A micro-batch: up to max_batch records, waiting at most max_wait_s after the first arrived. A broker
        outage before the first record is waited out; after it, the records in hand are the batch."""
        consumer = self.consumer
        assert consumer is not None
        records = retry(lambda: consumer.poll(self.limits.max_batch, self.limits.poll_timeout_s), "broker", self.stop)
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
        valid, outputs = [], []
        context = self.parse_context()
        for record in records:
            try:
                valid.append((record, parse(self.message_type, record.value, context, key=record.key)))
            except MessageError as exc:
                outputs.append(self.dead_letter(record, str(exc)))
        computing = time.perf_counter()
        valid, produced = self._process_isolated(valid)
        PROCESS.labels(self.name).inc(time.perf_counter() - computing)
        valid, produced = self._within_size_limit(valid, produced)
        outputs.extend(produced)
        self.computed.append(InFlight([message for _, message in valid], outputs, None, started, len(records)))
        if self._broker_busy() and len(self.computed) < self.limits.max_queued_batches:
            return  # the broker is still taking the batch in flight: compute on, send these together after it
        self.send_computed()

    def _broker_busy(self) -> bool:
        """Whether the batch in flight still waits for the broker (asked without waiting)."""
        flight = self.in_flight
        if flight is None:
            return False
        if flight.commit is not None:
            return not flight.commit.done()
        assert self.producer is not None
        return not self.producer.acknowledged()

    def send_computed(self) -> None:
        """Settle the batch in flight, then send every batch computed meanwhile as one (one transaction)."""
        if not self.computed:
            return
        batches, self.computed = self.computed, []
        records = sum(b.records for b in batches)
        if not self.settle():  # the batch before failed to settle and the consumer went back: read these again
            log.warning("batches dropped unsent; they will be read again", stage=self.name, records=records)
            return
        assert self.consumer is not None
        outputs = [out for b in batches for out in b.outputs]
        self._sending = InFlight([m for b in batches for m in b.messages], outputs, self.consumer.mark(),
                                 batches[0].started, records)
        try:
            retry(lambda: self._deliver(outputs), "broker", self.stop)
        except Rebalanced as exc:  # aborted: the records are read again by whoever owns their partitions now
            log.warning("batch aborted; it will be read again", stage=self.name, records=records, error=str(exc))

    def settle(self) -> bool:
        """Wait for the batch in flight: acknowledged and committed. False if it could not be and the consumer
        went back to the committed offsets (what was polled since is read again)."""
        flight, self.in_flight = self.in_flight, None
        if flight is None:
            return True
        try:
            if flight.commit is not None:
                flight.commit.result()
            else:
                retry(lambda: self._acknowledge_and_commit(flight), "broker", self.stop)
        except Rebalanced as exc:
            retry(self._rewind, "broker", self.stop)
            log.warning("batch aborted; it will be read again", stage=self.name, error=str(exc))
            return False
        except ServiceUnavailable as exc:
            if self.stop.is_set() and flight.commit is None:
                raise
            # a failed transaction may still have committed (its answer lost): never send it again; read
            # again from the committed offsets whatever did not commit
            retry(self._renew_producer_and_rewind, "broker", self.stop)
            log.warning("transaction failed; its batch is read again if it did not commit", stage=self.name,
                        error=str(exc))
            return False
        self.processed += len(flight.messages)
        COMMITTED.labels(self.name).inc(flight.records)
        self.context.events.committed(self.name, flight.messages, flight.outputs)
        for out in flight.outputs:
            OUT.labels(self.name, out.topic).inc()
        BATCH.labels(self.name).observe(time.perf_counter() - flight.started)
        return True

    def _acknowledge_and_commit(self, flight: InFlight) -> None:
        """At-least-once: every output acknowledged (sent again after a failure: downstream dedupes by id),
        then the offsets as they stood after this batch."""
        assert self.producer is not None and self.consumer is not None
        if flight.resend:
            self._send_all(flight.outputs)
        flight.resend = True  # if the flush below fails, the next attempt sends them all again
        self.producer.flush()
        self.consumer.commit(flight.mark)

    def _rewind(self) -> None:
        assert self.consumer is not None
        self.consumer.rewind()

    def _process_isolated(self, valid: list[tuple[Record, Message]]) -> tuple[list, list[Output]]:
        """process(), and if it fails for another reason than a service, each record on its own: the ones
        that fail again are dead-lettered with the error (a per-sample model error, an undecodable state)."""
        if not valid:
            return valid, []
        try:
            return valid, retry(lambda: self.process(valid), "process", self.stop)
        except ServiceUnavailable:
            raise
        except Exception as exc:
            if len(valid) == 1:
                log.error("record failed", stage=self.name, offset=valid[0][0].offset, error=repr(exc))
                return [], [self.dead_letter(valid[0][0], f"processing failed: {type(exc).__name__}: {exc}")]
        kept, outputs = [], []
        for pair in valid:
            ok, produced = self._process_isolated([pair])
            kept += ok
            outputs += produced
        return kept, outputs

    def _within_size_limit(self, valid: list[tuple[Record, Message]],
                           outputs: list[Output]) -> tuple[list, list[Output]]:
        """An output the broker would refuse for its size dead-letters the record that made it (and its other
        outputs), instead of being retried for ever."""
        limit = self.context.settings.max_message_bytes
        too_big = {out.key for out in outputs if len(out.value) > limit and out.topic != self.topics.dead_letter}
        if not too_big:
            return valid, outputs
        kept = [out for out in outputs if out.key not in too_big or out.topic == self.topics.dead_letter]
        for record, _ in valid:
            if record.key in too_big:
                kept.append(self.dead_letter(record, f"an output of this record exceeds the {limit}-byte limit"))
        return [(r, m) for r, m in valid if r.key not in too_big], kept

    def _deliver(self, outputs: list[Output]) -> None:
        """Send a batch's outputs and leave it in flight: in one transaction whose commit (with the input
        offsets) runs on the committer thread (exactly-once), or sent for the broker to acknowledge while the
        next batch is computed (at-least-once)."""
        flight = self._sending
        assert flight is not None and self.producer is not None
        if self.exactly_once:
            self._deliver_in_transaction(flight)
        else:
            try:
                self._send_all(outputs)
            except ServiceUnavailable:
                flight.resend = True  # settling sends them all again, with retries
        self.in_flight = flight

    def _send_all(self, outputs: list[Output]) -> None:
        assert self.producer is not None
        for out in outputs:
            self.producer.send(out.topic, out.key, out.value, out.timestamp_s, out.headers)

    def _deliver_in_transaction(self, flight: InFlight) -> None:
        """A failed transaction may still have committed (a commit whose answer never came): the batch is
        never sent again. The producer is replaced (its successor, same transactional id, fences it and waits
        for or aborts what it left open), the consumer goes back to the committed offsets, and the batch is
        read again only if its transaction did not commit."""
        producer, consumer, committer = self.producer, self.consumer, self._committer
        assert producer is not None and consumer is not None and committer is not None
        try:
            producer.begin()  # type: ignore[attr-defined]
            self._send_all(flight.outputs)
        except ServiceUnavailable as exc:
            retry(self._renew_producer_and_rewind, "broker", self.stop)
            raise Rebalanced(f"transaction failed ({exc}); the batch is read again from the committed offsets") \
                from exc
        flight.commit = committer.submit(producer.commit, consumer, flight.mark)  # type: ignore[attr-defined]

    def _renew_producer_and_rewind(self) -> None:
        """A new producer that takes over the transactional id from the failed one (never a plain init, which
        would fence a newer instance if the failure was a fencing nobody reported); Fenced if one has it."""
        if self.producer is not None:
            self._retired = self.producer  # kept until replaced: a retry must take over from it too
            self.producer.close()
            self.producer = None
        self.producer = self.transport.producer(self._transactional_id, replacing=self._retired)
        self._retired = None
        assert self.consumer is not None
        self.consumer.rewind()

    def run(self, idle_exit_s: float | None = None) -> None:
        """Until stopped (or idle for idle_exit_s, used by batch jobs and tests). Stopped in the middle of an
        outage, it returns normally: nothing past the outage was committed, so nothing is lost."""
        try:
            self.open()
            HEALTH.expect(self.name, "joining its consumer group")
            log.info("stage started", stage=self.name, topics=self.in_topics, group=self.group_id)
            self._loop(idle_exit_s)
            self.send_computed()  # the last batches: committed before the stage returns
            self.settle()
        except ServiceUnavailable as exc:
            if not self.stop.is_set():
                raise
            log.warning("stopped during an outage; uncommitted records will be read again", stage=self.name,
                        error=str(exc))
        finally:
            self.close()
            log.info("stage stopped", stage=self.name, processed=self.processed, dead_letters=self.dead_letters,
                     signal=self.stop.reason)

    def _report_lag(self) -> None:
        if self.consumer is not None:
            for (topic, partition), behind in self.consumer.lag().items():
                LAG.labels(self.group_id, topic, str(partition)).set(behind)

    def _loop(self, idle_exit_s: float | None) -> None:
        last_record = time.monotonic()
        while not self.stop.is_set():
            records = self.collect()
            self._rejoin_if_lost()
            self._report_lag()
            HEALTH.beat(self.name)
            HEALTH.ready_stage(self.name)  # a poll came back: the group is joined
            if records:
                self.handle(records)
                last_record = time.monotonic()
            elif self.computed:
                self.send_computed()  # nothing else to do: send what waited for the broker
            elif self.in_flight is not None:
                self.settle()  # and commit the last batch now rather than with the next one
            elif idle_exit_s is not None and time.monotonic() - last_record > idle_exit_s:
                return
