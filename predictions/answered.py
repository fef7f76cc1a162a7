"""One count of answered samples for every view of the predictions topic (the sink, `dimee tail`, the dashboard
and the sink's Prometheus counters): every prediction record read counts once in `total`, and a record for an
id already read counts as a `repeat` too (a sample produced twice, or a prediction delivered again), so
`total - repeats` is the distinct samples answered. The views never drop a repeat silently: they show it as
"1,526 answered, 20 repeats of 1,506 distinct" (docs/operations.md, "One count of answered samples")."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from dimee.predictions.seen_ids import RecentIds, Seen

from dimee.streaming.messages import Prediction
from dimee.streaming.metrics import ANSWER_REPEATS, ANSWERED


class IdIndex(Protocol):
    """Which ids were read before: `RecentIds` (bounded, in memory) or the sink's `IndexedJsonl` (on disk)."""

    def known(self, ids: Iterable[str]) -> Seen: ...

    def add(self, seen: Seen, written_up_to: int = 0) -> None: ...

    def close(self) -> None: ...


class Answered:
    """The running count. With `stage`, it is also exported as dimee_answered_total and
    dimee_answer_repeats_total{stage} (at 0 from the start)."""

    def __init__(self, ids: IdIndex | None = None, stage: str | None = None) -> None:
        self.ids: IdIndex = ids if ids is not None else RecentIds()
        self.stage = stage
        self.total = self.repeats = 0
        if stage is not None:
            ANSWERED.labels(stage)
            ANSWER_REPEATS.labels(stage)

    @property
    def distinct(self) -> int:
        return self.total - self.repeats

    def sort(self, predictions: Sequence[Prediction]) -> tuple[dict[str, Prediction], list[tuple[int, str | None]]]:
        """A batch's first prediction of each id not read before (to be `remember`ed once the caller has kept
        them), and its repeats as (place in the batch, the digest of the earlier answer). Counts nothing: the
        caller `count`s the batch once it is done with it (a batch that fails is read again)."""
        known = self.ids.known(p.id for p in predictions)
        fresh: dict[str, Prediction] = {}
        repeats: list[tuple[int, str | None]] = []
        for place, prediction in enumerate(predictions):
            if prediction.id in fresh:
                repeats.append((place, fresh[prediction.id].digest))
            elif prediction.id in known:
                repeats.append((place, known[prediction.id]))
            else:
                fresh[prediction.id] = prediction
        return fresh, repeats

    def count(self, records: int, repeats: int) -> None:
        self.total += records
        self.repeats += repeats
        if self.stage is not None:
            ANSWERED.labels(self.stage).inc(records)
            ANSWER_REPEATS.labels(self.stage).inc(repeats)

    def remember(self, fresh: dict[str, Prediction], written_up_to: int = 0) -> None:
        """The ids of `sort`'s fresh predictions, read from now on as repeats."""
        if fresh:
            self.ids.add({sample_id: p.digest for sample_id, p in fresh.items()}, written_up_to)

    def fold(self, predictions: Sequence[Prediction]) -> list[Prediction]:
        """`sort`, `remember` and `count` at once, for a view with nothing to keep first: the batch's new
        predictions."""
        fresh, repeats = self.sort(predictions)
        self.remember(fresh)
        self.count(len(predictions), len(repeats))
        return list(fresh.values())

    def summary(self) -> dict[str, int]:
        return {"answered": self.total, "repeats": self.repeats, "distinct": self.distinct}

    def text(self) -> str:
        """The one wording every view shows: "1,526 answered, 20 repeats of 1,506 distinct"."""
        plural = "" if self.repeats == 1 else "s"
        repeats = f"{self.repeats:,} repeat{plural} of {self.distinct:,} distinct" if self.repeats else "no repeats"
        return f"{self.total:,} answered, {repeats}"
