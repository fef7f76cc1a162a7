"""Publishes samples to the samples topic, keyed by sample id, at a set rate, in chunks that are each
acknowledged (one transaction each, where the broker has them) or given up within a bound
(`dimee.producers.publisher`)."""

from __future__ import annotations

import contextlib
import json
import math
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from dimee.producers.publisher import Bounded, GaveUp, Pending, ProduceResult, publisher
from tqdm.auto import tqdm

from dimee.streaming.messages import now
from dimee.streaming.runtime import StopFlag, log, retry
from dimee.streaming.transport.base import Topics, Transport

__all__ = ["ProduceOptions", "ProduceResult", "produce"]

GIVE_UP_S = 300.0  # default of `dimee produce --give-up-after`
COMMIT_EVERY_S = 0.1  # the longest a send waits for its chunk to go: latency added to a sample


@dataclass(frozen=True)
class ProduceOptions:
    rate: float | None = None  # messages per second; None: as fast as possible
    count: int | None = None  # send at most this many
    stop: StopFlag = field(default_factory=StopFlag)
    flush_every: int = 500  # sends per chunk (one transaction, where the broker has them)
    progress: bool = True
    total: int | None = None  # for the progress bar, when the source knows its length
    partitions: int = 3  # of the samples topic, if this producer creates it
    replication: int | None = None
    give_up_s: float = GIVE_UP_S  # a chunk not acknowledged this long after it was first sent ends the run
    commit_every_s: float = COMMIT_EVERY_S


def _encode(row: int, record: dict | bytes) -> Pending:
    """Records are sent as given, so a malformed one reaches the router and its dead-letter topic, as it would
    from a real upstream; a dict gets its produced_at (also the record's timestamp, where it is a time)."""
    if not isinstance(record, dict):
        return Pending(row, None, record, None)
    record = {**record, "produced_at": record.get("produced_at", now())}
    stamp = record["produced_at"]
    # never ahead of this host's clock: Kafka refuses a record timestamp over an hour ahead of its own
    timestamp = min(float(stamp), now()) if isinstance(stamp, int | float) and math.isfinite(stamp) else None
    return Pending(row, str(record.get("id", "")).encode(), json.dumps(record).encode(), timestamp)


class _Prefetched:
    """The source's records, read on a thread: while a source waits (stdin between lines), the chunk read so
    far is sent (and its transaction committed) instead of held back."""

    _END = object()

    def __init__(self, records: Iterable[dict | bytes], size: int) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=size)
        self.closed = threading.Event()
        threading.Thread(target=self._read, args=(records,), name="produce-source", daemon=True).start()

    def _read(self, records: Iterable[dict | bytes]) -> None:
        try:
            for record in records:
                if not self._put(record):
                    return
            self._put(self._END)
        except Exception as exc:  # raised on the sending thread, by next()
            self._put(exc)

    def _put(self, item: object) -> bool:
        while not self.closed.is_set():
            with contextlib.suppress(queue.Full):
                self.queue.put(item, timeout=0.5)
                return True
        return False

    def next(self, timeout_s: float | None) -> object:
        """The next record (None is one: a tombstone), or END at the end of the source. Raises queue.Empty after
        timeout_s."""
        item = self.queue.get(timeout=timeout_s)
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self.closed.set()


class _Chunk:
    """The sends read since the last chunk went, and when they must go."""

    def __init__(self, every_s: float) -> None:
        self.items: list[Pending] = []
        self.every_s, self.due = every_s, math.inf

    def add(self, item: Pending) -> None:
        self.items.append(item)
        self.due = min(self.due, time.monotonic() + self.every_s)

    def take(self) -> list[Pending]:
        items, self.items, self.due = self.items, [], math.inf
        return items


def produce(transport: Transport, topics: Topics, records: Iterable[dict | bytes],
            options: ProduceOptions | None = None) -> ProduceResult:
    """Send up to `count` records (at most `rate` per second) to the samples topic, in chunks of at most
    `flush_every` sends or `commit_every_s` seconds; returns what the broker acknowledged, what it refused,
    and what it did not acknowledge (`give_up_s` after a chunk was first sent, or at a stop)."""
    options = options or ProduceOptions()
    rate, count, stop = options.rate, options.count, options.stop
    retry(lambda: transport.ensure_topics([topics.samples], options.partitions, options.replication), "broker",
          Bounded(stop, options.give_up_s))
    sender = publisher(transport, topics.samples, stop, options.give_up_s)
    source, chunk = _Prefetched(records, options.flush_every), _Chunk(options.commit_every_s)
    sent, started = 0, time.monotonic()
    # disable=None: a bar only on a terminal, never redraws in a log file
    bar = tqdm(total=count or options.total, desc="producing", unit="msg", disable=None if options.progress else True)
    try:
        while not stop.is_set() and (count is None or sent < count):
            if rate and (wait := started + sent / rate - time.monotonic()) > 0:
                if chunk.items and time.monotonic() + wait >= chunk.due:
                    sender.deliver(chunk.take())
                stop.wait(wait)
            try:
                record = source.next(max(0.0, chunk.due - time.monotonic()) if chunk.items else None)
            except queue.Empty:  # the source waits: what it gave so far goes now
                sender.deliver(chunk.take())
                continue
            if record is _Prefetched._END:
                break
            chunk.add(_encode(sent, record))
            sent += 1
            bar.update()
            if len(chunk.items) >= options.flush_every or time.monotonic() >= chunk.due:
                sender.deliver(chunk.take())
        if chunk.items:
            sender.deliver(chunk.take())
    except GaveUp:
        pass  # the result says what was not acknowledged, and why
    finally:
        source.close()
        bar.close()
        sender.close()
    result = sender.result
    log.info("produced", sent=sent, acknowledged=result.acknowledged, refused=len(result.refused),
             unacknowledged=len(result.unacknowledged), seconds=round(time.monotonic() - started, 2))
    return result
