"""What a stage does when a service fails around it (issue 8): a commit refused after a rebalance drops
the batch for the partition's new owner instead of killing the role; a stop asked for during an outage
ends the role normally (exit 0), committing nothing past the outage."""

from __future__ import annotations

import threading

import pytest
from dimee.producers.producer import ProduceOptions, produce
from dimee.routers.router import Router
from dimee.state.memory import InMemoryCentroidStore
from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError, ProducerFencedError

from dimee.common.errors import Fenced, Rebalanced, ServiceUnavailable
from dimee.method.tiers import Tier
from dimee.streaming.runtime import StopFlag
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.kafka import KafkaConsumerAdapter, KafkaMark, KafkaTransactionalProducer
from dimee.streaming.transport.memory import InMemoryBroker
from tests.support.helpers import context, deployment, stream_records


class RebalancedConsumer:
    """kafka-python's consumer as it behaves after being evicted from its group."""

    def __init__(self) -> None:
        self.seeks: list = []
        self._coordinator = self  # kafka-python's group coordinator, asked for the committed offsets
        self._offset_fetch_futures: dict = {}

    def commit(self):
        raise CommitFailedError("kicked out of the group")

    def assignment(self):
        return {TopicPartition("t", 0), TopicPartition("t", 1)}

    def fetch_committed_offsets(self, partitions, timeout_ms=None):
        return {tp: OffsetAndMetadata(5, "", -1) for tp in partitions if tp.partition == 0}

    def seek(self, tp, offset):
        self.seeks.append((tp.partition, offset))

    def seek_to_beginning(self, tp):
        self.seeks.append((tp.partition, "beginning"))


def test_a_refused_commit_rewinds_and_reports_a_rebalance_instead_of_crashing():
    consumer = RebalancedConsumer()
    with pytest.raises(Rebalanced):
        KafkaConsumerAdapter(consumer).commit()
    assert sorted(consumer.seeks, key=str) == [(0, 5), (1, "beginning")]


class DownStore(InMemoryCentroidStore):
    """A Redis that is down for good."""

    def snapshot(self):
        raise ServiceUnavailable("cannot reach Redis (simulated)")


def test_sigterm_during_an_outage_ends_the_role_normally(workdir, cal):
    broker, topics, stop = InMemoryBroker(), Topics("outage"), StopFlag()
    store = DownStore()
    store.seed(cal.centroid_arrays(), cal.pool_sizes)
    produce(broker, topics, stream_records(10), ProduceOptions(progress=False))
    router = Router(context(broker, topics, stop=stop), deployment(workdir, cal), store)
    errors: list = []

    def run() -> None:
        try:
            router.run()
        except Exception as exc:  # the old behaviour: the outage escaped and the process exited 2
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    stop.wait(1.5)  # the router is retrying the store by now
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive() and errors == []
    assert all(broker.read_all(topics.tier(t.value)) == [] for t in Tier)  # nothing routed past the outage
    assert broker.consumer([topics.samples], topics.router_group).poll(100, 0.1) != []  # nor committed


class BrokerDownThenUp:
    """kafka-python's consumer while every broker is down, then back."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def poll(self, timeout_ms, max_records):
        from kafka.errors import KafkaConnectionError

        if self.failures:
            self.failures -= 1
            raise KafkaConnectionError("111 ECONNREFUSED")
        return {}


def test_a_poll_while_every_broker_is_down_is_an_outage_to_wait_out():
    consumer = KafkaConsumerAdapter(BrokerDownThenUp(failures=1))
    with pytest.raises(ServiceUnavailable):  # before: KafkaConnectionError escaped and the role exited 1
        consumer.poll(10, 0.1)
    assert consumer.poll(10, 0.1) == []


class FencedInFlight:
    """kafka-python's producer after the broker fenced it while its records were in flight: every later
    transactional call fails with a generic "error state" error; the fencing is the manager's last error."""

    class Manager:
        last_error = ProducerFencedError()

    _transaction_manager = Manager()

    def send_offsets_to_transaction(self, offsets, group):
        raise KafkaError("Cannot execute transactional method because we are in an error state")

    def abort_transaction(self):
        raise AssertionError("a fenced producer must not be aborted and replaced: that fences the newer one")


def test_a_producer_fenced_while_sending_reports_fenced_not_a_retriable_failure():
    """Defect: the generic error went out as a DeliveryError, so the stage replaced its producer, whose init
    fenced the newer instance: the zombie lived on and the successor died."""
    producer = KafkaTransactionalProducer(FencedInFlight())  # type: ignore[arg-type]
    with pytest.raises(Fenced):
        producer.commit(None, KafkaMark({}, None))  # type: ignore[arg-type]


def _manager_in_a_transaction():
    """kafka-python's own transaction manager (no broker needed), initialised and inside a transaction."""
    from kafka.producer.transaction_manager import ProducerIdAndEpoch, TransactionManager, TransactionState

    manager = TransactionManager(transactional_id="t", transaction_timeout_ms=60000, api_version=(4, 0))
    manager._transition_to(TransactionState.INITIALIZING)
    manager.set_producer_id_and_epoch(ProducerIdAndEpoch(7, 0))
    manager._transition_to(TransactionState.READY)
    manager._transition_to(TransactionState.IN_TRANSACTION)
    return manager


class BumpingZombie:
    """kafka-python's producer right after a send refused for a stale epoch: its manager is bumping the epoch,
    its last error cleared, and the commit fails with a generic error."""

    def __init__(self) -> None:
        self._transaction_manager = _manager_in_a_transaction()
        self._transaction_manager.bump_producer_id_and_epoch()

    def send_offsets_to_transaction(self, offsets, group):
        from kafka.errors import IllegalStateError

        raise IllegalStateError("Cannot send offsets to transaction because the producer is not in an active "
                                "transaction")

    def abort_transaction(self):
        raise AssertionError("a producer fenced mid-bump must not be aborted and replaced")


def test_a_commit_failing_while_the_epoch_is_bumped_reports_fenced():
    """Defect (a clean-clone `make test` failed on it): the generic error went out as a DeliveryError, the
    stage renewed the id and fenced the newer instance."""
    producer = KafkaTransactionalProducer(BumpingZombie())  # type: ignore[arg-type]
    with pytest.raises(Fenced):
        producer.commit(None, KafkaMark({}, None))  # type: ignore[arg-type]


def test_a_send_refused_for_a_stale_epoch_is_fatal_not_an_epoch_bump():
    """kafka-python 3.0.12 bumps the epoch after INVALID_PRODUCER_EPOCH and, when that bump is refused, inits
    the id afresh: a zombie then fences its successor. The transport makes both paths end fenced."""
    from types import SimpleNamespace

    from kafka.errors import InvalidProducerEpochError
    from kafka.producer.transaction_manager import TransactionalRequestResult

    from dimee.streaming.transport.kafka import _strict_transactions

    manager = _manager_in_a_transaction()
    _strict_transactions(SimpleNamespace(_transaction_manager=manager))  # type: ignore[arg-type]
    assert manager.classify_batch_error(InvalidProducerEpochError(), None) == manager.ERROR_CLASS_FATAL
    result = TransactionalRequestResult()
    manager._restart_epoch_bump_without_producer_id(60000, result)  # the broker refused a bump
    assert manager.has_fatal_error() and result.failed and not manager._pending_requests


def test_a_router_waits_for_lost_centroids_and_dead_letters_nothing(workdir, cal):
    """Defect: after a Redis FLUSHALL the router dead-lettered every sample (NotSeeded, 300 of 300 in 25 s)
    and readiness said "unreachable". Now it waits, commits nothing past the gap, says what is wrong, and goes
    on by itself once the centroids are restored."""
    from dimee.streaming.health import HEALTH

    broker, topics, stop = InMemoryBroker(), Topics("lost"), StopFlag()
    store = InMemoryCentroidStore()  # up, and empty: as after a flush
    produce(broker, topics, stream_records(10), ProduceOptions(progress=False))
    router = Router(context(broker, topics, stop=stop), deployment(workdir, cal), store)
    thread = threading.Thread(target=router.run, kwargs={"idle_exit_s": 2.0})
    thread.start()
    stop.wait(1.5)  # the router has its batch and waits on the store by now
    ok, detail = HEALTH.ready()
    assert not ok and any("centroid store holds no centroids" in r and "--only-missing" in r
                          for r in detail["waiting_for"])
    assert router.dead_letters == 0 and broker.read_all(topics.dead_letter) == []
    assert all(broker.read_all(topics.tier(t.value)) == [] for t in Tier)
    assert store.restore(cal.centroid_arrays(), cal.pool_sizes) == len(cal.centroids)
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert sum(len(broker.read_all(topics.tier(t.value))) for t in Tier) == 10 and router.dead_letters == 0


def test_a_batch_given_up_on_makes_its_transaction_abortable_never_committed():
    """Defect (make faults, every broker down 45 s): a batch whose retries ran out only failed its future, the
    transaction then committed the worker's input offsets without those outputs, and 86 predictions were lost.
    Now such a failure makes the transaction abortable: its commit is refused and the batch read again."""
    from types import SimpleNamespace

    from kafka.errors import KafkaConnectionError, RequestTimedOutError

    from dimee.streaming.transport.kafka import _strict_transactions

    manager = _manager_in_a_transaction()
    _strict_transactions(SimpleNamespace(_transaction_manager=manager))  # type: ignore[arg-type]
    for error in (KafkaConnectionError(), RequestTimedOutError()):
        assert manager.classify_batch_error(error, None) == manager.ERROR_CLASS_ABORTABLE
