"""Exactly-once delivery of a stage (dimee/streaming/stage.py) on the embedded broker, which has transactions: a
worker that dies after sending its outputs but before committing leaves nothing behind, and its successor
answers every sample exactly once."""

from __future__ import annotations

import threading
import time

import pytest
from dimee.producers.producer import ProduceOptions, produce
from dimee.routers.router import Router
from dimee.state.memory import InMemoryCentroidStore
from dimee.workers.tier_worker import TierWorker

from dimee.method.tiers import Tier
from dimee.streaming.config import Settings
from dimee.streaming.messages import Prediction, parse
from dimee.streaming.runtime import StopFlag
from dimee.streaming.stage import BatchLimits
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.memory import InMemoryBroker
from tests.support.helpers import context, deployment, dies_on_second_delivery, stream_records


class DiesBeforeCommit(TierWorker):
    """Sends its second batch's outputs, then dies before the commit, as a process killed mid-transaction."""

    def open(self):
        super().open()

        def send_then_die(outputs):
            if self.exactly_once:
                self.producer.begin()
            for out in outputs:
                self.producer.send(out.topic, out.key, out.value)
            self.producer.flush()
            raise RuntimeError("killed after sending, before committing")

        dies_on_second_delivery(self, send_then_die)


def _run(stage) -> threading.Thread:
    thread = threading.Thread(target=stage.run, daemon=True)
    thread.start()
    return thread


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("guarantee", ["exactly-once"])
def test_a_worker_killed_mid_transaction_leaves_no_duplicate(workdir, cal, guarantee):
    broker, topics, stop = InMemoryBroker(), Topics("eos"), StopFlag()
    store = InMemoryCentroidStore()
    store.seed(cal.centroid_arrays(), cal.pool_sizes)
    served = deployment(workdir, cal, "Cloud-only")  # every sample to one worker, the one that dies
    ctx = context(broker, topics, stop=stop, limits=BatchLimits(max_batch=8, max_wait_s=0.0),
                  settings=Settings(guarantee=guarantee))
    records = stream_records(60)
    threads = [_run(Router(ctx, served, store))]
    produce(broker, topics, records, ProduceOptions(progress=False))
    dying = _run(DiesBeforeCommit(ctx, served, Tier.CLOUD))
    dying.join(timeout=60)
    assert not dying.is_alive()  # it died mid-transaction
    threads.append(_run(TierWorker(ctx, served, Tier.CLOUD)))  # its successor, same group and instance
    deadline = time.monotonic() + 60
    while len(broker.read_all(topics.predictions)) < len(records) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # a duplicate would land now
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    ids = [parse(Prediction, r.value).id for r in broker.read_all(topics.predictions)]
    assert sorted(ids) == sorted(r["id"] for r in records)  # every sample once: none lost, none twice
