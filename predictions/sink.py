"""`dimee sink`: predictions → JSONL, each id once. A line is on disk (fsync) before its offset is committed;
on restart the ids already in the file are read back, so redelivered predictions are dropped."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dimee.messages import Prediction
from dimee.stage import Output, Stage, StageContext
from dimee.transport.base import Record
from predictions.stats import PredictionStats


class Sink(Stage):
    name = "sink"
    message_type = Prediction

    def __init__(self, context: StageContext, path: Path | None, cloud_only_cost: float = 1.0,
                 group_id: str | None = None) -> None:
        super().__init__(context, [context.topics.predictions], group_id or context.topics.sink_group)
        self.path = path
        self.seen: set[str] = set()
        self.duplicates = 0
        self.stats = PredictionStats(cloud_only_cost=cloud_only_cost)
        if path is not None and path.exists():
            with path.open() as handle:
                self.seen.update(json.loads(line)["id"] for line in handle if line.strip())

    def process(self, batch: list[tuple[Record, Prediction]]) -> list[Output]:
        fresh = []
        for _, prediction in batch:
            if prediction.id in self.seen:
                self.duplicates += 1
                continue
            self.seen.add(prediction.id)
            fresh.append(prediction)
        if self.path is not None and fresh:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as handle:
                handle.writelines(prediction.model_dump_json() + "\n" for prediction in fresh)
                handle.flush()
                os.fsync(handle.fileno())
        for prediction in fresh:
            self.stats.add(prediction)
        return []
