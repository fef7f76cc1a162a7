"""`dimee sink`: predictions → JSONL, each id once. A line is on disk (fsync) before its offset is committed,
and its id in a persistent index (predictions/seen_ids.py) before the next batch, so predictions delivered
again (at-least-once, a restart) are not written again, a torn last line is repaired, and memory stays bounded.
Every record read is counted, repeats as such (predictions/answered.py), in its summary and in Prometheus."""

from __future__ import annotations

import os
from pathlib import Path

from dimee.predictions.answered import Answered
from dimee.predictions.seen_ids import IndexedJsonl, RecentIds
from dimee.predictions.stats import PredictionStats

from dimee.streaming.messages import Prediction
from dimee.streaming.stage import Output, Stage, StageContext
from dimee.streaming.transport.base import Record


class Sink(Stage):
    name = "sink"
    message_type = Prediction

    def __init__(self, context: StageContext, path: Path | None, cloud_only_cost: float = 1.0,
                 group_id: str | None = None) -> None:
        super().__init__(context, [context.topics.predictions], group_id or context.topics.sink_group)
        self.path = path
        self.seen = IndexedJsonl(path) if path is not None else RecentIds()
        self.answered = Answered(self.seen, stage=self.name)
        self.stats = PredictionStats(cloud_only_cost=cloud_only_cost, answered=self.answered)

    @property
    def duplicates(self) -> int:
        """Records for an id already read (counted, not written again)."""
        return self.answered.repeats

    def process(self, batch: list[tuple[Record, Prediction]]) -> list[Output]:
        """Each id written once; every record counted (predictions/answered.py). A repeat of an id is not written
        again, unless it is for other content (another digest): then the id was reused, which is dead-lettered,
        never dropped."""
        predictions = [p for _, p in batch]
        fresh, repeats = self.answered.sort(predictions)
        letters = []
        for place, earlier in repeats:
            record, prediction = batch[place]
            if earlier and prediction.digest and earlier != prediction.digest:
                letters.append(self.dead_letter(record, f"id reused: {prediction.id!r} was already answered for "
                                                        f"other content (digest {earlier}, now {prediction.digest})"))
        if fresh:  # the ids only once the lines are on disk
            self.answered.remember(fresh, self._append(list(fresh.values())))
        for prediction in fresh.values():
            self.stats.add(prediction)
        self.answered.count(len(batch), len(repeats))
        return letters

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
