"""Consume dimee's predictions from Python: iterate the predictions topic as typed `Prediction` objects, each
sample id once (a redelivered prediction is skipped), reading only committed transactions.

    from dimee.streaming.client import Predictions

    with Predictions("kafka://localhost:9092", group="my-app") as stream:
        for prediction in stream:
            print(prediction.id, prediction.label_pred, prediction.tier, prediction.cost.total)

Offsets are committed after each polled batch has been handed out, so a consumer that stops and starts
again in the same group goes on where it stopped; deduplication remembers the ids of this process's life
(bounded by `remember`). Consumers in other languages: `dimee schema` writes the JSON Schemas.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator
from types import TracebackType

from dimee.common.errors import Rebalanced
from dimee.streaming.messages import MessageError, Prediction, parse
from dimee.streaming.transport import open_transport
from dimee.streaming.transport.base import Consumer, Topics


class Predictions:
    def __init__(self, broker: str, group: str, topic_prefix: str = "dimee", api_version: tuple[int, ...] | None = None,
                 remember: int = 1_000_000) -> None:
        self.transport = open_transport(broker, api_version, client_id=f"dimee-client-{group}")
        self.consumer: Consumer = self.transport.consumer([Topics(topic_prefix).predictions], group,
                                                          read_committed=self.transport.supports_transactions)
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.remember, self.skipped, self.unreadable = remember, 0, 0

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Prediction]:
        """The next predictions not seen before (possibly none), offsets committed."""
        fresh = []
        for record in self.consumer.poll(max_records, timeout_s):
            try:
                prediction = parse(Prediction, record.value)
            except MessageError:
                self.unreadable += 1  # not a prediction of this version: skipped, never raised at a consumer
                continue
            if prediction.id in self.seen:
                self.skipped += 1
                continue
            self.seen[prediction.id] = None
            if len(self.seen) > self.remember:
                self.seen.popitem(last=False)
            fresh.append(prediction)
        with contextlib.suppress(Rebalanced):  # the group moved on: read again (here, skipped as seen) or elsewhere
            self.consumer.commit()
        return fresh

    def __iter__(self) -> Iterator[Prediction]:
        while True:
            yield from self.poll()

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> Predictions:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
