"""kafka-python (the client dimee was asked to use) against librdkafka (confluent-kafka, its own library inside its
wheels) on the same cluster, for the three things a stage does on every batch: commit a transaction of 64 records
with the consumer's offsets, send and flush 64 records at-least-once, and poll a backlog (10,000 records,
read_committed). Medians of repeated runs; prints figures and ratios, asserts nothing. Needs the Kafka of
deploy/local-services.sh:

    bash deploy/local-services.sh run -- .venv/bin/python -m benchmarks.kafka_clients
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

BATCH, BACKLOG, ROUNDS, VALUE = 64, 10_000, 15, b"x" * 300


@dataclass
class Figures:
    transaction_ms: float  # begin, 64 sends, offsets, commit
    flush_ms: float  # 64 sends and a flush
    poll_per_s: float  # records a read_committed consumer drains from a backlog


def _median_ms(run: Callable[[], None], rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def kafka_python(servers: str, topic: str) -> Figures:
    from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

    plain = KafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=0)

    def flush() -> None:
        for i in range(BATCH):
            plain.send(topic, key=str(i).encode(), value=VALUE)
        plain.flush()

    flush_ms = _median_ms(flush)
    tx = KafkaProducer(bootstrap_servers=servers, transactional_id=f"bench-kp-{uuid.uuid4().hex[:6]}")
    tx.init_transactions()
    group = f"bench-kp-{uuid.uuid4().hex[:6]}"

    def transaction() -> None:
        tx.begin_transaction()
        for i in range(BATCH):
            tx.send(topic, key=str(i).encode(), value=VALUE)
        tx.send_offsets_to_transaction({TopicPartition(topic, 0): OffsetAndMetadata(1, "", -1)}, group)
        tx.commit_transaction()

    transaction_ms = _median_ms(transaction)
    consumer = KafkaConsumer(topic, bootstrap_servers=servers, group_id=f"{group}-poll", auto_offset_reset="earliest",
                             isolation_level="read_committed", enable_auto_commit=False, max_poll_records=500)
    got, started = 0, time.perf_counter()
    while got < BACKLOG:
        got += sum(len(rows) for rows in consumer.poll(timeout_ms=1000).values())
    poll_per_s = got / (time.perf_counter() - started)
    for closing in (consumer, tx, plain):
        closing.close()
    return Figures(transaction_ms, flush_ms, poll_per_s)


def librdkafka(servers: str, topic: str) -> Figures:
    from confluent_kafka import Consumer, Producer, TopicPartition

    plain = Producer({"bootstrap.servers": servers, "acks": "all", "linger.ms": 0})

    def flush() -> None:
        for i in range(BATCH):
            plain.produce(topic, key=str(i).encode(), value=VALUE)
        plain.flush()

    flush_ms = _median_ms(flush)
    tx = Producer({"bootstrap.servers": servers, "transactional.id": f"bench-rd-{uuid.uuid4().hex[:6]}",
                   "linger.ms": 0})
    tx.init_transactions()
    group = f"bench-rd-{uuid.uuid4().hex[:6]}"
    offsets_of = Consumer({"bootstrap.servers": servers, "group.id": group, "enable.auto.commit": False})

    def transaction() -> None:
        tx.begin_transaction()
        for i in range(BATCH):
            tx.produce(topic, key=str(i).encode(), value=VALUE)
        tx.send_offsets_to_transaction([TopicPartition(topic, 0, 1)], offsets_of.consumer_group_metadata())
        tx.commit_transaction()

    transaction_ms = _median_ms(transaction)
    consumer = Consumer({"bootstrap.servers": servers, "group.id": f"{group}-poll", "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got, started = 0, time.perf_counter()
    while got < BACKLOG:
        got += sum(1 for m in consumer.consume(500, 1.0) if m.error() is None)
    poll_per_s = got / (time.perf_counter() - started)
    consumer.close()
    offsets_of.close()
    tx.flush()
    plain.flush()
    return Figures(transaction_ms, flush_ms, poll_per_s)


def main() -> None:
    from dimee.streaming.transport.kafka import KafkaTransport

    servers = os.environ["DIMEE_TEST_KAFKA"].removeprefix("kafka://")
    topic = f"bench-clients-{uuid.uuid4().hex[:6]}"
    transport = KafkaTransport(os.environ["DIMEE_TEST_KAFKA"])
    transport.ensure_topics([topic], 1)
    backlog = transport.producer()
    for i in range(BACKLOG):
        backlog.send(topic, str(i).encode(), VALUE)
    backlog.flush()
    backlog.close()
    results = {"kafka-python": kafka_python(servers, topic), "librdkafka": librdkafka(servers, topic)}
    print(f"| client | transaction of {BATCH} + offsets, commit (ms, median of {ROUNDS}) | send + flush of {BATCH} "
          f"(ms) | poll a {BACKLOG:,}-record backlog (records/s) |")
    print("| --- | ---: | ---: | ---: |")
    for name, f in results.items():
        print(f"| {name} | {f.transaction_ms:.1f} | {f.flush_ms:.1f} | {f.poll_per_s:,.0f} |")
    kp, rd = results["kafka-python"], results["librdkafka"]
    print(f"librdkafka ÷ kafka-python: transaction {rd.transaction_ms / kp.transaction_ms:.2f}× the time, flush "
          f"{rd.flush_ms / kp.flush_ms:.2f}× the time, poll {rd.poll_per_s / kp.poll_per_s:.2f}× the rate")


if __name__ == "__main__":
    main()
