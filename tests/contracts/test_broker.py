"""The broker contract every role relies on (dimee/streaming/transport/base.py): keyed sends acknowledged by flush,
group consumers that commit exactly what they polled, uncommitted records redelivered to the next member."""

from __future__ import annotations

import time

from tests.support.deadlines import scaled

GROUP_JOIN_S = 30.0  # a real broker needs a few seconds to seat a new group member (scaled where a wait begins)
# Each test's groups are named after its own topic: a group shared between tests can make a new member wait for the
# previous test's member to leave (or its session to expire) before it was given any partition.


def _send(transport, topic: str, n: int, key: bytes | None = None) -> None:
    producer = transport.producer()
    for i in range(n):
        producer.send(topic, key if key is not None else f"k{i}".encode(), f"v{i}".encode())
    producer.flush()
    producer.close()


def _poll(consumer, at_least: int, max_records: int = 1000) -> list:
    records, deadline = [], time.monotonic() + scaled(GROUP_JOIN_S)
    while len(records) < at_least and time.monotonic() < deadline:
        records.extend(consumer.poll(max_records - len(records), 0.5))
    return records


def test_sent_records_reach_a_new_group_with_their_keys(transport, topic):
    transport.ensure_topics([topic], partitions=1)
    _send(transport, topic, 5)
    consumer = transport.consumer([topic], f"{topic}.g")
    records = _poll(consumer, 5)
    consumer.close()
    assert [(r.key, r.value) for r in records] == [(f"k{i}".encode(), f"v{i}".encode()) for i in range(5)]


def test_commit_covers_only_what_was_polled(transport, topic):
    transport.ensure_topics([topic], partitions=1)
    _send(transport, topic, 10)
    consumer = transport.consumer([topic], f"{topic}.g")
    first = _poll(consumer, 4, max_records=4)
    assert [r.offset for r in first] == [0, 1, 2, 3]
    consumer.commit()
    consumer.close()
    follower = transport.consumer([topic], f"{topic}.g")
    rest = _poll(follower, 6)
    follower.close()
    assert [r.offset for r in rest] == list(range(4, 10))


def test_uncommitted_records_go_to_the_next_member(transport, topic):
    transport.ensure_topics([topic], partitions=1)
    _send(transport, topic, 6)
    first = transport.consumer([topic], f"{topic}.g")
    got = _poll(first, 6)
    first.close()  # died before committing
    second = transport.consumer([topic], f"{topic}.g")
    again = _poll(second, 6)
    second.close()
    assert sorted(r.value for r in again) == sorted(r.value for r in got)


def test_same_key_same_partition(transport, topic):
    transport.ensure_topics([topic], partitions=3)
    _send(transport, topic, 5, key=b"same")
    consumer = transport.consumer([topic], f"{topic}.g")
    records = _poll(consumer, 5)
    consumer.close()
    assert len(records) == 5 and len({r.partition for r in records}) == 1
