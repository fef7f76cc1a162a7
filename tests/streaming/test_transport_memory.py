"""What only the embedded broker is tested for here; the contract it shares with Kafka is
tests/contracts/test_broker.py."""

from dimee.streaming.transport.memory import InMemoryBroker


def _fill(broker, topic, n):
    producer = broker.producer()
    for i in range(n):
        producer.send(topic, f"k{i}".encode(), f"v{i}".encode())
    producer.flush()


def test_groups_are_independent_and_members_share_partitions():
    broker = InMemoryBroker(default_partitions=4)
    _fill(broker, "t", 40)
    a, b = broker.consumer(["t"], "g"), broker.consumer(["t"], "g")
    from_a, from_b = a.poll(100, 0.1), b.poll(100, 0.1)
    assert len(from_a) + len(from_b) == 40 and from_a and from_b
    assert not {(r.partition, r.offset) for r in from_a} & {(r.partition, r.offset) for r in from_b}
    assert len(broker.consumer(["t"], "other").poll(100, 0.1)) == 40
