"""How a stage's batches reach the broker, their input offsets committed only once the broker has their
outputs: `ExactlyOnce` where the broker has transactions (outputs and offsets in one transaction, read by
read_committed consumers), `AtLeastOnce` otherwise (send → flush until acknowledged → commit), behind one
interface, `Delivery`. The stage picks one by its guarantee and hands it each computed batch.

Delivery overlaps the next batch's compute: a batch's outputs are sent (in exactly-once mode, its
transaction is committed on a background thread) and the stage polls and processes the next batch while
the broker acknowledges. Before the next batch is sent, the previous one is settled — acknowledged, then its
offsets committed as they stood when it was sent (at-least-once), or its transaction's outcome awaited. A
batch that fails to settle is handled as before (sent again, or the consumer rewound to the committed
offsets), and then the batch computed meanwhile is dropped unsent, to be read again: at most one batch is
ever in flight, and no offset is committed past a batch whose outputs the broker has not taken."""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dimee.common.errors import Rebalanced, ServiceUnavailable
from dimee.streaming.messages import Message
from dimee.streaming.metrics import BATCH, COMMITTED, OUT
from dimee.streaming.runtime import log, retry
from dimee.streaming.transport.base import Consumer, Producer, TransactionalProducer

if TYPE_CHECKING:
    from dimee.streaming.stage import Output, StageContext


SETTLED_CHECK_S = 0.01  # with batches kept back, how often the stage asks whether the one in flight settled


@dataclass
class InFlight:
    """Computed batches, and once sent, their outputs on their way to the broker (settled before the next
    ones are sent)."""

    messages: list[Message]
    outputs: list[Output]
    mark: object  # once sent: the consumer's offsets right after these batches (Consumer.mark)
    started: float
    records: int  # input records, dead-lettered ones included
    # per input partition, the offset after the last of these records: what their transaction commits
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    resend: bool = False  # at-least-once: a send failed, so all are sent again when settling
    commit: Future | None = None  # exactly-once: the transaction's commit, running beside the next batch


class Delivery(ABC):
    """Sends a stage's batches and commits their offsets after them; `deliver` puts a group of batches' outputs
    in flight."""

    guarantee: str
    transactional_id: str | None = None

    def __init__(self, stage: str, group_id: str, context: StageContext) -> None:
        self.stage, self.group_id = stage, group_id  # the group whose offsets it commits
        self.transport, self.stop, self.events = context.transport, context.stop, context.events
        self.max_queued = context.limits.max_queued_batches
        self.commit_interval = context.limits.commit_interval_s
        self.last_sent = -math.inf  # when the batches in flight were sent (monotonic)
        self.producer: Producer | None = None
        self.consumer: Consumer | None = None  # the stage's (replaced with it): marked, committed, rewound here
        self.computed: list[InFlight] = []  # batches computed while the broker took the one in flight
        self.sending: InFlight | None = None  # the batches `deliver` is about to send
        self.in_flight: InFlight | None = None
        self.processed = 0  # messages in committed batches

    @abstractmethod
    def open(self, topics: list[str]) -> None:
        """Make the producer, told of the topics it will send to (`Producer.expect`)."""

    @abstractmethod
    def deliver(self, outputs: list[Output]) -> None:
        """Send the outputs of `sending` and leave it in flight."""

    @abstractmethod
    def _busy(self, flight: InFlight) -> bool:
        """Whether the batch in flight still waits for the broker (asked without waiting)."""

    @abstractmethod
    def _complete(self, flight: InFlight) -> None:
        """Wait until the batch in flight is acknowledged and committed; Rebalanced or ServiceUnavailable if
        it could not be."""

    @abstractmethod
    def _failed(self, exc: ServiceUnavailable, flight: InFlight) -> bool:
        """After `_complete` failed for want of the broker: rewind the consumer to the committed offsets, or
        raise. True if `flight` turns out to have committed after all (its answer was lost)."""

    def hand(self, batch: InFlight) -> None:
        """A computed batch: sent now with those computed before it, or, while the broker still takes the batch
        in flight or the commit interval has not passed, kept to be sent with the next ones (at most
        max_queued_batches)."""
        self.computed.append(batch)
        waiting = self._interval_left() > 0 or (self.in_flight is not None and self._busy(self.in_flight))
        if waiting and len(self.computed) < self.max_queued:
            return
        self._send_computed()

    def poll_wait(self, longest_s: float) -> float:
        """How long the stage may wait for new records: with batches kept back, only until they are due (the
        interval passed, or soon after, to see whether the broker took the batch in flight)."""
        if not self.computed:
            return longest_s
        return min(longest_s, max(self._interval_left(), SETTLED_CHECK_S))

    def catch_up(self) -> bool:
        """With no new records: send what waited for the broker (once the commit interval has passed), else
        commit the batch in flight now rather than with the next one. False if there was nothing to do."""
        if self.computed:
            self.stop.wait(max(0.0, self._interval_left()))
            self._send_computed()
        elif self.in_flight is not None:
            self._settle()
        else:
            return False
        return True

    def finish(self) -> None:
        """The last batches: committed before the stage returns."""
        self._send_computed()
        self._settle()

    def drop_unsent(self) -> None:
        """Settle the batch in flight and drop those computed since, to be read again from the committed
        offsets (the consumer is being replaced)."""
        self._settle()
        self.computed = []

    def _send_computed(self) -> None:
        """Settle the batch in flight, then send every batch computed meanwhile as one (one transaction)."""
        if not self.computed:
            return
        batches, self.computed = self.computed, []
        records = sum(b.records for b in batches)
        if not self._settle():  # the batch before failed to settle and the consumer went back: read these again
            log.warning("batches dropped unsent; they will be read again", stage=self.stage, records=records)
            return
        assert self.consumer is not None
        carried: dict[tuple[str, int], int] = {}
        for batch in batches:
            for partition, offset in batch.offsets.items():
                carried[partition] = max(offset, carried.get(partition, 0))
        try:
            mark = self.consumer.mark(carried)
        except Rebalanced as exc:  # polled before a rebalance, or not where this member stands: read again
            retry(self._rewind, "broker", self.stop)
            log.warning("batches dropped unsent; they will be read again", stage=self.stage, records=records,
                        error=str(exc))
            return
        outputs = [out for b in batches for out in b.outputs]
        self.sending = InFlight([m for b in batches for m in b.messages], outputs, mark, batches[0].started, records,
                                offsets=carried)
        self.last_sent = time.monotonic()
        try:
            retry(lambda: self.deliver(outputs), "broker", self.stop)
        except Rebalanced as exc:  # aborted: the records are read again by whoever owns their partitions now
            log.warning("batch aborted; it will be read again", stage=self.stage, records=records, error=str(exc))

    def _settle(self) -> bool:
        """Wait for the batch in flight: acknowledged and committed. False if it could not be and the consumer
        went back to the committed offsets (what was polled since is read again)."""
        flight, self.in_flight = self.in_flight, None
        if flight is None:
            return True
        try:
            self._complete(flight)
        except Rebalanced as exc:
            retry(self._rewind, "broker", self.stop)
            log.warning("batch aborted; it will be read again", stage=self.stage, error=str(exc))
            return False
        except ServiceUnavailable as exc:
            if self._failed(exc, flight):
                self._committed(flight)
            return False
        self._committed(flight)
        return True

    def _committed(self, flight: InFlight) -> None:
        self.processed += len(flight.messages)
        COMMITTED.labels(self.stage).inc(flight.records)
        self.events.committed(self.stage, flight.messages, flight.outputs)
        for out in flight.outputs:
            OUT.labels(self.stage, out.topic).inc()
        BATCH.labels(self.stage).observe(time.perf_counter() - flight.started)

    def _interval_left(self) -> float:
        return self.commit_interval - (time.monotonic() - self.last_sent)

    def close(self) -> None:
        """The consumer this delivery commits for, then the producer."""
        if self.consumer is not None:
            self.consumer.close()
        if self.producer is not None:
            self.producer.close()

    def _send_all(self, outputs: list[Output]) -> None:
        assert self.producer is not None
        for out in outputs:
            self.producer.send(out.topic, out.key, out.value, out.timestamp_s, out.headers)

    def _rewind(self) -> dict[tuple[str, int], int]:
        assert self.consumer is not None
        return self.consumer.rewind()


class AtLeastOnce(Delivery):
    """Sent, every output acknowledged (sent again after a failure: downstream dedupes by id), then the input
    offsets committed as they stood after the batch."""

    guarantee = "at-least-once"

    def open(self, topics: list[str]) -> None:
        self.producer = retry(lambda: self.transport.producer(), "broker", self.stop)
        self.producer.expect(topics)

    def deliver(self, outputs: list[Output]) -> None:
        flight = self.sending
        assert flight is not None and self.producer is not None
        try:
            self._send_all(outputs)
        except ServiceUnavailable:
            flight.resend = True  # settling sends them all again, with retries
        self.in_flight = flight

    def _busy(self, flight: InFlight) -> bool:
        assert self.producer is not None
        return not self.producer.acknowledged()

    def _complete(self, flight: InFlight) -> None:
        retry(lambda: self._acknowledge_and_commit(flight), "broker", self.stop)

    def _failed(self, exc: ServiceUnavailable, flight: InFlight) -> bool:
        raise exc  # only a stop ends the retries: the stage returns, nothing committed past the failure

    def _acknowledge_and_commit(self, flight: InFlight) -> None:
        assert self.producer is not None and self.consumer is not None
        if flight.resend:
            self._send_all(flight.outputs)
        flight.resend = True  # if the flush below fails, the next attempt sends them all again
        self.producer.flush()
        self.consumer.commit(flight.mark)


class ExactlyOnce(Delivery):
    """The outputs sent in a transaction whose commit, with the input offsets, runs on a committer thread
    while the next batch is computed. A failed transaction may still have committed (a commit whose answer
    never came): its batch is never sent again. The producer is replaced (its successor, same transactional
    id, fences it and waits for or aborts what it left open), the consumer goes back to the committed offsets,
    and the batch is read again only if its transaction did not commit."""

    guarantee = "exactly-once"

    def __init__(self, stage: str, group_id: str, context: StageContext) -> None:
        super().__init__(stage, group_id, context)
        # A stable id per stage and instance: a restarted (or duplicated) instance fences its predecessor.
        self.transactional_id: str = f"{group_id}.{context.instance(stage)}"
        self.producer: TransactionalProducer | None = None
        self._retired: TransactionalProducer | None = None  # a failed producer its replacement takes over from
        self._committer: ThreadPoolExecutor | None = None
        self._topics: list[str] = []  # those its producer sends to (Producer.expect)

    def open(self, topics: list[str]) -> None:
        self._committer = ThreadPoolExecutor(1, thread_name_prefix=f"{self.stage}-commit")
        self.producer = retry(lambda: self.transport.producer(self.transactional_id), "broker", self.stop)
        self.producer.expect(topics)
        self._topics = topics  # told to a replacement too

    def deliver(self, outputs: list[Output]) -> None:
        flight, producer, consumer, committer = self.sending, self.producer, self.consumer, self._committer
        assert flight is not None and producer is not None and consumer is not None and committer is not None
        try:
            producer.begin()
            self._send_all(flight.outputs)
        except ServiceUnavailable as exc:
            retry(self._renew_producer_and_rewind, "broker", self.stop)
            raise Rebalanced(f"transaction failed ({exc}); the batch is read again from the committed offsets") \
                from exc
        flight.commit = committer.submit(producer.commit, consumer, flight.mark)
        self.in_flight = flight

    def _busy(self, flight: InFlight) -> bool:
        assert flight.commit is not None
        return not flight.commit.done()

    def _complete(self, flight: InFlight) -> None:
        assert flight.commit is not None
        flight.commit.result()

    def _failed(self, exc: ServiceUnavailable, flight: InFlight) -> bool:
        # A failed transaction may still have committed (its answer lost): never send it again; read again from
        # the committed offsets whatever did not commit. The new producer's init settles it first (waits for a
        # commit under way, or aborts), so the committed offsets then say which: where they reach the end of
        # every partition the batch read, it committed, and is reported as committed (the in-process run's
        # view, the stage's counts), as it would have been had the answer come.
        committed = retry(self._renew_producer_and_rewind, "broker", self.stop)
        landed = bool(flight.offsets) and all(committed.get(partition, -1) >= offset
                                              for partition, offset in flight.offsets.items())
        log.warning("transaction failed; its batch is read again if it did not commit", stage=self.stage,
                    error=str(exc), committed_after_all=landed)
        return landed

    def _renew_producer_and_rewind(self) -> dict[tuple[str, int], int]:
        """A new producer that takes over the transactional id from the failed one (never a plain init, which
        would fence a newer instance if the failure was a fencing nobody reported); Fenced if one has it."""
        if self.producer is not None:
            self._retired = self.producer  # kept until replaced: a retry must take over from it too
            self.producer.close()
            self.producer = None
        self.producer = self.transport.producer(self.transactional_id, replacing=self._retired)
        self.producer.expect(self._topics)
        self._retired = None
        return self._rewind()

    def close(self) -> None:
        """A commit still running first: it may need the consumer."""
        if self._committer is not None:
            self._committer.shutdown(wait=True)
        super().close()
