"""`dimee sink`: predictions → JSONL, each id once. A line is on disk (fsync) before its offset is committed,
and its id in a persistent index (predictions/seen_ids.py) before the next batch, so predictions delivered
again (at-least-once, a restart) are dropped, a torn last line is repaired, and memory stays bounded."""

from __future__ import annotations

import os
from pathlib import Path

from dimee.messages import Prediction
from dimee.stage import Output, Stage, StageContext
from dimee.transport.base import Record
from predictions.seen_ids import IndexedJsonl, RecentIds
from predictions.stats import PredictionStats


class Sink(Stage):
    name = "sink"
    message_type = Prediction

    def __init__(self, context: StageContext, path: Path | None, cloud_only_cost: float = 1.0,
                 group_id: str | None = None) -> None:
        super().__init__(context, [context.topics.predictions], group_id or context.topics.sink_group)
        self.path = path
        self.seen = IndexedJsonl(path) if path is not None else RecentIds()
        self.duplicates = 0
        self.stats = PredictionStats(cloud_only_cost=cloud_only_cost)

    def process(self, batch: list[tuple[Record, Prediction]]) -> list[Output]:
        known = self.seen.known(p.id for _, p in batch)
        fresh: dict[str, Prediction] = {}
        for _, prediction in batch:
            if prediction.id in known or prediction.id in fresh:
                self.duplicates += 1
            else:
                fresh[prediction.id] = prediction
        if fresh:
            self.seen.add(fresh, self._append(list(fresh.values())))  # only once the lines are on disk
        for prediction in fresh.values():
            self.stats.add(prediction)
        return []

    def _append(self, predictions: list[Prediction]) -> int:
        """Append and fsync; returns the file's length after them."""
        if self.path is None:
            return 0
        with self.path.open("ab") as handle:
            handle.writelines(p.model_dump_json().encode() + b"\n" for p in predictions)
            handle.flush()
            os.fsync(handle.fileno())
            return handle.tell()

    def close(self) -> None:
        super().close()
        self.seen.close()
