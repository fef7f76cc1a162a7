"""kafka-python (the client dimee was asked to use) against librdkafka (confluent-kafka, its own library inside its
wheels) on the same cluster, for the three things a stage does on every batch: commit a transaction of 64 records
with the consumer's offsets, send and flush 64 records at-least-once, and poll a backlog (10,000 records,
read_committed). Medians of repeated runs; prints figures and ratios, asserts nothing. Needs the Kafka of
deploy/local-services.sh:

    bash deploy/local-services.sh run -- .venv/bin/python -m benchmarks.kafka_clients
"""

from __future__ import annotations

import logging
import os
import re
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

BATCH, BACKLOG, ROUNDS, VALUE = 64, 10_000, 15, b"x" * 300
# A paced stage's transactions: far enough apart that the previous one's markers are written (at half load a
# stage commits every few hundred ms), against back to back (a stage with a backlog).
PACE_S = 0.5
GAPS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7)  # after which the previous transaction's markers are written, or not


@dataclass
class Figures:
    transaction_ms: float  # begin, 64 sends, offsets, commit; back to back
    paced_transaction_ms: float  # the same, PACE_S after the previous one
    flush_ms: float  # 64 sends and a flush
    poll_per_s: float  # records a read_committed consumer drains from a backlog
    requests_ms: dict[str, float] = field(default_factory=dict)  # median time of each request a transaction makes
    concurrent_per_transaction: float | None = None  # CONCURRENT_TRANSACTIONS answers per back-to-back transaction
    concurrent_after_gap: dict[float, float] = field(default_factory=dict)  # the same, GAPS_S after the previous


def _median_ms(run: Callable[[], None], rounds: int = ROUNDS, pause_s: float = 0.0) -> float:
    times = []
    for _ in range(rounds):
        time.sleep(pause_s)
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


class TransactionRequests(logging.Handler):
    """kafka-python's own record of each response (its DEBUG line "Response N (x ms): NameResponse(...)"): the
    time of every request a transaction makes, and how often the coordinator answered CONCURRENT_TRANSACTIONS
    (the previous transaction's markers still being written; retried after the producer's backoff)."""

    RESPONSE = re.compile(r"Response \d+ \(([\d.]+) ms\): (\w+)Response\(.*?error_code=(\d+)")
    CONCURRENT_TRANSACTIONS = 51

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.times: dict[str, list[float]] = {}
        self.concurrent = 0

    def emit(self, record: logging.LogRecord) -> None:
        found = self.RESPONSE.search(record.getMessage())
        if found is None:
            return
        ms, name, error = float(found[1]), found[2], int(found[3])
        self.times.setdefault(name, []).append(ms)
        self.concurrent += error == self.CONCURRENT_TRANSACTIONS

    @contextmanager
    def watching(self) -> Iterator[TransactionRequests]:
        logger = logging.getLogger("kafka.net.connection")
        level = logger.level
        logger.addHandler(self)
        logger.setLevel(logging.DEBUG)
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.setLevel(level)


def transaction_breakdown(servers: str, topic: str) -> dict:
    """kafka-python's exactly-once transaction of BATCH records with its offsets, through dimee's own adapter (the
    settings a stage runs with, the retry backoff on CONCURRENT_TRANSACTIONS among them): back to back and paced
    (ms, medians of ROUNDS), each request's median time, and the CONCURRENT_TRANSACTIONS answers per transaction
    back to back and a gap after the previous one (`make bench` prints it as figure j)."""
    from kafka import OffsetAndMetadata, TopicPartition

    from dimee.streaming.transport.kafka import KafkaMark, KafkaTransport

    tx = KafkaTransport(servers).producer(f"bench-kp-{uuid.uuid4().hex[:6]}")
    offsets = KafkaMark({TopicPartition(topic, 0): OffsetAndMetadata(1, "", -1)}, f"bench-kp-{uuid.uuid4().hex[:6]}")

    def transaction() -> None:
        tx.begin()
        for i in range(BATCH):
            tx.send(topic, str(i).encode(), VALUE)
        tx.commit(None, offsets)  # type: ignore[arg-type]

    try:
        with TransactionRequests().watching() as requests:
            back_to_back_ms = _median_ms(transaction)
        return {"back_to_back_ms": back_to_back_ms, "paced_ms": _median_ms(transaction, pause_s=PACE_S),
                "requests_ms": {name: statistics.median(ms) for name, ms in requests.times.items()},
                "concurrent_per_transaction": requests.concurrent / ROUNDS,
                "concurrent_after_gap": _concurrent_after_gaps(transaction)}
    finally:
        tx.close()


def kafka_python(servers: str, topic: str) -> Figures:
    from kafka import KafkaConsumer, KafkaProducer

    plain = KafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=0)

    def flush() -> None:
        for i in range(BATCH):
            plain.send(topic, key=str(i).encode(), value=VALUE)
        plain.flush()

    flush_ms = _median_ms(flush)
    plain.close()
    inside = transaction_breakdown(servers, topic)
    consumer = KafkaConsumer(topic, bootstrap_servers=servers, group_id=f"bench-kp-{uuid.uuid4().hex[:6]}",
                             auto_offset_reset="earliest", isolation_level="read_committed", enable_auto_commit=False,
                             max_poll_records=500)
    got, started = 0, time.perf_counter()
    while got < BACKLOG:
        got += sum(len(rows) for rows in consumer.poll(timeout_ms=1000).values())
    poll_per_s = got / (time.perf_counter() - started)
    consumer.close()
    return Figures(inside["back_to_back_ms"], inside["paced_ms"], flush_ms, poll_per_s, inside["requests_ms"],
                   inside["concurrent_per_transaction"], inside["concurrent_after_gap"])


def _concurrent_after_gaps(transaction: Callable[[], None], rounds: int = 5) -> dict[float, float]:
    """CONCURRENT_TRANSACTIONS answers to a transaction begun a gap after the previous one ended: how long the
    broker takes to write a transaction's markers (the broker's replica.fetch.wait.max.ms bounds it)."""
    out = {}
    for gap in GAPS_S:
        counted = 0
        for _ in range(rounds):
            transaction()
            time.sleep(gap)
            with TransactionRequests().watching() as requests:
                transaction()
            counted += requests.concurrent
        out[gap] = counted / rounds
    return out


def librdkafka(servers: str, topic: str) -> Figures:
    from confluent_kafka import Consumer, Producer, TopicPartition

    plain = Producer({"bootstrap.servers": servers, "acks": "all", "linger.ms": 0})

    def flush() -> None:
        for i in range(BATCH):
            plain.produce(topic, key=str(i).encode(), value=VALUE)
        plain.flush()

    flush_ms = _median_ms(flush)
    tx = Producer({"bootstrap.servers": servers, "transactional.id": f"bench-rd-{uuid.uuid4().hex[:6]}",
                   "linger.ms": 5, "retry.backoff.ms": 20})  # as dimee's kafka-python producer
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
    paced_ms = _median_ms(transaction, pause_s=PACE_S)
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
    return Figures(transaction_ms, paced_ms, flush_ms, poll_per_s)


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
    _print(results)


def _print(results: dict[str, Figures]) -> None:
    print(f"| client | transaction of {BATCH} + offsets, back to back (ms, median of {ROUNDS}) | the same, "
          f"{PACE_S:.1f} s apart | send + flush of {BATCH} (ms) | poll a {BACKLOG:,}-record backlog (records/s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, f in results.items():
        print(f"| {name} | {f.transaction_ms:.1f} | {f.paced_transaction_ms:.1f} | {f.flush_ms:.1f} "
              f"| {f.poll_per_s:,.0f} |")
    kp, rd = results["kafka-python"], results["librdkafka"]
    print(f"librdkafka ÷ kafka-python: transaction {rd.transaction_ms / kp.transaction_ms:.2f}× the time back to "
          f"back, {rd.paced_transaction_ms / kp.paced_transaction_ms:.2f}× paced; flush "
          f"{rd.flush_ms / kp.flush_ms:.2f}× the time; poll {rd.poll_per_s / kp.poll_per_s:.2f}× the rate")
    print(f"\nInside kafka-python's back-to-back transaction: {kp.concurrent_per_transaction:.1f} "
          "CONCURRENT_TRANSACTIONS answers per transaction (the previous one's markers not yet written); "
          "median time of each request:")
    for name, ms in sorted(kp.requests_ms.items(), key=lambda item: -item[1]):
        print(f"  {name:<22} {ms:6.1f} ms")
    print("CONCURRENT_TRANSACTIONS answers to a transaction begun a gap after the previous one: " + ", ".join(
        f"{1000 * gap:.0f} ms: {count:.1f}" for gap, count in kp.concurrent_after_gap.items()))

if __name__ == "__main__":
    main()
