"""`dimee tail` counts each prediction once without keeping every id it has seen for ever."""

from __future__ import annotations

from dimee.predictions.tail import Tail

from dimee.streaming.messages import CostBreakdown, Prediction, Timings
from dimee.streaming.transport.base import Record, Topics
from dimee.streaming.transport.memory import InMemoryBroker
from tests.support.helpers import context


def _batch(*ids: str) -> list[tuple[Record, Prediction]]:
    return [(Record("tail.predictions", 0, n, i.encode(), b""),
             Prediction(id=i, tier="edge", label_pred=1, confidence=0.9, exit_layer=3, layers_run=3,
                        cost=CostBreakdown(processing=0.1, offload=0.2, cloud=0.0, total=0.3), model="m:edge:1-4",
                        timings=Timings(produced_at=1.0, routed_at=2.0, started_at=3.0, finished_at=4.0), worker="w"))
            for n, i in enumerate(ids)]


def test_the_tail_remembers_a_bounded_number_of_ids_and_still_counts_a_recent_redelivery_once():
    tail = Tail(context(InMemoryBroker(), Topics("tail")), every_s=float("inf"), remember=3)
    tail.process(_batch("a", "b", "c", "d", "e"))
    assert len(tail.seen) <= tail.remember
    tail.process(_batch("e", "d"))  # redelivered soon after: remembered, not counted again
    assert tail.stats.count == 5
