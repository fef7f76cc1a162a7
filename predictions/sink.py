"""`dimee sink`: predictions → JSONL, each id once. A line is on disk (fsync) before its offset is committed,
and its id in a persistent index (predictions/seen_ids.py) before the next batch, so predictions delivered
again (at-least-once, a restart) are dropped, a torn last line is repaired, and memory stays bounded."""

from __future__ import annotations

import os
from pathlib import Path

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
        self.duplicates = 0
        self.stats = PredictionStats(cloud_only_cost=cloud_only_cost)

    def process(self, batch: list[tuple[Record, Prediction]]) -> list[Output]:
        """Each id once. A prediction for an id already written is dropped as a redelivery, unless it is for
        other content (another digest): then the id was reused, which is dead-lettered, never dropped."""
        known = self.seen.known(p.id for _, p in batch)
        fresh: dict[str, Prediction] = {}
        letters = []
        for record, prediction in batch:
            earlier = fresh[prediction.id].digest if prediction.id in fresh else known.get(prediction.id, "")
            if earlier == "":
                fresh[prediction.id] = prediction
            elif earlier and prediction.digest and earlier != prediction.digest:
                letters.append(self.dead_letter(record, f"id reused: {prediction.id!r} was already answered for "
                                                        f"other content (digest {earlier}, now {prediction.digest})"))
            else:
                self.duplicates += 1
        if fresh:
            seen = {sample_id: p.digest for sample_id, p in fresh.items()}
            self.seen.add(seen, self._append(list(fresh.values())))  # only once the lines are on disk
        for prediction in fresh.values():
            self.stats.add(prediction)
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
