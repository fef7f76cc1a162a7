"""How `dimee produce` gets its sends acknowledged, within a bound: through transactions where the broker has
them, else by waiting for the client (docs/operations.md, "How `dimee produce` rides out an outage").

Transactional (Kafka 0.11+, the embedded broker): every chunk is one transaction. A chunk that fails (a send
the client still holds after a flush, an outage, a refused record) is sent again through a fresh client with
the same transactional id, whose init fences the old client and aborts what it left open: a read_committed
reader (the router) sees each chunk once, however often it was tried. kafka-python may never complete the
sends of a client that lived through a hard outage; a fresh client delivers them.

Plain (legacy brokers): a send the client still holds is waited for, never sent again (it may yet be
delivered); one the broker failed is sent again.

Either way a chunk not acknowledged `give_up_s` after it was first sent is given up: what it held is reported
as not acknowledged, and nothing after it is sent."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dimee.common.errors import DeliveryError, DimeeError, Refused, ServiceUnavailable, Unanswered
from dimee.streaming.runtime import StopFlag, log, retry

if TYPE_CHECKING:
    from dimee.streaming.transport.base import Producer, TransactionalProducer, Transport

FLUSH_S = 30.0  # the longest one flush waits for acknowledgements before the client is judged stuck
# How long a commit Kafka did not answer in its 20 s is waited for beyond them: kafka-python retries it on the new
# coordinator once a killed broker is back, but may never complete it (the failover test under load waited 300 s
# for nothing, and sent nothing after it); past this the chunk is named and the run goes on with a fresh client.
LATE_ANSWER_S = 60.0


@dataclass
class ProduceResult:
    """What the broker acknowledged, what it refused for good (with the reason), and what it did not
    acknowledge (given up after an outage, or stopped during one), of what was sent."""

    acknowledged: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (sample id, or #row for raw records; reason)
    unacknowledged: list[str] = field(default_factory=list)  # sample ids (or #row): never acknowledged
    gave_up: str | None = None  # why sending ended before the source did, if it did

    @property
    def complete(self) -> bool:
        return not self.refused and not self.unacknowledged and self.gave_up is None

    def summary(self, topic: str, named: int = 10) -> str:
        """One line: how many were acknowledged, and which (the first `named`) and how many were not."""
        line = f"produced {self.acknowledged} samples to {topic} (acknowledged by the broker)"
        if self.unacknowledged:
            more = len(self.unacknowledged) - named
            ids = ", ".join(self.unacknowledged[:named]) + (f" and {more} more" if more > 0 else "")
            line += f"; {len(self.unacknowledged)} not acknowledged: {ids}"
        if self.refused:
            line += f"; {len(self.refused)} refused by the broker"
        if self.gave_up:
            line += f"; gave up ({self.gave_up}), sending nothing after them"
        return line


@dataclass(frozen=True)
class Pending:
    row: int
    key: bytes | None
    value: bytes
    timestamp: float | None

    @property
    def label(self) -> str:
        return self.key.decode("utf-8", "replace") if self.key else f"#{self.row}"


class GaveUp(Exception):
    """The bound passed (or a stop came) before a chunk was acknowledged."""


class Bounded(StopFlag):
    """`stop`, or `seconds` passed: what `retry` and every wait of one chunk stop at."""

    def __init__(self, stop: StopFlag, seconds: float) -> None:
        super().__init__()
        self.stop, self.until = stop, time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.until - time.monotonic())

    def is_set(self) -> bool:
        return self.stop.is_set() or self.left() == 0.0

    def wait(self, seconds: float) -> bool:
        self.stop.wait(min(seconds, self.left()))
        return self.is_set()


def _commit_sends(producer: TransactionalProducer, bound: Bounded, samples: int) -> None:
    """Commit a transaction of sends alone. Raises DeliveryError if it was aborted; a commit Kafka does not
    answer in time (an outage) is waited for LATE_ANSWER_S more (within the bound), as it may yet take effect;
    still unanswered then, _Unknown (its sends may be in the topic, so they are never sent again)."""
    try:
        producer.commit(None)
    except Unanswered as unanswered:
        late = Bounded(bound, LATE_ANSWER_S)
        log.warning("a transaction's commit was not answered yet; waiting for it", samples=samples,
                    error=str(unanswered), waits_at_most_s=round(late.left(), 1))
        while not late.is_set():
            try:
                unanswered.wait(min(5.0, late.left()))
                return
            except Unanswered as still:
                unanswered = still
        raise _Unknown(str(unanswered)) from unanswered


class _Unknown(DimeeError):
    """A commit whose answer never came: its sends may be in the topic, so they are never sent again."""


class Publisher:
    """Sends chunks and sees each acknowledged (or refused, or given up); `result` says which."""

    def __init__(self, transport: Transport, topic: str, stop: StopFlag, give_up_s: float) -> None:
        self.transport, self.topic, self.stop, self.give_up_s = transport, topic, stop, give_up_s
        self.result = ProduceResult()

    def deliver(self, chunk: list[Pending]) -> None:
        """Raises GaveUp (with `result` saying what was not acknowledged) if the bound or a stop came first."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _give_up(self, items: list[Pending]) -> GaveUp:
        self.result.unacknowledged += [item.label for item in items]
        self.result.gave_up = "a stop was asked for" if self.stop.is_set() else \
            f"the broker did not acknowledge a chunk in {self.give_up_s:g} s"
        return GaveUp(self.result.gave_up)


def publisher(transport: Transport, topic: str, stop: StopFlag, give_up_s: float) -> Publisher:
    kind = TransactionalPublisher if transport.supports_transactions else PlainPublisher
    return kind(transport, topic, stop, give_up_s)


class TransactionalPublisher(Publisher):
    def __init__(self, transport: Transport, topic: str, stop: StopFlag, give_up_s: float) -> None:
        from dimee.producers.sources import run_token

        super().__init__(transport, topic, stop, give_up_s)
        self.transactional_id = f"{topic}.producer.{run_token()}"  # this run's alone: it fences no other
        self.producer: TransactionalProducer | None = None

    def deliver(self, chunk: list[Pending]) -> None:
        bound, delay = Bounded(self.stop, self.give_up_s), 0.2
        batches = [chunk]
        while batches:
            batch = batches.pop(0)
            try:
                batches = self._attempt(batch, bound) + batches
                delay = 0.2
            except _Unknown as exc:
                log.warning("a transaction's commit was not answered in time; its sends are not sent again",
                            samples=len(batch), error=str(exc))
                self.result.unacknowledged += [item.label for item in batch]
                self._drop_producer()  # the rest go through a fresh client, whose init settles this transaction
                if self.stop.is_set():
                    raise self._give_up([item for b in batches for item in b]) from exc
            except ServiceUnavailable as exc:  # DeliveryError too: sent again, through a fresh client
                self._drop_producer()
                batches.insert(0, batch)
                log.warning("the broker did not acknowledge a transaction; sending it again through a new client",
                            samples=len(batch), error=str(exc), retry_in_s=round(delay, 2))
                if bound.wait(delay):
                    raise self._give_up([item for b in batches for item in b]) from exc
                delay = min(2 * delay, 5.0)

    def _attempt(self, batch: list[Pending], bound: Bounded) -> list[list[Pending]]:
        """One transaction of `batch`: [] once committed; after a refusal, the batches to try instead (the rest
        without a record refused alone; each of several refused together alone, as the broker refuses a whole
        batch for one bad record in it)."""
        if self.producer is None:
            self.producer = retry(lambda: self.transport.producer(self.transactional_id), "broker", bound)
        producer = self.producer
        producer.begin()
        sent = []
        for item in batch:
            try:
                producer.send(self.topic, item.key, item.value, item.timestamp)
                sent.append(item)
            except Refused as exc:
                self.result.refused.append((item.label, str(exc)))
        batch[:] = sent  # a try of this batch again (a failed commit) sends only these: the refused are reported once
        try:
            producer.flush(timeout_s=max(1.0, min(FLUSH_S, bound.left())))
        except DeliveryError as exc:
            permanent = {i for i, error in exc.failures if not getattr(error, "retriable", True)}
            if not permanent:
                raise
            self._drop_producer()
            if len(permanent) == 1:
                (index,) = permanent
                error = dict(exc.failures)[index]
                self.result.refused.append((sent[index].label, f"{type(error).__name__}: {error}"))
                rest = [item for i, item in enumerate(sent) if i != index]
                return [rest] if rest else []
            return [[item] for item in sent]  # which of them the broker refuses shows when each is alone
        _commit_sends(producer, bound, len(sent))
        self.result.acknowledged += len(sent)
        return []

    def _drop_producer(self) -> None:
        """Closed: its successor (same id) fences it and aborts what it left open, so nothing it still holds
        ever reaches a read_committed reader."""
        producer, self.producer = self.producer, None
        if producer is not None:
            with contextlib.suppress(DimeeError):
                producer.close()

    def close(self) -> None:
        self._drop_producer()


class PlainPublisher(Publisher):
    """Sends, then makes sure every send is acknowledged: a send the broker failed is sent again, one the
    client still holds is waited for (never sent again: it may yet be delivered), one the broker refuses for
    good (too large, invalid) is reported, and nothing is counted that was not acknowledged."""

    def __init__(self, transport: Transport, topic: str, stop: StopFlag, give_up_s: float) -> None:
        super().__init__(transport, topic, stop, give_up_s)
        self.producer: Producer = retry(transport.producer, "broker", Bounded(stop, give_up_s))
        self.stale = False  # an idempotent producer stays out of step after a refused batch
        self.unacked: list[Pending] = []  # sent since the last flush
        self.unsent: list[Pending] = []  # to be sent (again)
        self.suspect: list[Pending] = []  # refused together with others: to be tried alone

    def deliver(self, chunk: list[Pending]) -> None:
        bound = Bounded(self.stop, self.give_up_s)
        for item in chunk:
            self._send(item, bound)
        delay = 0.2
        while self.unacked or self.unsent or self.suspect:
            self._flush()
            self._try_suspects_alone(bound)
            if self.unsent or self.unacked:
                log.warning("broker did not acknowledge; waiting for it", held_by_the_client=len(self.unacked),
                            to_send_again=len(self.unsent), retry_in_s=round(delay, 2))
                if bound.wait(delay):
                    items, self.unsent, self.unacked = self.unsent + self.unacked, [], []
                    raise self._give_up(items)
                delay = min(2 * delay, 5.0)
                items, self.unsent = self.unsent, []
                for item in items:
                    self._send(item, bound)

    def _send(self, item: Pending, bound: Bounded) -> None:
        if self.stale:
            self.producer.close()
            self.producer = retry(self.transport.producer, "broker", bound)
            self.stale = False
        try:
            self.producer.send(self.topic, item.key, item.value, item.timestamp)
            self.unacked.append(item)
        except Refused as exc:
            self.result.refused.append((item.label, str(exc)))
        except ServiceUnavailable:
            self.unsent.append(item)

    def _flush(self) -> None:
        try:
            self.producer.flush()
            self.result.acknowledged += len(self.unacked)
            self.unacked = []
        except DeliveryError as exc:
            self._sort_failures(exc)

    def _sort_failures(self, exc: DeliveryError) -> None:
        """Acknowledged sends are counted, failed ones are sent again unless the error is permanent. The
        broker refuses a whole batch for one bad record in it (e.g. one too large), so records refused
        together are each tried alone before any is reported."""
        held = set(exc.held)  # the client may still deliver these: waited for, never sent again
        known = exc.failures or exc.held
        failed = dict(exc.failures) if known else dict.fromkeys(range(len(self.unacked)))
        self.result.acknowledged += len(self.unacked) - len(failed) - len(held)
        permanent = [i for i, error in failed.items() if error is not None and not getattr(error, "retriable", True)]
        self.stale = self.stale or bool(permanent)
        for index, error in failed.items():
            item = self.unacked[index]
            if index not in permanent:
                self.unsent.append(item)
            elif len(permanent) > 1:
                self.suspect.append(item)
            else:
                self.result.refused.append((item.label, f"{type(error).__name__}: {error}"))
        self.unacked = [item for index, item in enumerate(self.unacked) if index in held]

    def _try_suspects_alone(self, bound: Bounded) -> None:
        suspects, self.suspect = self.suspect, []
        for item in suspects:
            self._send(item, bound)
            self._flush()  # a single record: its own verdict

    def close(self) -> None:
        self.producer.close()
