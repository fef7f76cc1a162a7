"""KafkaConsumerAdapter.lag (dimee_consumer_lag) measures from the consumer's own position, which passes the
transaction markers and aborted batches after the last record returned: caught up, 0 behind, not 1 per commit
marker. A fake kafka-python consumer here; tests/integration/test_consumer_lag.py checks it on the real Kafka."""

from __future__ import annotations

from types import SimpleNamespace

from kafka import OffsetAndMetadata, TopicPartition

from dimee.streaming.transport.kafka import KafkaConsumerAdapter

TP, OTHER = TopicPartition("t", 0), TopicPartition("t", 1)


class _Consumer:
    """What lag() may ask kafka-python: the assignment, the last fetch's high watermark, the read position."""

    def __init__(self, highwater: dict, position: dict) -> None:
        self._highwater, self._position = highwater, position

    def assignment(self) -> set:
        return set(self._highwater)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._highwater[tp]

    @property
    def _subscription(self) -> SimpleNamespace:  # kafka-python's subscription state: the fetch positions
        return SimpleNamespace(assignment={tp: SimpleNamespace(position=OffsetAndMetadata(offset, "", -1))
                                           for tp, offset in self._position.items()})


def test_a_consumer_past_the_last_commit_marker_is_zero_behind():
    # records 10..14 returned (next offset 15), the commit marker at 15 passed: position 16 = the high watermark
    adapter = KafkaConsumerAdapter(_Consumer({TP: 16, OTHER: 40}, {TP: 16, OTHER: 31}))  # type: ignore[arg-type]
    adapter.next_offsets = {TP: 15, OTHER: 30}
    assert adapter.lag() == {("t", 0): 0, ("t", 1): 9}


def test_records_not_yet_read_are_behind():
    adapter = KafkaConsumerAdapter(_Consumer({TP: 20}, {TP: 15}))  # type: ignore[arg-type]
    adapter.next_offsets = {TP: 15}
    assert adapter.lag() == {("t", 0): 5}
