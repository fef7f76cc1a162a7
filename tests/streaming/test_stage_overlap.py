"""The stage loop overlaps delivery with compute (dimee/streaming/stage.py): while a transaction commits, the next
batches are computed and then sent together in one transaction; a transaction that fails drops the batches
computed meanwhile, which are read again — every output exactly once either way."""

from __future__ import annotations

import threading
import time

import pytest
from dimee.producers.producer import ProduceOptions, produce

from dimee.common.errors import DeliveryError, Fenced, Rebalanced
from dimee.streaming.messages import Sample, parse
from dimee.streaming.stage import BatchLimits, Output, Stage
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.memory import InMemoryBroker
from tests.support.helpers import context, stream_records


class Echo(Stage):
    """Each sample's id to the `out` topic: a stage with nothing to compute but its delivery."""

    name = "echo"
    message_type = Sample

    def process(self, batch):
        return [Output("echo.out", message.id.encode(), message.id.encode()) for _, message in batch]


class SlowCommits:
    """The embedded broker, its transactions slow to commit (and the first `fail` of them refused with a
    rebalance), counting the commits."""

    def __init__(self, broker: InMemoryBroker, seconds: float, fail: int = 0) -> None:
        self.broker, self.seconds, self.fail, self.commits = broker, seconds, fail, 0
        self.supports_transactions = True

    def producer(self, transactional_id=None, replacing=None):
        producer, outer = self.broker.producer(transactional_id, replacing), self
        plain_commit = producer.commit

        def commit(consumer, mark=None):
            time.sleep(outer.seconds)
            outer.commits += 1
            if outer.fail:
                outer.fail -= 1
                producer.abort()
                raise Rebalanced("the group moved on (simulated)")
            plain_commit(consumer, mark)

        producer.commit = commit
        return producer

    def __getattr__(self, name):
        return getattr(self.broker, name)


def _run(transport: SlowCommits, broker: InMemoryBroker, records: int, idle_s: float = 1.0,
         limits: BatchLimits | None = None) -> list[bytes]:
    topics = Topics("overlap")
    produce(broker, topics, stream_records(records), ProduceOptions(progress=False, partitions=1))
    stage = Echo(context(transport, topics, limits=limits or BatchLimits(max_batch=4, max_wait_s=0.0)),
                 [topics.samples], "echo-group")
    thread = threading.Thread(target=stage.run, kwargs={"idle_exit_s": idle_s})
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    return [r.value for r in broker.read_all("echo.out")]


def test_batches_computed_during_a_commit_go_out_together_in_one_transaction():
    broker = InMemoryBroker(default_partitions=1)
    transport = SlowCommits(broker, seconds=0.15)
    out = _run(transport, broker, 40)
    assert sorted(out) == sorted(r["id"].encode() for r in stream_records(40))  # each once
    assert transport.commits < 10  # 10 batches of 4, fewer transactions: they were grouped


def test_within_the_commit_interval_batches_wait_until_the_size_limit_sends_them_as_one():
    """Commit by time or size, whichever comes first: with an interval no test run reaches, the first batch goes
    at once and then every three (max_queued_batches) go as one transaction."""
    broker = InMemoryBroker(default_partitions=1)
    transport = SlowCommits(broker, seconds=0.0)
    limits = BatchLimits(max_batch=4, max_wait_s=0.0, max_queued_batches=3, commit_interval_s=3600.0)
    out = _run(transport, broker, 40, limits=limits)
    assert sorted(out) == sorted(r["id"].encode() for r in stream_records(40))
    assert transport.commits == 4  # 10 batches: 1, then 3 + 3 + 3


def test_batches_kept_back_for_the_interval_are_sent_once_it_passes_without_new_records():
    broker = InMemoryBroker(default_partitions=1)
    transport = SlowCommits(broker, seconds=0.0)
    # long enough that no stall of a loaded machine between two batches of an echo outlasts it
    limits = BatchLimits(max_batch=4, max_wait_s=0.0, max_queued_batches=8, commit_interval_s=3.0)
    out = _run(transport, broker, 12, limits=limits)
    assert sorted(out) == sorted(r["id"].encode() for r in stream_records(12))
    assert transport.commits == 2  # the first batch at once, the two computed within the interval together


def test_a_stage_with_batches_kept_back_polls_only_until_they_are_due():
    """Kept back while a commit runs, a batch must not wait out a whole poll timeout for records that may not
    come: the stage asks again soon whether the broker took the batch in flight."""
    from dimee.streaming.delivery import AtLeastOnce, InFlight

    delivery = AtLeastOnce("echo", "echo-group", context(InMemoryBroker(), Topics("due"),
                                                         limits=BatchLimits(commit_interval_s=0.0)))
    assert delivery.poll_wait(0.5) == 0.5  # nothing kept back
    delivery.computed.append(InFlight([], [], None, 0.0, 1))
    assert delivery.poll_wait(0.5) < 0.5


def test_a_failed_transaction_drops_the_batches_computed_meanwhile_and_reads_them_again():
    broker = InMemoryBroker(default_partitions=1)
    transport = SlowCommits(broker, seconds=0.05, fail=2)
    out = _run(transport, broker, 40)
    assert sorted(out) == sorted(r["id"].encode() for r in stream_records(40))  # none lost, none twice
    ids = {parse(Sample, r.value).id for r in broker.read_all("overlap.samples")}
    assert len(ids) == 40


def test_batches_kept_back_across_a_rebalance_are_dropped_and_read_again():
    """A member joins while batches wait for the transaction in flight: those batches were polled in the old
    generation, so their mark is refused (their partitions may be another member's now) and they are read again
    from the committed offsets; the stream goes on, each output once."""
    broker = InMemoryBroker(default_partitions=1)
    topics = Topics("overlap")
    produce(broker, topics, stream_records(40), ProduceOptions(progress=False, partitions=1))
    stage: list[Echo] = []
    joined = []

    class JoinDuringTheFirstCommit(SlowCommits):
        def producer(self, transactional_id=None, replacing=None):
            producer = super().producer(transactional_id, replacing)
            slow_commit = producer.commit

            def commit(consumer, mark=None):
                slow_commit(consumer, mark)
                if not joined:  # once the next records are polled (unmarked until this commit ends), a member joins
                    deadline = time.monotonic() + 30
                    while stage[0].consumer.batch_generation is None and time.monotonic() < deadline:
                        time.sleep(0.005)
                    joined.append(broker.consumer([topics.samples], "echo-group"))

            producer.commit = commit
            return producer

    transport = JoinDuringTheFirstCommit(broker, seconds=0.05)
    stage.append(Echo(context(transport, topics, limits=BatchLimits(max_batch=4, max_wait_s=0.0)),
                      [topics.samples], "echo-group"))
    thread = threading.Thread(target=stage[0].run, kwargs={"idle_exit_s": 1.0})
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive() and joined
    out = [r.value for r in broker.read_all("echo.out")]
    assert sorted(out) == sorted(r["id"].encode() for r in stream_records(40))  # none lost, none twice


def test_a_poll_that_never_returns_ends_the_role_for_a_restart():
    """kafka-python's poll was seen never returning: the stage's watchdog exits (70) rather than stall for
    good; the supervisor restarts the role, which reads on from the committed offsets."""
    import subprocess
    import sys

    from tests.support.deadlines import scaled

    code = """
import time
import dimee.streaming.transport.base as base
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.memory import InMemoryBroker
from tests.support.helpers import context
from tests.streaming.test_stage_overlap import Echo

class StuckPolls:  # the embedded broker, whose consumers' polls never return
    supports_transactions = True

    def __init__(self, broker):
        self.broker = broker

    def consumer(self, *args, **kwargs):
        consumer = self.broker.consumer(*args, **kwargs)

        def poll(*args):
            consumer.polling_since = time.monotonic()  # as the Kafka adapter marks a poll, which never returns
            time.sleep(600)

        consumer.poll = poll
        return consumer

    def __getattr__(self, name):
        return getattr(self.broker, name)

base.POLL_STUCK_S = 0.5
Echo(context(StuckPolls(InMemoryBroker()), Topics("stuck")), ["stuck.samples"], "stuck-group").run()
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=scaled(60))
    assert proc.returncode == 70 and "stopped answering" in proc.stderr + proc.stdout


def test_a_consumer_that_never_joins_its_group_is_replaced(monkeypatch):
    """kafka-python's consumer was seen looking for its group coordinator for good: after REJOIN_S without
    settling in its group, the stage replaces it and the stream goes on, each output once."""
    import dimee.streaming.transport.base

    monkeypatch.setattr(dimee.streaming.transport.base, "REJOIN_S", 0.3)
    broker = InMemoryBroker(default_partitions=1)

    class FirstConsumerLost(SlowCommits):
        made = 0

        def consumer(self, *args, **kwargs):
            made = self.broker.consumer(*args, **kwargs)
            FirstConsumerLost.made += 1
            if FirstConsumerLost.made == 1:
                made.joined = lambda: False  # never settles in its group
                made.poll = lambda max_records, timeout_s: time.sleep(timeout_s) or []
            return made

    out = _run(FirstConsumerLost(broker, seconds=0.0), broker, 20, idle_s=3.0)
    assert FirstConsumerLost.made == 2
    assert sorted(out) == sorted(r["id"].encode() for r in stream_records(20))


class UnknownFailureAfterATakeover(SlowCommits):
    """The first commit fails with no reason given (as kafka-python's generic errors do), after a newer
    instance with the same transactional id has initialised it: the zombie case nobody reported as fenced."""

    def __init__(self, broker: InMemoryBroker) -> None:
        super().__init__(broker, seconds=0.0)
        self.successor = None

    def producer(self, transactional_id=None, replacing=None):
        producer = self.broker.producer(transactional_id, replacing)
        plain_commit, outer = producer.commit, self

        def commit(consumer, mark=None):
            if outer.successor is None:
                outer.successor = outer.broker.producer(transactional_id)  # the newer instance starts
                producer.abort()
                raise DeliveryError("Kafka did not commit the transaction: KafkaError (cause unknown)")
            plain_commit(consumer, mark)

        producer.commit = commit
        return producer


def test_a_commit_failing_for_an_unknown_reason_never_fences_a_newer_instance():
    """Defect: the stage replaced its producer with a plain init of the same transactional id, which fenced
    the newer instance (the zombie lived on, its successor died). The replacement takes over only from its own
    predecessor: here a newer instance holds the id, so this stage stops as fenced and the newer one commits."""
    broker = InMemoryBroker(default_partitions=1)
    transport = UnknownFailureAfterATakeover(broker)
    topics = Topics("zombie")
    produce(broker, topics, stream_records(4), ProduceOptions(progress=False, partitions=1))
    stage = Echo(context(transport, topics, limits=BatchLimits(max_batch=4, max_wait_s=0.0)),
                 [topics.samples], "echo-group")
    with pytest.raises(Fenced):
        stage.run(idle_exit_s=1.0)
    successor = transport.successor
    successor.begin()
    successor.send("echo.out", b"k", b"from the newer instance")
    successor.commit(broker.consumer([topics.samples], "other-group"))  # not fenced
    assert [r.value for r in broker.read_all("echo.out")] == [b"from the newer instance"]
