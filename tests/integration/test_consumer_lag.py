"""dimee_consumer_lag on the real Kafka: a read_committed consumer caught up with a topic written in transactions
is 0 behind. Defect: the lag was measured from the offset after the last record returned, so each partition read
1 behind for ever (the commit marker that ends every transaction takes an offset and is never returned), and an
alert on `dimee_consumer_lag > 0` never cleared."""

from __future__ import annotations

import pytest
from kafka import KafkaProducer

from dimee.streaming.transport.kafka import KafkaTransport
from tests.integration.test_kafka_redis import api_version
from tests.support.processes import wait_for
from tests.support.real_services import KAFKA, KAFKA_NODES


def test_a_consumer_caught_up_with_committed_transactions_is_zero_behind(prefix):
    version = api_version()
    if version is not None and version < (0, 11):
        pytest.skip("transactions need Kafka 0.11 or later")
    transport = KafkaTransport(KAFKA, version)
    topic = f"{prefix}.lag"
    transport.ensure_topics([topic], 2, min(3, KAFKA_NODES))
    options = {"api_version": version} if version else {}
    producer = KafkaProducer(bootstrap_servers=KAFKA.split(","), transactional_id=f"{prefix}-lag",
                             enable_idempotence=True, **options)
    try:
        producer.init_transactions()
        for batch in range(3):  # three transactions on each partition: records, then a commit marker
            producer.begin_transaction()
            for i in range(4):
                producer.send(topic, key=f"{batch}-{i}".encode(), value=b"x", partition=i % 2)
            producer.commit_transaction()
    finally:
        producer.close()
    consumer = transport.consumer([topic], f"{prefix}.lag", read_committed=True)
    try:
        read: list = []
        wait_for(lambda: read.extend(consumer.poll(100, 0.5)) or len(read) >= 12, 60, "the committed records")
        for _ in range(5):  # idle polls, as a caught-up stage makes: they pass the last commit markers
            read.extend(consumer.poll(100, 0.2))
        lag = consumer.lag()
        assert len(read) == 12
        assert lag == {(topic, 0): 0, (topic, 1): 0}, lag
    finally:
        consumer.close()
