"""`dimee produce` reports only what the broker acknowledged (issue 8, item 1): a send the broker failed is
sent again, one it refuses for good is named, and nothing unacknowledged counts as produced. Before, the
pending sends were forgotten on the first failed flush and the retry flushed nothing: a refused record was
silently lost while the producer said it had produced it."""

from __future__ import annotations

import math
import threading

import pytest
from dimee.producers.producer import ProduceOptions, produce
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from dimee.common.errors import DeliveryError, Refused, Unanswered
from dimee.streaming.runtime import StopFlag
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.memory import InMemoryBroker
from tests.support.helpers import stream_records


class FlakyBroker(InMemoryBroker):
    """Its first flush fails one send for a while (a timeout) and refuses another for good (too large)."""

    supports_transactions = False  # the plain producer's path (brokers before 0.11)

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

    supports_transactions = False  # the plain producer's path (brokers before 0.11)

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


class _Answering:
    """A transactional producer of the embedded broker (which writes a transaction's sends only when it
    commits) whose flush answers as `verdict` says of the transaction's sends."""

    def __init__(self, inner, verdict) -> None:
        self.inner, self.verdict = inner, verdict
        self.sent: list = []
        self.closed = False

    def begin(self) -> None:
        self.inner.begin()
        self.sent = []

    def send(self, topic, key, value, timestamp_s=None, headers=()):
        self.inner.send(topic, key, value)
        self.sent.append((key, value))

    def flush(self, timeout_s=None):
        self.verdict(self.sent)

    def commit(self, consumer, mark=None):
        self.inner.commit(consumer, mark)

    def abort(self) -> None:
        self.inner.abort()

    def close(self) -> None:
        self.closed = True


def _held(sent) -> None:
    """kafka-python after every broker was SIGKILLed: the flush times out, every send still held."""
    raise DeliveryError("still held by the client", [], list(range(len(sent))))


class StuckClients(InMemoryBroker):
    """The first `stuck` clients it builds never complete a send (issue 28: kafka-python held 285 of 300
    sends for minutes after the cluster was back, while a fresh client produced fine)."""

    def __init__(self, stuck: int | float) -> None:
        super().__init__()
        self.stuck, self.clients = stuck, []

    def producer(self, transactional_id=None, replacing=None):
        inner = super().producer(transactional_id, replacing)
        client = _Answering(inner, _held if len(self.clients) < self.stuck else lambda sent: None)
        self.clients.append(client)
        return client


def _produce_in_time(broker, records, options: ProduceOptions):
    """produce() on a thread; None if it has not returned in a minute (then stopped)."""
    out: list = []
    thread = threading.Thread(target=lambda: out.append(produce(broker, Topics("stuck"), records, options)),
                              daemon=True)
    thread.start()
    thread.join(60)
    options.stop.set()  # ends a produce that hangs, so the test run goes on
    return out[0] if out else None


def test_a_client_that_never_completes_its_sends_is_replaced_and_nothing_is_duplicated():
    """Defect (issue 28 item 4): after every broker was SIGKILLed for 45 s, `dimee produce` waited for ever on
    the sends its client held, never delivered them, and exited 1 at SIGTERM. A chunk is now one transaction:
    sent again through a fresh client, whose init aborts what the stuck one left open."""
    broker, records = StuckClients(stuck=1), stream_records(6)
    result = _produce_in_time(broker, records, ProduceOptions(progress=False))
    assert result is not None, "produce hung on a client that never completes its sends"
    stored = [r.key.decode() for r in broker.read_all(Topics("stuck").samples)]
    assert sorted(stored) == sorted(r["id"] for r in records)  # each once, to a read_committed reader
    assert result.acknowledged == 6 and result.complete
    assert broker.clients[0].closed


def test_sends_not_acknowledged_within_the_bound_are_given_up_and_named():
    broker, records = StuckClients(stuck=math.inf), stream_records(6)
    result = _produce_in_time(broker, records, ProduceOptions(progress=False, flush_every=2, give_up_s=0.5))
    assert result is not None, "produce did not give up"
    assert broker.read_all(Topics("stuck").samples) == []
    assert result.acknowledged == 0 and result.unacknowledged == ["s-0", "s-1"]  # nothing after them is sent
    assert result.gave_up is not None and not result.complete


def _too_large_refuses_the_batch(sent) -> None:
    if any(len(value) > 1000 for _, value in sent):
        error = MessageSizeTooLargeError("the batch holds a record over max.message.bytes")
        raise DeliveryError("refused", [(i, error) for i in range(len(sent))])


class RefusingWholeTransactions(InMemoryBroker):
    def producer(self, transactional_id=None, replacing=None):
        return _Answering(super().producer(transactional_id, replacing), _too_large_refuses_the_batch)




def test_what_a_waiting_source_gave_so_far_is_sent_while_it_waits():
    """A transaction is not held open while the source waits (stdin between lines): its records go now."""
    broker, topics, records, more = InMemoryBroker(), Topics("waiting"), stream_records(3), threading.Event()

    def source():
        yield from records[:2]
        more.wait(60)
        yield records[2]

    stop = StopFlag()
    options = ProduceOptions(progress=False, stop=stop)
    thread = threading.Thread(target=produce, args=(broker, topics, source(), options), daemon=True)
    thread.start()
    try:
        for _ in range(600):
            if len(broker.read_all(topics.samples)) == 2:
                break
            stop.wait(0.1)
        assert len(broker.read_all(topics.samples)) == 2
    finally:
        more.set()
        thread.join(60)
        stop.set()
    assert len(broker.read_all(topics.samples)) == 3


class TransactionalClient(OutageLongerThanAFlush):
    """kafka-python's transactional producer; `stuck`: one that never completes a send (issue 28)."""

    def __init__(self, stuck: bool, log: list) -> None:
        super().__init__()
        self.stuck, self.log, self.open = stuck, log, False

    def begin_transaction(self):
        self.open, self.held = True, []

    def flush(self, timeout=None):
        if self.stuck:
            raise KafkaTimeoutError("Timeout after waiting for 30 secs.")
        for future, _ in self.held:
            future.is_done = True

    def commit_transaction(self):
        self.log += [key for _, key in self.held]  # what a read_committed reader sees
        self.open = False

    def close(self, timeout=None):
        self.closed = True


class KafkaTransactionsTransport:
    supports_transactions = True

    def __init__(self) -> None:
        self.log: list[bytes] = []
        self.clients: list[TransactionalClient] = []

    def producer(self, transactional_id=None, replacing=None):
        from dimee.streaming.transport.kafka import KafkaTransactionalProducer

        assert transactional_id is not None
        self.clients.append(TransactionalClient(stuck=not self.clients, log=self.log))
        return KafkaTransactionalProducer(self.clients[-1])  # type: ignore[arg-type]

    def ensure_topics(self, topics, partitions=3, replication=None):
        pass


def test_the_kafka_adapter_commits_a_chunk_through_a_fresh_client_once_the_first_is_stuck():
    transport, records = KafkaTransactionsTransport(), stream_records(5)
    result = _produce_in_time(transport, records, ProduceOptions(progress=False))
    assert result is not None and result.acknowledged == 5 and result.complete
    assert sorted(transport.log) == sorted(r["id"].encode() for r in records)
    stuck = transport.clients[0]
    assert len(transport.clients) == 2 and stuck.closed and stuck.open  # never committed: the new init aborts it


@pytest.mark.parametrize("refusing", [WholeBatchRefusal, RefusingWholeTransactions])
def test_records_refused_with_a_bad_batch_mate_are_sent_again_without_it(refusing):
    """A broker refusing a whole batch (plain sends) or a whole transaction for one bad record in it: the others
    are sent again without it, and only it is reported."""
    broker, topics = refusing(), Topics("batch")
    records = [*stream_records(3), {"id": "big", "text": "x" * 2000}]
    result = produce(broker, topics, records, ProduceOptions(progress=False))
    assert sorted(r.key.decode() for r in broker.read_all(topics.samples)) == ["s-0", "s-1", "s-2"]
    assert result.acknowledged == 3 and [label for label, _ in result.refused] == ["big"]


class RefusedAtSendThenAFailedCommit(InMemoryBroker):
    """A client that refuses one record as it is sent (too large for it), and whose first commit fails."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_commits = 0

    def producer(self, transactional_id=None, replacing=None):
        inner, outer = super().producer(transactional_id, replacing), self

        class Client(_Answering):
            def send(self, topic, key, value, timestamp_s=None, headers=()):
                if key == b"big":
                    raise Refused("MessageSizeTooLargeError: the record is larger than the client's limit")
                super().send(topic, key, value, timestamp_s, headers)

            def commit(self, consumer, mark=None):
                if outer.failed_commits == 0:
                    outer.failed_commits += 1
                    raise DeliveryError("Kafka did not commit the transaction (simulated)")
                super().commit(consumer, mark)

        return Client(inner, lambda sent: None)


def test_a_record_refused_at_send_is_reported_once_however_often_its_chunk_is_tried():
    """Defect: the chunk was tried again whole after a failed commit, and the refused record reported each time."""
    broker, topics = RefusedAtSendThenAFailedCommit(), Topics("refused-once")
    records = [*stream_records(3), {"id": "big", "text": "x"}]
    result = produce(broker, topics, records, ProduceOptions(progress=False))
    assert broker.failed_commits == 1
    assert sorted(r.key.decode() for r in broker.read_all(topics.samples)) == ["s-0", "s-1", "s-2"]
    assert [label for label, _ in result.refused] == ["big"] and result.acknowledged == 3


class LateCommitAnswers(InMemoryBroker):
    """Its first client's first commit is not answered in time (the coordinator's broker was killed): the
    answer comes on the `answered_on`-th wait for it, as `answer` says (a commit, or a refusal)."""

    def __init__(self, answered_on: int | float, answer: str) -> None:
        super().__init__()
        self.answered_on, self.answer, self.waits, self.clients = answered_on, answer, 0, []

    def producer(self, transactional_id=None, replacing=None):
        inner, broker = super().producer(transactional_id, replacing), self

        class Client(_Answering):
            def commit(self, consumer, mark=None):
                if len(broker.clients) > 1 or broker.waits:
                    return super().commit(consumer, mark)

                def answer(seconds: float) -> None:
                    broker.waits += 1
                    if broker.waits < broker.answered_on:
                        raise Unanswered("still no answer", answer)
                    if broker.answer == "refused":
                        inner.abort()
                        raise DeliveryError("Kafka answered the transaction's commit late, with an error")
                    inner.commit(consumer, mark)

                raise Unanswered("Kafka did not answer the transaction's commit in 20 s", answer)

        client = Client(inner, lambda sent: None)
        self.clients.append(client)
        return client


@pytest.mark.parametrize("answer", ["committed", "refused"])
def test_a_commit_answered_late_is_waited_for_and_its_chunk_delivered_once(answer):
    """Defect (the failover test under load): a commit Kafka did not answer in 20 s, while the broker it was sent
    to restarted, was given up at once: its 6 samples were named not acknowledged and never reached the router,
    though kafka-python went on retrying it. It is now waited for: a late commit counts, a late refusal is sent
    again through a fresh client."""
    broker, records = LateCommitAnswers(answered_on=3, answer=answer), stream_records(6)
    result = _produce_in_time(broker, records, ProduceOptions(progress=False))
    assert result is not None and result.complete and result.acknowledged == 6
    stored = [r.key.decode() for r in broker.read_all(Topics("stuck").samples)]
    assert sorted(stored) == sorted(r["id"] for r in records)  # each once, to a read_committed reader
    assert broker.waits == 3 and len(broker.clients) == (1 if answer == "committed" else 2)


def test_a_commit_still_unanswered_is_named_never_sent_again_and_the_rest_go_on(monkeypatch):
    """kafka-python may never answer a commit after its coordinator's broker died (the failover test under load
    waited 300 s for nothing and then sent nothing more): past LATE_ANSWER_S the chunk is named as not
    acknowledged, and the rest go through a fresh client."""
    monkeypatch.setattr("dimee.producers.publisher.LATE_ANSWER_S", 0.3)
    broker, records = LateCommitAnswers(answered_on=math.inf, answer="committed"), stream_records(6)
    result = _produce_in_time(broker, records, ProduceOptions(progress=False, flush_every=2))
    assert result is not None and result.gave_up is None
    assert result.unacknowledged == ["s-0", "s-1"] and result.acknowledged == 4
    stored = sorted(r.key.decode() for r in broker.read_all(Topics("stuck").samples))
    assert stored == ["s-2", "s-3", "s-4", "s-5"] and len(broker.clients) == 2  # s-0, s-1 never sent again
