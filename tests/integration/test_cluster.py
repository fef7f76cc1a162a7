"""The broker deploy/local-services.sh starts is a cluster (three KRaft nodes by default): topics dimee
creates on it must use every node, so that one broker can fail without losing or refusing a write."""

from __future__ import annotations

from kafka import KafkaAdminClient

from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.kafka import KafkaTransport
from tests.integration.test_kafka_redis import api_version
from tests.support.processes import wait_for
from tests.support.real_services import KAFKA, KAFKA_NODES


def test_topics_dimee_creates_are_partitioned_and_replicated_over_the_cluster(prefix):
    topics = Topics(prefix).all()
    KafkaTransport(KAFKA, api_version()).ensure_topics(topics)
    options = {"api_version": api_version()} if api_version() else {}
    admin = KafkaAdminClient(bootstrap_servers=KAFKA.split(","), **options)
    described: dict = {}

    def all_described() -> bool:  # a new topic reaches every broker's metadata a moment after its creation
        described.update({t["name"]: t for t in admin.describe_topics(topics) if t["error_code"] == 0})
        return set(topics) <= set(described)

    try:
        brokers = admin.describe_cluster()["brokers"]
        wait_for(all_described, 30, "metadata of the new topics", lambda: str(described))
    finally:
        admin.close()
    assert len(brokers) == KAFKA_NODES
    replicas = min(3, KAFKA_NODES)  # 3 on the default 3-node cluster, 1 on a single broker
    for topic in topics:
        partitions = described[topic]["partitions"]
        assert len(partitions) == 3, topic
        for partition in partitions:
            assert len(partition["replica_nodes"]) == replicas, (topic, partition)
            assert len(partition["isr_nodes"]) == replicas, (topic, partition)
