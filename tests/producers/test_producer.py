"""`dimee produce` reports only what the broker acknowledged (issue 8, item 1): a send the broker failed is
sent again, one it refuses for good is named, and nothing unacknowledged counts as produced. Before, the
pending sends were forgotten on the first failed flush and the retry flushed nothing: a refused record was
silently lost while the producer said it had produced it."""

from __future__ import annotations

from dimee.producers.producer import ProduceOptions, produce
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from dimee.common.errors import DeliveryError
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.memory import InMemoryBroker
from tests.support.helpers import stream_records


class FlakyBroker(InMemoryBroker):
    """Its first flush fails one send for a while (a timeout) and refuses another for good (too large)."""

    def producer(self, transactional_id=None):
        broker, inner = self, super().producer(transactional_id)

        class Producer:
            def __init__(self) -> None:
                self.batch: list = []
                self.flushes = 0

            def send(self, topic, key, value, timestamp_s=None, headers=()):
                self.batch.append((topic, key, value))

            def flush(self, timeout_s=None):
                self.flushes += 1
                batch, self.batch = self.batch, []
                failures = []
                for index, (topic, key, value) in enumerate(batch):
                    if self.flushes == 1 and key == b"s-3":
                        failures.append((index, KafkaTimeoutError("no answer")))
                    elif key == b"s-5":
                        failures.append((index, MessageSizeTooLargeError("larger than message.max.bytes")))
                    else:
                        inner.send(topic, key, value)
                if failures:
                    raise DeliveryError("some sends failed", failures)

            def close(self) -> None:
                broker.closed = True

        return Producer()


def test_only_acknowledged_sends_count_and_refusals_are_named():
    broker, topics = FlakyBroker(), Topics("flaky")
    records = stream_records(8)
    result = produce(broker, topics, records, ProduceOptions(progress=False))
    stored = sorted(r.key.decode() for r in broker.read_all(topics.samples))
    assert stored == sorted(r["id"] for r in records if r["id"] != "s-5")  # s-3 was sent again, once
    assert result.acknowledged == len(stored) == 7
    assert [label for label, _ in result.refused] == ["s-5"] and "MessageSizeTooLarge" in result.refused[0][1]
    assert not result.complete


class WholeBatchRefusal(InMemoryBroker):
    """Like Kafka: one record over the topic's limit gets its whole batch refused, the others with it."""

    def producer(self, transactional_id=None):
        inner = super().producer(transactional_id)

        class Producer:
            def __init__(self) -> None:
                self.batch: list = []

            def send(self, topic, key, value, timestamp_s=None, headers=()):
                self.batch.append((topic, key, value))

            def flush(self, timeout_s=None):
                batch, self.batch = self.batch, []
                if any(len(value) > 1000 for _, _, value in batch):
                    error = MessageSizeTooLargeError("the batch holds a record over max.message.bytes")
                    raise DeliveryError("refused", [(i, error) for i in range(len(batch))])
                for topic, key, value in batch:
                    inner.send(topic, key, value)

            def close(self) -> None:
                pass

        return Producer()


def test_records_refused_with_a_bad_batch_mate_are_tried_alone():
    broker, topics = WholeBatchRefusal(), Topics("batch")
    records = [*stream_records(3), {"id": "big", "text": "x" * 2000}]
    result = produce(broker, topics, records, ProduceOptions(progress=False))
    assert sorted(r.key.decode() for r in broker.read_all(topics.samples)) == ["s-0", "s-1", "s-2"]
    assert result.acknowledged == 3 and [label for label, _ in result.refused] == ["big"]


class _HeldFuture:
    """A kafka-python send future: done once the broker answers."""

    def __init__(self) -> None:
        self.is_done, self.exception = False, None

    def failed(self) -> bool:
        return self.exception is not None


class OutageLongerThanAFlush:
    """kafka-python's producer through an outage longer than a flush: the first flush times out with every
    send still held by the client; once the brokers are back, it delivers what it held."""

    def __init__(self) -> None:
        self.held: list = []
        self.delivered: list[bytes] = []
        self.flushes = 0

    def send(self, topic, key=None, value=None, **_):
        future = _HeldFuture()
        self.held.append((future, key))
        return future

    def flush(self, timeout=None):
        self.flushes += 1
        if self.flushes == 1:
            raise KafkaTimeoutError("Timeout after waiting for 30 secs.")
        for future, key in self.held:
            future.is_done = True
            self.delivered.append(key)
        self.held = []

    def close(self, timeout=None):
        pass


class KafkaClientTransport:
    supports_transactions = False

    def __init__(self) -> None:
        self.client = OutageLongerThanAFlush()

    def producer(self, transactional_id=None, replacing=None):
        from dimee.streaming.transport.kafka import KafkaProducerAdapter

        return KafkaProducerAdapter(self.client, envelope=False)  # type: ignore[arg-type]

    def ensure_topics(self, topics, partitions=3, replication=None):
        pass


def test_what_the_client_still_holds_after_a_timed_out_flush_is_waited_for_never_sent_again():
    """Defect: after all brokers were down 30 s, `dimee produce` sent the 500 samples in flight again as new
    records while kafka-python still held and later delivered them: 1,700 predictions for 1,200 ids."""
    transport = KafkaClientTransport()
    records = stream_records(6)
    result = produce(transport, Topics("outage"), records, ProduceOptions(progress=False))  # type: ignore[arg-type]
    assert sorted(transport.client.delivered) == sorted(r["id"].encode() for r in records)  # each once
    assert result.acknowledged == 6 and result.complete


def test_the_kafka_client_holds_a_send_through_an_outage_instead_of_failing_it(monkeypatch):
    """Defect: 10 retries 200 ms apart failed a send ~2 s into an outage; `dimee produce` then sent it again,
    and where the broker had written it, the samples topic held it twice (`make faults` i: one duplicate)."""
    import dimee.streaming.transport.kafka as kafka_transport

    seen: dict = {}

    class Capture:
        def __init__(self, **options) -> None:
            seen.update(options)

    monkeypatch.setattr(kafka_transport, "KafkaProducer", Capture)
    monkeypatch.setattr(kafka_transport.KafkaTransport, "_common", lambda self: {})
    kafka_transport.KafkaTransport("127.0.0.1:9").producer()
    assert seen.get("retries", float("inf")) == float("inf")  # bounded by time, not by a count
    assert seen["delivery_timeout_ms"] >= 60_000 and seen["enable_idempotence"]
