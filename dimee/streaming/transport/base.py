"""What every role needs from a broker: keyed sends with acknowledgement, group consumers with manual commit,
and transactions where the broker has them.

At-least-once: a role polls a batch, sends its outputs, calls `Producer.flush()` (which raises if any send
was not acknowledged), and only then `Consumer.commit()`, which commits exactly the records it has returned
so far. A consumer that dies before committing leaves its records to the next member of its group.

Exactly-once (consume-transform-produce): a transactional producer `begin()`s, sends the batch's outputs and
`commit(consumer)`s them together with the consumer's positions in one transaction; a consumer that reads
`read_committed` never sees the outputs of an aborted or unfinished transaction. A second producer with the
same transactional id fences the first (`Fenced`); a rebalance before the commit aborts it (`Rebalanced`).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Protocol

from dimee.method.tiers import TIER_NAMES


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a tombstone


class _Named:
    """A topic or group name under the prefix, read as an attribute: `topics.samples` is "PREFIX.samples"."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def __get__(self, topics: Topics, owner: type) -> str:
        return f"{topics.prefix}.{self.suffix}"


@dataclass(frozen=True)
class Topics:
    """Topic names under one prefix (DESIGN.md section 3)."""

    prefix: str = "dimee"

    samples = _Named("samples")
    predictions = _Named("predictions")
    dead_letter = _Named("dead-letter")
    feedback = _Named("feedback")  # observed pools reported by workers, for label-free centroid adaptation

    def tier(self, tier: str) -> str:
        return f"{self.prefix}.{tier}"

    def all(self) -> list[str]:
        return [self.samples, *(self.tier(t) for t in TIER_NAMES), self.predictions, self.dead_letter,
                self.feedback]

    # Consumer groups: every instance of a role shares one, so the broker spreads partitions over them.
    router_group = _Named("router")
    sink_group = _Named("sink")
    feedback_group = _Named("feedback")

    def worker_group(self, tier: str) -> str:
        return f"{self.prefix}.worker.{tier}"

    def tail_group(self, instance: str | None = None) -> str:
        """One group per watcher (the host, or --instance-id), stable across restarts: a restarted tail
        picks up where it stopped instead of leaving one more abandoned group on the broker."""
        return f"{self.prefix}.tail.{instance or socket.gethostname()}"


Headers = tuple[tuple[str, bytes], ...]


class Producer(Protocol):
    def send(self, topic: str, key: bytes | None, value: bytes, timestamp_s: float | None = None,
             headers: Headers = ()) -> None:
        """Timestamp and headers are kept where the broker has them (Kafka 0.11+) and dropped elsewhere."""

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every send so far is acknowledged; raise if one failed."""

    def acknowledged(self) -> bool:
        """Whether every send since the last flush has its answer (so flush would not wait); never blocks."""

    def close(self) -> None: ...


class Consumer(Protocol):
    def poll(self, max_records: int, timeout_s: float) -> list[Record]: ...

    def joined(self) -> bool:
        """Whether the consumer is a settled member of its group (asked without a request)."""

    def mark(self) -> object:
        """Where the consumer stands now (every position, and the group generation the records since the last
        mark were polled in), to commit later while it polls on: a stage commits a batch only once the broker
        has taken its outputs, which may be after it polled the next batch."""

    def commit(self, mark: object | None = None) -> None:
        """Commit the positions of `mark`, or everything returned by poll so far."""

    def rewind(self) -> None:
        """Go back to the committed offsets: what was polled since is returned again."""

    def lag(self) -> dict[tuple[str, int], int]:
        """Per assigned (topic, partition): records between the read position and the partition's end, as
        last seen (no extra broker round trip)."""

    def close(self) -> None: ...


class TransactionalProducer(Producer, Protocol):
    def begin(self) -> None: ...

    def commit(self, consumer: Consumer, mark: object | None = None) -> None:
        """Commit the sends since begin() and the consumer's positions of `mark` (default: everything it
        returned so far), atomically. Raises `Fenced`, `Rebalanced` (the group moved on: the transaction was
        aborted; the caller rewinds the consumer to its committed offsets) or `ServiceUnavailable` (aborted;
        the caller may run the transaction again). Touches only the producer when given a mark, so it may run
        on another thread than the one polling the consumer."""

    def abort(self) -> None: ...


class Transport(Protocol):
    supports_transactions: bool

    def producer(self, transactional_id: str | None = None, replacing: Producer | None = None) -> Producer:
        """With a transactional id, a `TransactionalProducer` that fences earlier ones with the same id. With
        `replacing` (this instance's own producer for that id, closed after a failure whose cause may be
        unknown), it takes over only if no newer instance has initialised the id since, else raises `Fenced`:
        a replacement never fences a newer instance."""

    def consumer(self, topics: list[str], group_id: str, max_poll_interval_s: float = 300.0,
                 read_committed: bool = False) -> Consumer: ...

    def ensure_topics(self, topics: list[str], partitions: int = 3, replication: int | None = None) -> None: ...

    def close(self) -> None: ...
