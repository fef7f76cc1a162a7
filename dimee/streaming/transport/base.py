"""What every role needs from a broker: keyed sends with acknowledgement, group consumers with manual commit,
and transactions where the broker has them.

At-least-once: a role polls a batch, sends its outputs, calls `Producer.flush()` (which raises if any send
was not acknowledged), and only then `Consumer.commit()`, which commits exactly the records it has returned
so far. A consumer that dies before committing leaves its records to the next member of its group.

Exactly-once (consume-transform-produce): a transactional producer `begin()`s, sends the batch's outputs and
`commit(consumer)`s them together with the consumer's positions in one transaction; a consumer that reads
`read_committed` never sees the outputs of an aborted or unfinished transaction. A second producer with the
same transactional id fences the first (`Fenced`); a rebalance before the commit aborts it (`Rebalanced`).

A client may also fail without raising: a consumer out of its group for good, a poll that never returns.
`Consumer.lost()` and `Consumer.guard()` say so and act on it (`ConsumerGuard`, shared by the adapters), so
the stage never needs to know which client it drives (docs/operations.md, "Why the stage and the Kafka
adapter do what they do").
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, overload

from dimee.method.tiers import TIER_NAMES
from dimee.streaming.runtime import log

if TYPE_CHECKING:
    from dimee.streaming.runtime import StopFlag


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
    """Topic names under one prefix (docs/method.md section 3)."""

    prefix: str = "dimee"

    samples = _Named("samples")
    predictions = _Named("predictions")
    dead_letter = _Named("dead-letter")
    feedback = _Named("feedback")  # observed pools reported by workers, for label-free centroid adaptation
    audits = _Named("audits")  # the full model's check of answers a lower tier gave (`dimee.streaming.audit`)

    def tier(self, tier: str) -> str:
        return f"{self.prefix}.{tier}"

    def all(self) -> list[str]:
        return [self.samples, *(self.tier(t) for t in TIER_NAMES), self.predictions, self.dead_letter,
                self.feedback, self.audits]

    # Consumer groups: every instance of a role shares one, so the broker spreads partitions over them.
    router_group = _Named("router")
    sink_group = _Named("sink")
    feedback_group = _Named("feedback")
    controller_group = _Named("controller")

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

    def expect(self, topics: list[str]) -> None:
        """The topics it will send to: where their partitions live is asked for now, without waiting, not at
        the first send to each."""

    def close(self) -> None: ...


class Consumer(Protocol):
    def poll(self, max_records: int, timeout_s: float) -> list[Record]: ...

    def joined(self) -> bool:
        """Whether the consumer is a settled member of its group (asked without a request)."""

    def mark(self, carried: dict[tuple[str, int], int] | None = None) -> object:
        """Where the consumer stands now (positions, and the group generation the records since the last mark
        were polled in), to commit later while it polls on: a stage commits a batch only once the broker has taken
        its outputs, which may be after it polled the next batch. Raises `Rebalanced` if the group rebalanced since
        those records were polled (the caller rewinds: they may be another member's now).

        `carried`: per partition, the offset after the last record whose outputs the transaction carries. The mark
        then holds exactly those partitions at those offsets, and raises `Rebalanced` unless the consumer stands
        there: a partition it no longer holds would commit outputs without their offsets (read again: duplicates),
        and one it polled further would commit past records nobody carries (lost)."""

    def commit(self, mark: object | None = None) -> None:
        """Commit the positions of `mark`, or everything returned by poll so far."""

    def rewind(self) -> dict[tuple[str, int], int]:
        """Go back to the committed offsets: what was polled since is returned again. Returns them, per assigned
        (topic, partition) that has one: where a failed transaction's offsets stand tells whether it committed."""

    def lag(self) -> dict[tuple[str, int], int]:
        """Per assigned (topic, partition): records between the read position and the partition's end, as
        last seen (no extra broker round trip)."""

    def lost(self) -> bool:
        """Whether the consumer has been out of its group so long that it never will rejoin: the caller
        replaces it with a new one (and close() then does not wait on this one)."""

    def guard(self, owner: str, stop: StopFlag) -> None:
        """Until `stop`, end the process (status 70, for its supervisor to restart it) if a poll never
        returns; `owner` names the stage in the log."""

    def close(self) -> None: ...


POLL_STUCK_S = 60.0  # a poll asks for at most a second of waiting: one not back after this never will be
REJOIN_S = 45.0  # a consumer not in its group this long is replaced (a rebalance takes seconds)


class ConsumerGuard:
    """`lost()` and `guard()` for a consumer adapter, which answers `joined()` and marks its polls with
    `polling()`. Shared, so a stage runs the same on every broker (the embedded one's polls always return, so
    it does not mark them). Defaults are class attributes: an adapter needs no constructor call for them."""

    polling_since: float | None = None  # while a poll is in the client's hands
    released = False  # closed: the guard stops watching
    given_up = False  # lost() said so: closing must not wait on the client
    owner = "consumer"  # the stage it serves, named in the log
    _unjoined_since: float | None = None

    def joined(self) -> bool:
        raise NotImplementedError

    @contextmanager
    def polling(self) -> Iterator[None]:
        self.polling_since = time.monotonic()
        try:
            yield
        finally:
            self.polling_since = None

    def lost(self) -> bool:
        if self.joined():
            self._unjoined_since = None
            return False
        now = time.monotonic()
        if self._unjoined_since is None:
            self._unjoined_since = now
        if now - self._unjoined_since < REJOIN_S:
            return False
        log.warning("the consumer did not rejoin its group; replacing it", stage=self.owner,
                    waited_s=round(now - self._unjoined_since))
        self.given_up = True
        return True

    def guard(self, owner: str, stop: StopFlag) -> None:
        self.owner = owner
        threading.Thread(target=self._watch_polls, args=(stop,), name=f"{owner}-poll-watchdog", daemon=True).start()

    def _watch_polls(self, stop: StopFlag) -> None:
        # Nothing in the process can free a stuck poll; the restarted role reads on from the committed offsets.
        while not stop.is_set() and not self.released:
            stop.wait(5.0)
            since = self.polling_since
            if since is not None and time.monotonic() - since > POLL_STUCK_S:
                log.error("the Kafka client stopped answering; exiting to be restarted", stage=self.owner,
                          stuck_s=round(time.monotonic() - since))
                logging.shutdown()
                os._exit(70)


class TransactionalProducer(Producer, Protocol):
    """What `Transport.producer` returns for a transactional id."""

    def begin(self) -> None: ...

    def commit(self, consumer: Consumer | None, mark: object | None = None) -> None:
        """Commit the sends since begin() and the consumer's positions of `mark` (default: everything it
        returned so far), atomically; with no consumer, the sends alone (a producer's own transaction). Raises
        `Fenced`, `Rebalanced` (the group moved on: the transaction was aborted; the caller rewinds the consumer to
        its committed offsets), `Unanswered` (no answer in time: it may yet commit) or `ServiceUnavailable`
        (aborted; the caller may run the transaction again). Touches only the producer when given a mark, so it
        may run on another thread than the one polling the consumer."""

    def abort(self) -> None: ...


class Transport(Protocol):
    supports_transactions: bool

    @overload
    def producer(self, transactional_id: None = None, replacing: None = None) -> Producer: ...

    @overload
    def producer(self, transactional_id: str, replacing: TransactionalProducer | None = None
                 ) -> TransactionalProducer: ...

    def producer(self, transactional_id: str | None = None,
                 replacing: TransactionalProducer | None = None) -> Producer:
        """With a transactional id, a `TransactionalProducer` that fences earlier ones with the same id. With
        `replacing` (this instance's own producer for that id, closed after a failure whose cause may be
        unknown), it takes over only if no newer instance has initialised the id since, else raises `Fenced`:
        a replacement never fences a newer instance."""

    def consumer(self, topics: list[str], group_id: str, max_poll_interval_s: float = 300.0,
                 read_committed: bool = False) -> Consumer: ...

    def ensure_topics(self, topics: list[str], partitions: int = 3, replication: int | None = None) -> None: ...

    def close(self) -> None: ...
