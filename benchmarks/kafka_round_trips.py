"""What the broker's round trips cost on this machine, the floor under a stage's batch: a transaction of 64
records committed with its consumer offsets, an at-least-once send + flush of 64 records, and a consumer
offset commit (medians of 10). Prints figures, asserts nothing. Needs the Kafka of deploy/local-services.sh:

    bash deploy/local-services.sh run -- .venv/bin/python -m benchmarks.kafka_round_trips
"""

from __future__ import annotations

import os
import statistics
import time
import uuid

from dimee.streaming.transport.kafka import KafkaTransport


def main() -> None:
    transport, prefix = KafkaTransport(os.environ["DIMEE_TEST_KAFKA"]), f"rt-{uuid.uuid4().hex[:6]}"
    source, sink = f"{prefix}.in", f"{prefix}.out"
    transport.ensure_topics([source, sink], 2)
    plain = transport.producer()
    for i in range(640):
        plain.send(source, str(i).encode(), b"x" * 300)
    plain.flush()
    transactional = transport.producer(f"{prefix}-tx")
    consumer = transport.consumer([source], f"{prefix}-group", read_committed=True)
    commits, got = [], 0
    while got < 640:
        records = consumer.poll(64, 1.0)
        got += len(records)
        if records:
            transactional.begin()  # type: ignore[attr-defined]
            for record in records:
                transactional.send(sink, record.key, record.value or b"")
            started = time.perf_counter()
            transactional.commit(consumer)  # type: ignore[attr-defined]
            commits.append(time.perf_counter() - started)
    flushes = []
    for _ in range(10):
        started = time.perf_counter()
        for _ in range(64):
            plain.send(sink, b"k", b"x" * 300)
        plain.flush()
        flushes.append(time.perf_counter() - started)
    started = time.perf_counter()
    consumer.commit()
    offsets_ms = 1000 * (time.perf_counter() - started)
    print(f"transaction of 64 records + offsets, commit: median {1000 * statistics.median(commits):.0f} ms "
          f"(max {1000 * max(commits):.0f}, {len(commits)} transactions)")
    print(f"at-least-once send + flush of 64 records: median {1000 * statistics.median(flushes):.0f} ms")
    print(f"consumer offset commit: {offsets_ms:.0f} ms")
    for closing in (transactional, plain, consumer):
        closing.close()


if __name__ == "__main__":
    main()
