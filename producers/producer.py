"""Publishes samples to the samples topic, keyed by sample id, at a set rate."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from dimee.messages import now
from dimee.runtime import StopFlag, log, retry
from dimee.transport.base import Topics, Transport


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


def produce(transport: Transport, topics: Topics, records: Iterable[dict | bytes],
            options: ProduceOptions | None = None) -> int:
    """Send up to `count` records (at most `rate` per second); returns how many were acknowledged.

    Records are sent as given, so a malformed one reaches the router and its dead-letter topic, as it
    would from a real upstream."""
    options = options or ProduceOptions()
    rate, count, stop = options.rate, options.count, options.stop
    retry(lambda: transport.ensure_topics([topics.samples], options.partitions, options.replication), "broker", stop)
    producer = retry(transport.producer, "broker", stop)
    sent, started = 0, time.monotonic()
    bar = tqdm(total=count or options.total, desc="producing", unit="msg", disable=not options.progress)
    try:
        for record in records:
            if stop.is_set() or (count is not None and sent >= count):
                break
            if rate:
                wait = started + sent / rate - time.monotonic()
                if wait > 0:
                    stop.wait(wait)
            timestamp = None
            if isinstance(record, dict):
                record = {**record, "produced_at": record.get("produced_at", now())}
                key, value = str(record.get("id", "")).encode(), json.dumps(record).encode()
                if isinstance(record["produced_at"], int | float) and math.isfinite(record["produced_at"]):
                    timestamp = float(record["produced_at"])
            else:  # raw bytes: passed through untouched
                key, value = None, record
            producer.send(topics.samples, key, value, timestamp)
            sent += 1
            bar.update()
            if sent % options.flush_every == 0:
                retry(producer.flush, "broker", stop)
        retry(producer.flush, "broker", stop)
    finally:
        bar.close()
        producer.close()
    log.info("produced", count=sent, seconds=round(time.monotonic() - started, 2))
    return sent
