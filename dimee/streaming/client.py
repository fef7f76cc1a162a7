"""Consume dimee's predictions from Python: iterate the predictions topic as typed `Prediction` objects, each
sample id once (a redelivered prediction is skipped), reading only committed transactions.

    from dimee.streaming.client import Predictions, UnsupportedVersion

    with Predictions("kafka://localhost:9092", group="my-app") as stream:
        for prediction in stream:
            store(prediction.id, prediction.label_pred, prediction.tier, prediction.cost.total)

On a secured cluster, `Predictions.from_settings("my-app")` connects as the roles do (TLS/SASL from the DIMEE_*
variables), or pass those `settings=` with another broker.

Consumers in other languages: `dimee schema` writes the JSON Schemas (docs/streaming.md says how versions change).
"""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict, deque
from collections.abc import Iterator
from types import TracebackType
from typing import Any, get_args

from pydantic import ConfigDict

from dimee.common.errors import DimeeError, Rebalanced
from dimee.streaming.config import Settings
from dimee.streaming.messages import MessageError, Prediction, parse
from dimee.streaming.runtime import log
from dimee.streaming.transport import open_transport
from dimee.streaming.transport.base import Consumer, Record, Topics

VERSION: int = max(get_args(Prediction.model_fields["v"].annotation))  # the `v` this client reads
BATCH, WAIT_S = 500, 1.0  # what one poll asks the broker for: at most this many records, waiting this long


class ReadPrediction(Prediction):
    """A prediction as a consumer reads it: fields added in a later release of this version (all optional, so
    compatible) are kept, in `model_extra`, instead of refusing the message. dimee's own roles still refuse
    fields they do not know (`Prediction`); `dimee schema` writes the prediction schema from this model."""

    model_config = ConfigDict(extra="allow", title="Prediction")


class UnsupportedVersion(DimeeError):
    """A prediction of a later version (`v`) than this client reads: upgrade the client. Raised by `poll()` once
    per such record; the record then counts as handled, and the next poll goes on after it."""

    def __init__(self, version: int, record: Record) -> None:
        super().__init__(f"a prediction of version {version} at {record.topic}[{record.partition}] offset "
                         f"{record.offset}: this client reads version {VERSION}; upgrade dimee to read it")
        self.version, self.topic, self.partition, self.offset = version, record.topic, record.partition, record.offset


def _later_version(value: bytes | None) -> int | None:
    """The `v` of a payload that says a version later than this client's (asked only of one it could not read)."""
    try:
        data: Any = json.loads(value or b"")
    except ValueError:
        return None
    version = data.get("v") if isinstance(data, dict) else None
    return version if type(version) is int and version > VERSION else None


class Predictions:
    """The predictions topic read by one member of consumer group `group`, **at least once**.

    Offsets are committed only for predictions the caller has finished: those `poll()` returned are committed
    by the next `poll()` (calling it again says the previous batch is done), by `commit()`, or by `close()` /
    leaving the `with` block normally. Iterating the stream commits a batch when the loop asks for the one
    after it. A caller that crashes (or leaves the `with` block on an exception, or breaks out of a loop
    mid-batch) commits nothing more, so its group reads that batch again: handle predictions idempotently
    (by `id`). Within one `Predictions`, an id is handed out once (the last `remember` ids are remembered).

    Reading is forward compatible: a prediction with fields this version does not know is read, the fields kept
    (`ReadPrediction`). A prediction of a later version (`v` > `VERSION`) is refused loudly: logged as an
    error with its version and offset, counted in `unsupported`, and raised as `UnsupportedVersion`, after the
    predictions before it have been handed out; catching it and polling on skips that record. A record that is
    not a prediction at all is logged as an error, counted in `unreadable` and skipped.
    """

    def __init__(self, broker: str, group: str, topic_prefix: str = "dimee", remember: int = 1_000_000,
                 settings: Settings | None = None) -> None:
        """`settings`: where the Kafka API version and the TLS/SASL options come from (none by default);
        `from_settings` takes the broker and topic prefix from them too."""
        api_version, security = (None, None) if settings is None else \
            (settings.api_version_tuple(), settings.kafka_security())
        self.transport = open_transport(broker, api_version, client_id=f"dimee-client-{group}", security=security)
        self.consumer: Consumer = self.transport.consumer([Topics(topic_prefix).predictions], group,
                                                          read_committed=self.transport.supports_transactions)
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.remember, self.skipped, self.unreadable, self.unsupported = remember, 0, 0, 0
        self._pending: deque[Record] = deque()  # polled, not yet read: it stopped at a later version's record
        self._ready: deque[ReadPrediction] = deque()  # read, not yet handed out (a loop broken mid-batch)

    @classmethod
    def from_settings(cls, group: str, settings: Settings | None = None, remember: int = 1_000_000) -> Predictions:
        """Connected as the roles are: DIMEE_BROKER, DIMEE_TOPIC_PREFIX, DIMEE_KAFKA_API_VERSION and the TLS/SASL
        variables (DIMEE_KAFKA_SECURITY_PROTOCOL, DIMEE_KAFKA_SASL_*, DIMEE_KAFKA_SSL_*), or `settings`."""
        settings = settings or Settings()
        return cls(settings.broker, group, settings.topic_prefix, remember, settings)

    def poll(self, max_records: int = BATCH, timeout_s: float = WAIT_S) -> list[ReadPrediction]:
        """The next predictions not seen before (possibly none). Commits what was handed out before first:
        calling poll says the caller has finished it. Raises `UnsupportedVersion` (see the class)."""
        self.commit()
        self._fill(max_records, timeout_s)
        batch = list(self._ready)
        self._ready.clear()
        return batch

    def _fill(self, max_records: int, timeout_s: float) -> None:
        if self._ready:
            return
        if not self._pending:
            self._pending.extend(self.consumer.poll(max_records, timeout_s))
        self._ready.extend(self._read())

    def _read(self) -> list[ReadPrediction]:
        fresh: list[ReadPrediction] = []
        while self._pending:
            record = self._pending.popleft()
            try:
                prediction = parse(ReadPrediction, record.value)
            except MessageError as exc:
                if (version := _later_version(record.value)) is None:
                    self.unreadable += 1
                    log.error("skipping a record that is not a prediction", topic=record.topic,
                              partition=record.partition, offset=record.offset, reason=str(exc))
                    continue
                if fresh:  # hand out what came before it first; the next poll raises
                    self._pending.appendleft(record)
                    return fresh
                self.unsupported += 1
                error = UnsupportedVersion(version, record)
                log.error("refusing a prediction of a later version", version=version, topic=record.topic,
                          partition=record.partition, offset=record.offset, reads=VERSION)
                raise error from exc
            if prediction.id in self.seen:
                self.skipped += 1
                continue
            self.seen[prediction.id] = None
            if len(self.seen) > self.remember:
                self.seen.popitem(last=False)
            fresh.append(prediction)
        return fresh

    def commit(self) -> None:
        """Commit the offsets of every prediction handed out so far: the caller has finished them. Commits nothing
        while part of a polled batch is not handed out yet (the offsets are the batch's end): a later commit does."""
        if self._pending or self._ready:
            return
        with contextlib.suppress(Rebalanced):  # the group moved on: read again (here, skipped as seen) or elsewhere
            self.consumer.commit()

    def __iter__(self) -> Iterator[ReadPrediction]:
        while True:
            if not self._ready:  # the loop asks for the next batch: it has finished the one before
                self.commit()
                self._fill(BATCH, WAIT_S)
            while self._ready:
                yield self._ready.popleft()

    def close(self, commit: bool = True) -> None:
        """Leave the group, first committing what was handed out (unless `commit` is false: the caller did not
        finish it, and the group reads it again)."""
        try:
            if commit:
                self.commit()
        finally:
            self.consumer.close()

    def __enter__(self) -> Predictions:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close(commit=kind is None)  # an exception: the batch in hand was not finished
