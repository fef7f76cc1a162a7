"""Publishes samples to the samples topic, keyed by sample id, at a set rate."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from tqdm.auto import tqdm

from dimee.messages import now
from dimee.runtime import StopFlag, log, retry
from dimee.transport.base import Topics, Transport


def produce(transport: Transport, topics: Topics, records: Iterable[dict], rate: float | None = None,  # noqa: PLR0913
            count: int | None = None, stop: StopFlag | None = None, flush_every: int = 500,
            progress: bool = True, total: int | None = None) -> int:
    """Send up to `count` records (at most `rate` per second); returns how many were acknowledged.

    Records are sent as given, so a malformed one reaches the router and its dead-letter topic, as it
    would from a real upstream."""
    stop = stop or StopFlag()
    transport.ensure_topics([topics.samples])
    producer = retry(transport.producer, "broker", stop)
    sent, started = 0, time.monotonic()
    bar = tqdm(total=count or total, desc="producing", unit="msg", disable=not progress)
    try:
        for record in records:
            if stop.is_set() or (count is not None and sent >= count):
                break
            if rate:
                wait = started + sent / rate - time.monotonic()
                if wait > 0:
                    stop.wait(wait)
            if isinstance(record, dict):
                record = {**record, "produced_at": record.get("produced_at", now())}
                key, value = str(record.get("id", "")).encode(), json.dumps(record).encode()
            else:  # raw bytes: passed through untouched
                key, value = None, record
            producer.send(topics.samples, key, value)
            sent += 1
            bar.update()
            if sent % flush_every == 0:
                retry(producer.flush, "broker", stop)
        retry(producer.flush, "broker", stop)
    finally:
        bar.close()
        producer.close()
    log.info("produced", count=sent, seconds=round(time.monotonic() - started, 2))
    return sent
