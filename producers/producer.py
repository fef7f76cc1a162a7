"""Publishes samples to the samples topic, keyed by sample id, at a set rate."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from dimee.common.errors import DeliveryError, Refused, ServiceUnavailable
from dimee.streaming.messages import now
from dimee.streaming.runtime import StopFlag, log, retry
from dimee.streaming.transport.base import Producer, Topics, Transport


@dataclass(frozen=True)
class ProduceOptions:
    rate: float | None = None  # messages per second; None: as fast as possible
    count: int | None = None  # send at most this many
    stop: StopFlag = field(default_factory=StopFlag)
    flush_every: int = 500
    progress: bool = True
    total: int | None = None  # for the progress bar, when the source knows its length
    partitions: int = 3  # of the samples topic, if this producer creates it
    replication: int | None = None


@dataclass
class ProduceResult:
    """What the broker acknowledged, and what it refused for good (with the reason), of what was sent."""

    acknowledged: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (sample id, or #row for raw records; reason)
    unacknowledged: int = 0  # still pending when a stop came during an outage

    @property
    def complete(self) -> bool:
        return not self.refused and not self.unacknowledged


@dataclass(frozen=True)
class _Pending:
    row: int
    key: bytes | None
    value: bytes
    timestamp: float | None

    @property
    def label(self) -> str:
        return self.key.decode("utf-8", "replace") if self.key else f"#{self.row}"


def _encode(row: int, record: dict | bytes) -> _Pending:
    """Records are sent as given, so a malformed one reaches the router and its dead-letter topic, as it would
    from a real upstream; a dict gets its produced_at (also the record's timestamp, where it is a time)."""
    if not isinstance(record, dict):
        return _Pending(row, None, record, None)
    record = {**record, "produced_at": record.get("produced_at", now())}
    stamp = record["produced_at"]
    # never ahead of this host's clock: Kafka refuses a record timestamp over an hour ahead of its own
    timestamp = min(float(stamp), now()) if isinstance(stamp, int | float) and math.isfinite(stamp) else None
    return _Pending(row, str(record.get("id", "")).encode(), json.dumps(record).encode(), timestamp)


class _Publisher:
    """Sends, then makes sure every send is acknowledged: a send the broker failed is sent again, one the
    client still holds is waited for (never sent again: it may yet be delivered), one the broker refuses for
    good (too large, invalid) is reported, and nothing is counted that was not acknowledged."""

    def __init__(self, transport: Transport, topic: str, stop: StopFlag) -> None:
        self.transport, self.topic, self.stop = transport, topic, stop
        self.producer: Producer = retry(transport.producer, "broker", stop)
        self.stale = False  # an idempotent producer stays out of step after a refused batch
        self.unacked: list[_Pending] = []  # sent since the last flush
        self.unsent: list[_Pending] = []  # to be sent (again)
        self.suspect: list[_Pending] = []  # refused together with others: to be tried alone
        self.result = ProduceResult()

    def send(self, item: _Pending) -> None:
        if self.stale:
            self.producer.close()
            self.producer = retry(self.transport.producer, "broker", self.stop)
            self.stale = False
        try:
            self.producer.send(self.topic, item.key, item.value, item.timestamp)
            self.unacked.append(item)
        except Refused as exc:
            self.result.refused.append((item.label, str(exc)))
        except ServiceUnavailable:
            self.unsent.append(item)

    def acknowledge(self) -> None:
        delay = 0.2
        while self.unacked or self.unsent or self.suspect:
            self._flush()
            self._try_suspects_alone()
            if self.unsent or self.unacked:
                log.warning("broker did not acknowledge; waiting for it", held_by_the_client=len(self.unacked),
                            to_send_again=len(self.unsent), retry_in_s=round(delay, 2))
                if self.stop.wait(delay):
                    self.result.unacknowledged += len(self.unsent) + len(self.unacked)
                    return
                delay = min(2 * delay, 5.0)
                items, self.unsent = self.unsent, []
                for item in items:
                    self.send(item)

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

    def _try_suspects_alone(self) -> None:
        suspects, self.suspect = self.suspect, []
        for item in suspects:
            self.send(item)
            self._flush()  # a single record: its own verdict


def produce(transport: Transport, topics: Topics, records: Iterable[dict | bytes],
            options: ProduceOptions | None = None) -> ProduceResult:
    """Send up to `count` records (at most `rate` per second) to the samples topic; returns what the broker
    acknowledged and what it refused."""
    options = options or ProduceOptions()
    rate, count, stop = options.rate, options.count, options.stop
    retry(lambda: transport.ensure_topics([topics.samples], options.partitions, options.replication), "broker", stop)
    publisher = _Publisher(transport, topics.samples, stop)
    sent, started = 0, time.monotonic()
    # disable=None: a bar only on a terminal, never redraws in a log file
    bar = tqdm(total=count or options.total, desc="producing", unit="msg", disable=None if options.progress else True)
    try:
        for row, record in enumerate(records):
            if stop.is_set() or (count is not None and sent >= count):
                break
            if rate and (wait := started + sent / rate - time.monotonic()) > 0:
                stop.wait(wait)
            publisher.send(_encode(row, record))
            sent += 1
            bar.update()
            if len(publisher.unacked) + len(publisher.unsent) >= options.flush_every:
                publisher.acknowledge()
        publisher.acknowledge()
    finally:
        bar.close()
        publisher.producer.close()
    result = publisher.result
    log.info("produced", sent=sent, acknowledged=result.acknowledged, refused=len(result.refused),
             seconds=round(time.monotonic() - started, 2))
    return result
