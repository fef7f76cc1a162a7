"""Delivery defects found by the fault audit (issue 8), on the real Kafka and Redis."""

from __future__ import annotations

import json
import subprocess

from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from dimee.streaming.transport.base import Topics
from tests.integration.test_kafka_redis import api_version, read_topic
from tests.support.deadlines import scaled
from tests.support.helpers import stream_records
from tests.support.processes import DIMEE, write_jsonl
from tests.support.real_services import KAFKA, KAFKA_NODES


def test_produce_names_what_the_broker_refused_and_fails(prefix, env, tmp_path):
    topic = Topics(prefix).samples
    options = {"api_version": api_version()} if api_version() else {}
    admin = KafkaAdminClient(bootstrap_servers=KAFKA.split(","), **options)
    try:  # a topic that takes at most 100 kB per record, as a cluster with a smaller max.message.bytes would
        admin.create_topics([NewTopic(topic, 1, min(3, KAFKA_NODES), topic_configs={"max.message.bytes": "100000"})])
    finally:
        admin.close()
    good = stream_records(3, seed=31)
    too_big_for_the_topic = {"id": "big", "text": "x" * 200_000}
    too_big_for_any = {"id": "huge", "text": "y" * 1_200_000}
    source = write_jsonl(tmp_path / "in.jsonl", [good[0], too_big_for_the_topic, good[1], too_big_for_any, good[2]])
    proc = subprocess.run([DIMEE, "produce", "--source", str(source), "--id-col", "id"], env=env, capture_output=True,
                          text=True, timeout=scaled(180))
    assert proc.returncode == 1, proc.stderr
    assert "produced 3 samples" in proc.stdout
    assert "refused big: MessageSizeTooLarge" in proc.stderr and "refused huge: MessageSizeTooLarge" in proc.stderr
    assert "Traceback" not in proc.stderr
    # as the routers read it: `dimee produce` sends in transactions where the broker has them, and the attempt
    # that met the refusal was aborted (a read_uncommitted reader sees it too)
    version = api_version()
    committed = read_topic(topic, 3, read_committed=version is None or version >= (0, 11))
    stored = sorted(json.loads(r.value)["id"] for r in committed)
    assert stored == sorted(r["id"] for r in good)


def test_adaptive_routing_refuses_a_redis_that_may_evict_its_keys(workdir, env):
    import redis

    from tests.support.real_services import REDIS

    client = redis.Redis.from_url(REDIS)
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        proc = subprocess.run([DIMEE, "route", "--workdir", str(workdir), "--policy", "DIMEE-D", "--reseed"], env=env,
                              capture_output=True, text=True, timeout=scaled(120))
    finally:
        client.config_set("maxmemory-policy", "noeviction")
        client.close()
    assert proc.returncode == 2 and "maxmemory-policy allkeys-lru" in proc.stderr and "Traceback" not in proc.stderr


def test_a_producer_told_of_its_topics_learns_their_partitions_without_a_send(prefix):
    """A stage's first batch waited ~100 ms per output topic, one after another, for kafka-python to ask where its
    partitions live (0.8 s of a router's first 3,000 records): told at open, it asks for all of them at once."""
    import time

    from dimee.method.tiers import TIER_NAMES
    from dimee.streaming.transport.kafka import KafkaTransport

    transport = KafkaTransport(KAFKA, api_version=api_version())
    topics = [Topics(prefix).tier(tier) for tier in TIER_NAMES]
    transport.ensure_topics(topics, partitions=2)
    producer = transport.producer()
    producer.expect(topics)
    known = lambda: [t for t in topics if producer.producer._metadata.partitions_for_topic(t)]  # noqa: E731
    deadline = time.monotonic() + scaled(30)
    while len(known()) < len(topics) and time.monotonic() < deadline:
        time.sleep(0.01)
    producer.close()
    assert known() == topics
