"""The embedded broker keeps Kafka's consumer-group and commit semantics."""

from dimee.transport.memory import InMemoryBroker


def _fill(broker, topic, n):
    producer = broker.producer()
    for i in range(n):
        producer.send(topic, f"k{i}".encode(), f"v{i}".encode())
    producer.flush()


def test_uncommitted_records_go_to_the_next_member():
    broker = InMemoryBroker(default_partitions=2)
    _fill(broker, "t", 10)
    first = broker.consumer(["t"], "g")
    got = first.poll(100, 0.1)
    assert len(got) == 10
    first.close()  # died before committing
    second = broker.consumer(["t"], "g")
    again = second.poll(100, 0.1)
    assert sorted(r.value for r in again) == sorted(r.value for r in got)
    second.commit()
    second.close()
    third = broker.consumer(["t"], "g")
    assert third.poll(100, 0.1) == []


def test_commit_covers_only_what_was_polled():
    broker = InMemoryBroker(default_partitions=1)
    _fill(broker, "t", 10)
    consumer = broker.consumer(["t"], "g")
    assert [r.offset for r in consumer.poll(4, 0.1)] == [0, 1, 2, 3]
    consumer.commit()
    consumer.close()
    assert [r.offset for r in broker.consumer(["t"], "g").poll(100, 0.1)] == list(range(4, 10))


def test_groups_are_independent_and_members_share_partitions():
    broker = InMemoryBroker(default_partitions=4)
    _fill(broker, "t", 40)
    a, b = broker.consumer(["t"], "g"), broker.consumer(["t"], "g")
    from_a, from_b = a.poll(100, 0.1), b.poll(100, 0.1)
    assert len(from_a) + len(from_b) == 40 and from_a and from_b
    assert not {(r.partition, r.offset) for r in from_a} & {(r.partition, r.offset) for r in from_b}
    assert len(broker.consumer(["t"], "other").poll(100, 0.1)) == 40


def test_same_key_same_partition():
    broker = InMemoryBroker(default_partitions=3)
    producer = broker.producer()
    for _ in range(5):
        producer.send("t", b"same", b"x")
    assert len({r.partition for r in broker.read_all("t")}) == 1
