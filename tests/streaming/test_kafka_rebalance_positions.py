"""What the Kafka consumer adapter commits across a rebalance, on a stand-in for kafka-python's consumer that
rebalances inside poll as the real one does (calling the listener the adapter subscribed with).

Defect, seen in `make faults`' kill storm: a router read a partition, the group rebalanced, and the partition came
back to it at its committed offset; the adapter still held the position it had read to before, and its next
transaction committed that position for records nobody had routed. Three samples were lost."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kafka import OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

import dimee.streaming.transport.kafka as kafka_transport
from dimee.common.errors import Rebalanced
from dimee.streaming.transport.kafka import KafkaTransport

P0, P2 = TopicPartition("t.samples", 0), TopicPartition("t.samples", 2)


def _record(tp: TopicPartition, offset: int) -> ConsumerRecord:
    return ConsumerRecord(tp.topic, tp.partition, -1, offset, 0, 0, b"k", b"v", [], None, 1, 1, -1)


class RebalancingConsumer:
    """kafka-python's KafkaConsumer as the adapter uses it: each poll first runs the queued rebalance (listener
    calls, a new generation), then returns its records."""

    def __init__(self, *topics: str, **config: object) -> None:
        self.listener = None  # a consumer subscribed by its constructor has none
        self.generation = 1
        self.assigned: set[TopicPartition] = {P0, P2}
        self.polls: list[tuple[Callable[[], None] | None, dict]] = []
        self.committed_offsets: dict[TopicPartition, int] = {}
        self.sought: dict[TopicPartition, int] = {}  # the adapter's seeks, in order
        self._coordinator = self  # kafka-python's group coordinator, asked for the committed offsets
        self._offset_fetch_futures = {frozenset({P0, P2}): "an answer from before"}

    def fetch_committed_offsets(self, partitions: set[TopicPartition], timeout_ms: int | None = None) -> dict:
        assert not self._offset_fetch_futures, "answered from a cached, earlier request"
        return {tp: OffsetAndMetadata(self.committed_offsets[tp], "", -1) for tp in partitions
                if tp in self.committed_offsets}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought[tp] = offset

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.sought[tp] = 0

    def subscribe(self, topics: list[str], listener: object = None) -> None:
        self.listener = listener

    def rebalance(self, assigned: set[TopicPartition]) -> Callable[[], None]:
        def run() -> None:
            if self.listener is not None:
                self.listener.on_partitions_revoked(set(self.assigned))
            self.generation += 1
            self.assigned = assigned
            if self.listener is not None:
                self.listener.on_partitions_assigned(set(assigned))
        return run

    def poll(self, timeout_ms: int, max_records: int) -> dict:
        rebalance, records = self.polls.pop(0)
        if rebalance is not None:
            rebalance()
        return records

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def group_metadata(self) -> tuple[str, int]:
        return ("t.router", self.generation)


def _adapter(monkeypatch):
    monkeypatch.setattr(kafka_transport, "KafkaConsumer", RebalancingConsumer)
    monkeypatch.setattr(KafkaTransport, "_common", lambda self: {})
    adapter = KafkaTransport("127.0.0.1:9092").consumer(["t.samples"], "t.router", read_committed=True)
    return adapter, adapter.consumer


def test_a_partition_that_comes_back_after_a_rebalance_is_not_committed_past_what_was_read_again(monkeypatch):
    adapter, consumer = _adapter(monkeypatch)
    consumer.polls = [(None, {P2: [_record(P2, o) for o in (834, 835, 836)]}),
                      # the group rebalances; P2 comes back, to be read again from its committed offset, 834
                      (consumer.rebalance({P0, P2}), {P0: [_record(P0, 5)]})]
    adapter.poll(100, 0.1)
    adapter.mark()  # that batch's transaction: refused, the group having moved on
    adapter.poll(100, 0.1)
    assert adapter.mark().offsets.get(P2) is None  # not 837: 834–836 were never processed in this generation
    assert consumer.listener is adapter  # subscribed with the adapter as its rebalance listener


def test_a_batch_polled_before_a_rebalance_is_never_marked(monkeypatch):
    """Its partitions may be another member's now, and the rebalance dropped their positions: its transaction
    would carry no offsets, which the broker does not fence by the group generation, and its outputs would commit
    beside the new owner's (duplicates in the kill storm). Refused, it is read again."""
    adapter, consumer = _adapter(monkeypatch)
    consumer.polls = [(None, {P0: [_record(P0, 1)]}), (consumer.rebalance({P2}), {P2: [_record(P2, 2)]}),
                      (None, {P2: [_record(P2, 3)]})]
    adapter.poll(100, 0.1)
    adapter.poll(100, 0.1)  # a second batch, kept back with the first, polled after the rebalance
    with pytest.raises(Rebalanced):
        adapter.mark()
    adapter.poll(100, 0.1)
    assert adapter.mark().group == ("t.router", 2)  # the next batch is wholly in the new generation


def test_records_polled_while_out_of_the_group_are_never_marked(monkeypatch):
    """kafka-python's heartbeat thread resets a member it finds out of its group to generation -1 and no member id,
    at any moment, also between a poll's rejoin and its fetch. A transactional offset commit naming neither is not
    validated by the broker: it would commit beside the partitions' new owner (a zombie). Refused, it is read
    again."""
    from kafka.structs import ConsumerGroupMetadata

    adapter, consumer = _adapter(monkeypatch)
    member = {"generation_id": 3, "member_id": "router-1-abc"}
    consumer.group_metadata = lambda: ConsumerGroupMetadata("t.router", **member)
    consumer.polls = [(None, {P0: [_record(P0, 1)]}), (None, {P0: [_record(P0, 2)]})]
    adapter.poll(100, 0.1)
    assert adapter.mark().group.generation_id == 3
    member.update(generation_id=-1, member_id="")  # the heartbeat thread found the member gone
    adapter.poll(100, 0.1)
    with pytest.raises(Rebalanced):
        adapter.mark()


def test_a_rebalance_starts_every_kept_partition_again_from_its_committed_offset(monkeypatch):
    """Defect, seen as 128 and 154 lost samples in `make faults`' kill storm on a loaded machine: kafka-python keeps
    the fetch position of a partition a member keeps across a rebalance (the Java client's eager protocol restarts it
    from the committed offset). A router polled batches, the group rebalanced, the batch in flight was aborted and
    the batches kept back dropped "to be read again" — and the router read on from the kept position, past them."""
    adapter, consumer = _adapter(monkeypatch)
    consumer.committed_offsets = {P2: 834}
    consumer.polls = [(None, {P2: [_record(P2, o) for o in (834, 835, 836)]}),
                      (consumer.rebalance({P0, P2}), {P2: [_record(P2, 837)]}),  # from the kept position
                      (None, {P2: [_record(P2, o) for o in (834, 835, 836, 837)]})]
    adapter.poll(100, 0.1)
    assert adapter.poll(100, 0.1) == []  # what came from the kept position is dropped
    assert consumer.sought == {P0: 0, P2: 834}  # P0 has nothing committed: from its start
    assert [r.offset for r in adapter.poll(100, 0.1)] == [834, 835, 836, 837]


def test_a_transaction_commits_exactly_the_partitions_and_offsets_its_records_end_at(monkeypatch):
    adapter, consumer = _adapter(monkeypatch)
    consumer.polls = [(None, {P0: [_record(P0, 4)], P2: [_record(P2, o) for o in (7, 8)]})]
    adapter.poll(100, 0.1)
    mark = adapter.mark({("t.samples", 0): 5, ("t.samples", 2): 9})
    assert {tp.partition: meta.offset for tp, meta in mark.offsets.items()} == {0: 5, 2: 9}


def test_a_transaction_whose_records_the_consumer_no_longer_stands_at_is_refused(monkeypatch):
    """Duplicates in the kill storm: a router committed a batch's outputs without their partition's offsets, read the
    same records again after the next abort, and committed them a second time. Whatever the client did to the
    positions, a transaction never carries outputs whose offsets it does not commit."""
    adapter, consumer = _adapter(monkeypatch)
    consumer.polls = [(None, {P2: [_record(P2, o) for o in (7, 8)]})]
    adapter.poll(100, 0.1)
    adapter.next_offsets.clear()  # the position is gone, however it went
    with pytest.raises(Rebalanced):
        adapter.mark({("t.samples", 2): 9})


def test_a_transaction_is_refused_when_the_consumer_polled_past_its_records(monkeypatch):
    """Loss in the kill storm: batches dropped to be read again, and a later transaction committed the position the
    consumer had polled to, past them. Records polled and not carried are read again, never committed past."""
    adapter, consumer = _adapter(monkeypatch)
    consumer.polls = [(None, {P2: [_record(P2, o) for o in (7, 8)]}), (None, {P2: [_record(P2, o) for o in (9, 10)]})]
    adapter.poll(100, 0.1)
    adapter.poll(100, 0.1)  # polled on, but those records were dropped, not carried
    with pytest.raises(Rebalanced):
        adapter.mark({("t.samples", 2): 9})


def test_a_legacy_broker_slow_to_create_a_topic_is_an_outage_not_a_crash(monkeypatch):
    """Defect, seen once in the Kafka 0.9 smoke test: the broker did not answer the metadata that auto-creates a
    topic within 60 s, and kafka-python's KafkaTimeoutError ended the router with a traceback instead of a retry."""
    from kafka.errors import KafkaTimeoutError

    from dimee.common.errors import ServiceUnavailable

    class SlowBroker:
        def partitions_for(self, topic: str) -> None:
            raise KafkaTimeoutError("Failed to update metadata after 60.0 secs.")

    transport = KafkaTransport("127.0.0.1:9092", api_version=(0, 9))
    closed: list[bool] = []
    monkeypatch.setattr(transport, "producer", lambda: type("P", (), {"producer": SlowBroker(),
                                                                      "close": lambda self: closed.append(True)})())
    with pytest.raises(ServiceUnavailable):
        transport.ensure_topics(["t.samples"])
    assert closed == [True]
