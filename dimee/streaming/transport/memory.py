"""The embedded broker: topics with partitions, key-hash partitioning, consumer groups whose members share
partitions, committed offsets and transactions (outputs and offsets committed together; a newer producer
with the same transactional id fences the older), so the same role code runs here and on Kafka.
Thread-safe; one process-wide instance per memory:// URL."""

from __future__ import annotations

import threading
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass
from typing import cast, overload

from dimee.common.errors import Fenced, Rebalanced
from dimee.streaming.transport.base import Consumer, ConsumerGuard, Headers, Record, TransactionalProducer

_BROKERS: dict[str, InMemoryBroker] = {}
_BROKERS_LOCK = threading.Lock()


def shared_broker(url: str = "memory://") -> InMemoryBroker:
    with _BROKERS_LOCK:
        return _BROKERS.setdefault(url, InMemoryBroker())


def partition_for(key: bytes | None, partitions: int, counter: int) -> int:
    return counter % partitions if key is None else zlib.crc32(key) % partitions


class InMemoryBroker:
    supports_transactions = True

    def __init__(self, default_partitions: int = 3) -> None:
        self.default_partitions = default_partitions
        self._logs: dict[str, list[list[tuple[bytes | None, bytes]]]] = {}
        self._committed: dict[tuple[str, str, int], int] = {}
        self._members: dict[str, list[_MemoryConsumer]] = defaultdict(list)
        self._lock = threading.Condition()  # re-entrant: a commit appends while holding it
        self._sent = 0
        self._epochs: dict[str, int] = {}  # transactional id → epoch of its newest producer

    # -- Transport ------------------------------------------------------------------------------------
    def ensure_topics(self, topics: list[str], partitions: int | None = None, replication: int | None = None) -> None:
        with self._lock:
            for topic in topics:
                self._logs.setdefault(topic, [[] for _ in range(partitions or self.default_partitions)])

    @overload
    def producer(self, transactional_id: None = None, replacing: None = None) -> _MemoryProducer: ...

    @overload
    def producer(self, transactional_id: str, replacing: TransactionalProducer | None = None
                 ) -> _MemoryTransactionalProducer: ...

    def producer(self, transactional_id: str | None = None,
                 replacing: TransactionalProducer | None = None) -> _MemoryProducer:
        if transactional_id is None:
            return _MemoryProducer(self)
        with self._lock:
            current = self._epochs.get(transactional_id, 0)
            if isinstance(replacing, _MemoryTransactionalProducer) and replacing.epoch != current:
                raise Fenced(f"transactional id {transactional_id!r} was taken over by a newer instance")
            epoch = self._epochs[transactional_id] = current + 1
        return _MemoryTransactionalProducer(self, transactional_id, epoch)

    def consumer(self, topics: list[str], group_id: str, max_poll_interval_s: float = 300.0,
                 read_committed: bool = False) -> _MemoryConsumer:
        self.ensure_topics(topics)
        member = _MemoryConsumer(self, topics, group_id)
        with self._lock:
            self._members[group_id].append(member)
            self._rebalance(group_id)
        return member

    def close(self) -> None:  # the broker outlives its clients, like a real one
        pass

    # -- internals ------------------------------------------------------------------------------------
    def append(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.ensure_topics([topic])
        with self._lock:
            log = self._logs[topic]
            log[partition_for(key, len(log), self._sent)].append((key, value))
            self._sent += 1
            self._lock.notify_all()

    def _rebalance(self, group_id: str) -> None:
        """Round-robin every partition of the group's topics over its live members (like Kafka's)."""
        members = self._members[group_id]
        for member in members:
            member.assigned = {}
            member.generation += 1
        if not members:
            return
        pairs = [(t, p) for t in sorted({t for m in members for t in m.topics}) for p in range(len(self._logs[t]))]
        for i, (topic, partition) in enumerate(pairs):
            member = members[i % len(members)]
            member.assigned[(topic, partition)] = self._committed.get((group_id, topic, partition), 0)

    def leave(self, member: _MemoryConsumer) -> None:
        with self._lock:
            if member in self._members[member.group_id]:
                self._members[member.group_id].remove(member)
                self._rebalance(member.group_id)

    def end_offsets(self, topic: str) -> list[int]:
        with self._lock:
            return [len(part) for part in self._logs.get(topic, [])]

    def read_all(self, topic: str) -> list[Record]:
        with self._lock:
            return [Record(topic, p, o, k, v) for p, part in enumerate(self._logs.get(topic, []))
                    for o, (k, v) in enumerate(part)]


class _MemoryProducer:
    def __init__(self, broker: InMemoryBroker) -> None:
        self.broker = broker

    def send(self, topic: str, key: bytes | None, value: bytes, timestamp_s: float | None = None,
             headers: Headers = ()) -> None:
        self.broker.append(topic, key, value)

    def flush(self, timeout_s: float | None = None) -> None:
        pass  # appends are acknowledged synchronously

    def acknowledged(self) -> bool:
        return True

    def expect(self, topics: list[str]) -> None:
        pass  # every partition is known

    def close(self) -> None:
        pass


class _MemoryTransactionalProducer(_MemoryProducer):
    """Sends wait in the transaction until commit(), which appends them and commits the consumer's offsets
    under the broker's lock, so no reader ever sees part of a transaction."""

    def __init__(self, broker: InMemoryBroker, transactional_id: str, epoch: int) -> None:
        super().__init__(broker)
        self.transactional_id, self.epoch = transactional_id, epoch
        self._pending: list[tuple[str, bytes | None, bytes]] | None = None

    def begin(self) -> None:
        self._pending = []

    def send(self, topic: str, key: bytes | None, value: bytes, timestamp_s: float | None = None,
             headers: Headers = ()) -> None:
        if self._pending is None:
            raise RuntimeError("send outside a transaction: call begin() first")
        self._pending.append((topic, key, value))

    def commit(self, consumer: Consumer | None, mark: object | None = None) -> None:
        member = cast(_MemoryConsumer | None, consumer)  # this broker's, as is its mark
        with self.broker._lock:
            try:
                mark = cast(_Mark | None, mark or (None if member is None else member.mark()))
            except Rebalanced:
                self._pending = None
                raise
            if self.broker._epochs[self.transactional_id] != self.epoch:
                self._pending = None
                raise Fenced(f"transactional id {self.transactional_id!r} was taken over by a newer instance")
            if member is not None and mark is not None and mark.generation != member.generation:
                self._pending = None  # the rebalance rewound the consumer to its committed offsets
                raise Rebalanced(f"group {member.group_id!r} rebalanced before the transaction committed")
            for topic, key, value in self._pending or []:
                self.broker.append(topic, key, value)
            if member is not None and mark is not None:
                member.commit(mark)
        self._pending = None

    def abort(self) -> None:
        self._pending = None


@dataclass(frozen=True)
class _Mark:
    positions: dict[tuple[str, int], int]
    generation: int  # the group generation the records since the previous mark were polled in


class _MemoryConsumer(ConsumerGuard):
    """A member of its group until closed. Its polls return within their timeout, so they are not marked for
    the guard (which a test marks by hand)."""

    def __init__(self, broker: InMemoryBroker, topics: list[str], group_id: str) -> None:
        self.broker, self.topics, self.group_id = broker, list(topics), group_id
        self.assigned: dict[tuple[str, int], int] = {}  # (topic, partition) → next offset to return
        self.closed = False
        self.generation = 0  # rebalances seen
        self.batch_generation: int | None = None  # the generation the uncommitted records were polled in

    def _take(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        for (topic, partition), position in sorted(self.assigned.items()):
            log = self.broker._logs[topic][partition]
            while position < len(log) and len(out) < max_records:
                key, value = log[position]
                out.append(Record(topic, partition, position, key, value))
                position += 1
            self.assigned[(topic, partition)] = position
        return out

    def lag(self) -> dict[tuple[str, int], int]:
        with self.broker._lock:
            return {(topic, partition): len(self.broker._logs[topic][partition]) - position
                    for (topic, partition), position in self.assigned.items()}

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        deadline = time.monotonic() + timeout_s
        with self.broker._lock:
            while True:
                records = self._take(max_records)
                if records and self.batch_generation is None:
                    self.batch_generation = self.generation
                remaining = deadline - time.monotonic()
                if records or remaining <= 0 or self.closed:
                    return records
                self.broker._lock.wait(remaining)

    def joined(self) -> bool:
        return not self.closed

    def mark(self, carried: dict[tuple[str, int], int] | None = None) -> _Mark:
        with self.broker._lock:
            polled_in = self.generation if self.batch_generation is None else self.batch_generation
            self.batch_generation = None
            if polled_in != self.generation:  # as Kafka's adapter: their partitions may be another member's now
                raise Rebalanced(f"group {self.group_id!r} rebalanced after these records were polled")
            if carried is None:
                return _Mark(dict(self.assigned), polled_in)
            astray = {p: (end, self.assigned.get(p)) for p, end in carried.items() if self.assigned.get(p) != end}
            if astray:  # as Kafka's adapter
                raise Rebalanced(f"the consumer does not stand where these records end: {astray}")
            return _Mark(dict(carried), polled_in)

    def commit(self, mark: object | None = None) -> None:
        with self.broker._lock:
            try:
                positions = self.mark().positions if mark is None else cast(_Mark, mark).positions
            except Rebalanced:
                self.rewind()
                raise
            for (topic, partition), position in positions.items():
                if (topic, partition) in self.assigned:  # a partition given to another member is its to commit
                    self.broker._committed[(self.group_id, topic, partition)] = position

    def rewind(self) -> dict[tuple[str, int], int]:
        with self.broker._lock:
            for topic, partition in self.assigned:
                self.assigned[(topic, partition)] = self.committed(topic, partition)
            self.batch_generation = None
            return dict(self.assigned)

    def committed(self, topic: str, partition: int) -> int:
        return self.broker._committed.get((self.group_id, topic, partition), 0)

    def close(self) -> None:
        self.closed = self.released = True
        self.broker.leave(self)
