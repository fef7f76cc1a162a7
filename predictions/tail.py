"""`dimee tail`: a live view of the predictions stream (throughput, accuracy so far, cost against
cloud-only, tier shares, latency percentiles), refreshed every second. Every record read is counted, repeats as
such (predictions/answered.py)."""

from __future__ import annotations

import sys
import time

from dimee.predictions.answered import Answered
from dimee.predictions.seen_ids import RecentIds
from dimee.predictions.stats import PredictionStats

from dimee.streaming.messages import Prediction
from dimee.streaming.stage import Output, Stage, StageContext
from dimee.streaming.transport.base import Record

CLEAR_LINE = "\r\x1b[2K"  # back to the line's start, then erase it
# The ids the tail remembers to tell a repeat: the most recent this many (a redelivery comes soon after the first
# copy, within a rebalance or a restart's uncommitted batch).
REMEMBER_IDS = 100_000


class Tail(Stage):
    name = "tail"
    message_type = Prediction

    def __init__(self, context: StageContext, cloud_only_cost: float = 1.0, every_s: float = 1.0,
                 remember: int = REMEMBER_IDS) -> None:
        super().__init__(context, [context.topics.predictions], context.topics.tail_group(context.instance_id))
        self.seen = RecentIds(remember)
        self.remember = remember
        self.answered = Answered(self.seen)
        self.stats = PredictionStats(cloud_only_cost=cloud_only_cost, answered=self.answered)
        self.every_s = every_s
        self._last_print = 0.0

    def process(self, batch: list[tuple[Record, Prediction]]) -> list[Output]:
        for prediction in self.answered.fold([p for _, p in batch]):
            self.stats.add(prediction)
        if time.monotonic() - self._last_print >= self.every_s:
            self._last_print = time.monotonic()
            self.show()
        return []

    def show(self, final: bool = False) -> None:
        """The current line: on a terminal redrawn in place (the old line cleared first, so a shorter line
        leaves no stale characters), else one line per refresh."""
        if sys.stdout.isatty():
            sys.stdout.write(CLEAR_LINE + self.stats.line() + ("\n" if final else ""))
            sys.stdout.flush()
        else:
            print(self.stats.line(), flush=True)
