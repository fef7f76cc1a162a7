"""The stream roles on the embedded broker and state store (the same code runs on Kafka + Redis)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from dimee.predictions.sink import Sink
from dimee.producers.producer import ProduceOptions, produce
from dimee.routers.router import Router
from dimee.state.memory import InMemoryCentroidStore
from dimee.workers.tier_worker import TierWorker

from dimee.common.errors import ServiceUnavailable
from dimee.composition.pipeline import Collector, PipelineOptions, run_pipeline
from dimee.method.tiers import Tier
from dimee.streaming.config import Settings
from dimee.streaming.messages import DeadLetter, Prediction, Routed, Sample, parse
from dimee.streaming.runtime import StopFlag
from dimee.streaming.stage import BatchLimits
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.memory import InMemoryBroker
from tests.support.helpers import context, deployment, dies_on_second_delivery, stream_records
from tests.support.stream_checks import assert_matches_offline


def _settings(prefix: str) -> Settings:
    return Settings(broker=f"memory://{prefix}", state=f"memory://{prefix}", topic_prefix=prefix)


def test_every_id_once_and_fixed_mode_equals_the_offline_evaluator(workdir, cal):
    records = stream_records(240)
    run = run_pipeline(records, deployment(workdir, cal), _settings("once"),
                       PipelineOptions(progress=False, limits=BatchLimits(max_batch=16, max_wait_s=0.01)))
    assert sorted(run.predictions) == sorted(r["id"] for r in records)
    assert run.dead_letters == 0
    assert {p.tier for p in run.predictions.values()} == {Tier.MOBILE, Tier.EDGE, Tier.CLOUD}
    assert_matches_offline(run.predictions, records, workdir, cal)
    sample = next(iter(run.predictions.values()))
    caps = dict(cal.plan)
    assert sample.exit_layer <= caps[sample.tier]
    assert sample.cost.total == pytest.approx(cal.cost_model.cost(sample.tier, sample.layers_run))
    assert sample.timings.produced_at <= sample.timings.routed_at <= sample.timings.finished_at


def test_malformed_messages_go_to_the_dead_letter_topic_and_the_stream_goes_on(workdir, cal):
    good = stream_records(40, prefix="ok")
    bad = [b"{not json", b"\xff\xfe", {"id": "no-text"}, {"id": "empty", "text": ""},
           {"id": "typed", "text": "fine", "label": "pos"}]
    long = {"id": "long", "text": "good fun " * 40}  # over the text limit: cut, as offline, and answered
    settings = _settings("dlq").model_copy(update={"max_text_chars": 300})
    run = run_pipeline(good[:20] + bad + [long] + good[20:], deployment(workdir, cal), settings,
                       PipelineOptions(progress=False))
    assert sorted(run.predictions) == sorted(r["id"] for r in [*good, long])
    from dimee.streaming.transport.memory import shared_broker

    letters = [parse(DeadLetter, r.value) for r in shared_broker("memory://dlq").read_all(Topics("dlq").dead_letter)]
    reasons = {letter.key: letter.error for letter in letters}
    assert len(letters) == len(bad)
    assert "Field required" in reasons["no-text"] and "at least 1 character" in reasons["empty"]
    assert "valid integer" in reasons["typed"]
    assert {letter.stage for letter in letters} == {"router"}
    binary = next(letter for letter in letters if letter.payload_base64)
    assert binary.original_bytes() == b"\xff\xfe"


def _start(stage, **kwargs) -> threading.Thread:
    thread = threading.Thread(target=stage.run, kwargs=kwargs, daemon=True)
    thread.start()
    return thread


def _wait(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the stream")
        time.sleep(0.02)


class CrashingWorker(TierWorker):
    """Dies (before sending or committing anything) on its second batch, as a killed process would. (An error
    inside process() is a per-record failure now: those records are dead-lettered and the worker goes on.)"""

    def open(self):
        super().open()

        def crash(outputs):
            raise RuntimeError("simulated crash")

        dies_on_second_delivery(self, crash)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_crashed_worker_loses_nothing(workdir, cal):
    broker, topics = InMemoryBroker(), Topics("crash")
    store = InMemoryCentroidStore()
    store.seed(cal.centroid_arrays(), cal.pool_sizes)
    limits = BatchLimits(max_batch=8, max_wait_s=0.0)
    records = stream_records(120)
    stop, collector = StopFlag(), Collector()
    ctx, served = context(broker, topics, stop=stop, limits=limits, events=collector), deployment(workdir, cal)
    router = Router(ctx, served, store, "r")
    sink = Sink(ctx, None, group_id="s")
    workers = {t: TierWorker(ctx, served, t, f"w-{t.value}") for t in (Tier.EDGE, Tier.CLOUD)}
    crashing = CrashingWorker(ctx, served, Tier.MOBILE, "w-mobile")
    threads = [_start(s) for s in (router, sink, *workers.values())]
    produce(broker, topics, records, ProduceOptions(progress=False))
    crashed = _start(crashing)
    crashed.join(timeout=60)
    assert not crashed.is_alive() and crashing.processed > 0  # it died after committing its first batch
    restarted = TierWorker(ctx, served, Tier.MOBILE, "w-mobile")
    threads.append(_start(restarted))
    _wait(lambda: len(collector.predictions) == len(records))
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(collector.predictions) == sorted(r["id"] for r in records)


class FlakyStore(InMemoryCentroidStore):
    """Unavailable for its first few calls, like a Redis that is restarting."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def snapshot(self):
        if self.failures > 0:
            self.failures -= 1
            raise ServiceUnavailable("cannot reach Redis (simulated)")
        return super().snapshot()


def test_an_unavailable_state_store_is_retried_and_nothing_is_lost(workdir, cal):
    store = FlakyStore(failures=4)
    store.seed(cal.centroid_arrays(), cal.pool_sizes)
    broker, topics, stop = InMemoryBroker(), Topics("flaky"), StopFlag()
    limits = BatchLimits(max_batch=16, max_wait_s=0.0)
    router = Router(context(broker, topics, stop=stop, limits=limits), deployment(workdir, cal, "DIMEE-D"), store, "r")
    records = stream_records(50)
    produce(broker, topics, records, ProduceOptions(progress=False))
    thread = _start(router)
    _wait(lambda: sum(len(broker.read_all(topics.tier(t))) for t in ("mobile", "edge", "cloud")) >= 50)
    stop.set()
    thread.join(timeout=30)
    assert store.failures == 0
    routed = [r.key for t in ("mobile", "edge", "cloud") for r in broker.read_all(topics.tier(t))]
    assert sorted(k.decode() for k in routed) == sorted(r["id"] for r in records)
    assert sum(store.snapshot().counts) == sum(cal.pool_sizes) + 50


def test_stop_finishes_the_batch_and_commits(workdir, cal):
    broker, topics, stop = InMemoryBroker(default_partitions=1), Topics("stop"), StopFlag()
    store = InMemoryCentroidStore()
    store.seed(cal.centroid_arrays(), cal.pool_sizes)
    router = Router(context(broker, topics, stop=stop, limits=BatchLimits(max_batch=10, max_wait_s=0.0)),
                    deployment(workdir, cal), store, "r")
    produce(broker, topics, stream_records(200), ProduceOptions(progress=False))
    thread = _start(router)
    _wait(lambda: router.processed >= 10)
    stop.set()
    thread.join(timeout=30)
    routed = sum(len(broker.read_all(topics.tier(t))) for t in ("mobile", "edge", "cloud"))
    assert routed == router.processed and routed % 10 == 0  # whole batches only
    follower = broker.consumer([topics.samples], "r")
    assert len(follower.poll(1000, 0.1)) == 200 - routed  # committed exactly what was routed


def test_two_adaptive_routers_share_one_store(workdir, cal):
    store = InMemoryCentroidStore()
    store.seed(cal.centroid_arrays(), cal.pool_sizes)
    broker, topics, stop = InMemoryBroker(default_partitions=4), Topics("two"), StopFlag()
    limits = BatchLimits(max_batch=8, max_wait_s=0.0)
    routers = [Router(context(broker, topics, stop=stop, limits=limits, instance_id=f"r{i}"),
                      deployment(workdir, cal, "DIMEE-D"), store, "routers") for i in range(2)]
    records = stream_records(150)
    threads = [_start(r) for r in routers]
    produce(broker, topics, records + records[:30], ProduceOptions(progress=False))  # 30 replays of ids already sent
    _wait(lambda: sum(r.processed for r in routers) >= 180)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    messages = [parse(Routed, r.value) for t in ("mobile", "edge", "cloud") for r in broker.read_all(topics.tier(t))]
    routed = {}
    for message in sorted(messages, key=lambda m: m.routed_at):
        routed.setdefault(message.id, message.pool)  # the first routing of an id is the one that moved a centroid
    routers_seen = {parse(Routed, r.value).router for t in ("mobile", "edge", "cloud")
                    for r in broker.read_all(topics.tier(t))}
    assert routers_seen == {"router-r0", "router-r1"}
    snap = store.snapshot()
    assert sum(snap.counts) - sum(cal.pool_sizes) == len({r["id"] for r in records})
    embeddings = routers[0].embedder.embed([Sample(**r) for r in records])
    by_id = {r["id"]: e for r, e in zip(records, embeddings, strict=True)}
    centroids = cal.centroid_arrays()
    for pool, mean in enumerate(snap.means):
        if mean is None:
            continue
        members = [by_id[i] for i, p in routed.items() if p == pool]
        total = centroids[pool] * cal.pool_sizes[pool] + np.sum(members, axis=0) if members else \
            centroids[pool] * cal.pool_sizes[pool]
        assert snap.counts[pool] == cal.pool_sizes[pool] + len(members)
        # float32 embeddings computed in other batch compositions differ by ~1e-7
        assert mean == pytest.approx(total / snap.counts[pool], rel=1e-5, abs=1e-6)


def test_sink_deduplicates_and_survives_restart(tmp_path):
    broker, topics = InMemoryBroker(), Topics("sink")
    prediction = Prediction.model_validate({
        "id": "a", "tier": "edge", "label_pred": 1, "confidence": 0.9, "exit_layer": 2, "layers_run": 2,
        "cost": {"processing": 0.1, "offload": 0.2, "cloud": 0.0, "total": 0.3}, "label": 1, "correct": True,
        "model": "m", "worker": "w", "timings": {"produced_at": 1, "routed_at": 2, "started_at": 3, "finished_at": 4}})
    producer = broker.producer()
    for _ in range(3):
        producer.send(topics.predictions, b"a", prediction.to_bytes())
    out = tmp_path / "p.jsonl"
    Sink(context(broker, topics), out, group_id="s").run(idle_exit_s=0.3)
    producer.send(topics.predictions, b"a", prediction.to_bytes())  # redelivered after a restart
    second = Sink(context(broker, topics), out, group_id="s")
    second.run(idle_exit_s=0.3)
    assert out.read_text().count('"id":"a"') == 1 and second.duplicates == 1


def test_the_sink_repairs_a_torn_last_line_and_keeps_its_index_across_restarts(tmp_path):
    broker, topics = InMemoryBroker(), Topics("torn")
    out = tmp_path / "p.jsonl"
    producer = broker.producer()
    for sample_id in ("a", "b"):
        producer.send(topics.predictions, sample_id.encode(), _prediction(sample_id).to_bytes())
    Sink(context(broker, topics), out, group_id="s").run(idle_exit_s=0.3)
    with out.open("a") as handle:
        handle.write('{"id": "c", "tier": "ed')  # a crash in the middle of writing c: its offset never committed
    for sample_id in ("a", "c"):  # a redelivered and the torn c again
        producer.send(topics.predictions, sample_id.encode(), _prediction(sample_id).to_bytes())
    restarted = Sink(context(broker, topics), out, group_id="s")
    restarted.run(idle_exit_s=0.3)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b", "c"]
    assert restarted.duplicates == 1  # a, known from the index on disk, not from memory


def _prediction(sample_id: str) -> Prediction:
    return Prediction.model_validate({
        "id": sample_id, "tier": "edge", "label_pred": 1, "confidence": 0.9, "exit_layer": 2, "layers_run": 2,
        "cost": {"processing": 0.1, "offload": 0.2, "cloud": 0.0, "total": 0.3}, "model": "m", "worker": "w",
        "timings": {"produced_at": 1, "routed_at": 2, "started_at": 3, "finished_at": 4}})


def test_a_restarted_tail_reuses_its_consumer_group():
    """Each `dimee tail` used to join a new group (named with its pid), leaving one more on the broker per
    start; now a tail's group is stable per host (or --instance-id), so a restart picks up where it stopped."""
    from dimee.predictions.tail import Tail

    broker, topics = InMemoryBroker(), Topics("tail")
    first, again = Tail(context(broker, topics)), Tail(context(broker, topics))
    assert first.group_id == again.group_id == topics.tail_group()
    assert Tail(context(broker, topics, instance_id="ops-laptop")).group_id == "tail.tail.ops-laptop"


def test_workers_serve_the_policy_the_router_stamped(workdir, cal):
    """Defect: `dimee route --policy DIMEE-D` (no escalation) ran beside workers that escalated because
    their policy.json said so. The router stamps its policy; the workers serve that one."""
    broker, topics, stop, collector = InMemoryBroker(), Topics("stamp"), StopFlag(), Collector()
    store = InMemoryCentroidStore()
    store.seed(cal.centroid_arrays(), cal.pool_sizes)
    ctx = context(broker, topics, stop=stop, limits=BatchLimits(max_batch=16, max_wait_s=0.0), events=collector)
    router = Router(ctx, deployment(workdir, cal, "DIMEE-D"), store, "r")
    escalating = deployment(workdir, cal, "Edge+escalation")  # what the workers' policy.json would say
    stages = [router, Sink(ctx, None, group_id="s"), *(TierWorker(ctx, escalating, t, f"w-{t.value}") for t in Tier)]
    threads = [_start(s) for s in stages]
    records = stream_records(80, seed=41)
    produce(broker, topics, records, ProduceOptions(progress=False))
    _wait(lambda: len(collector.predictions) == len(records))
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    paths = [p.path for p in collector.predictions.values()]
    assert all(len(path) == 1 for path in paths)  # DIMEE-D answers at the routed tier's cap: no escalation
    assert {p.tier for p in collector.predictions.values()} == {Tier.MOBILE, Tier.EDGE, Tier.CLOUD}


def test_the_tail_redraws_without_stale_characters(monkeypatch, capsys):
    """Defect: a shorter refresh left the end of the longer one behind (`p99 5913 mss`)."""
    import io

    from dimee.predictions import tail as tail_module

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(tail_module.sys, "stdout", screen)
    tail = tail_module.Tail(context(InMemoryBroker(), Topics("tty")))
    lines = iter(["1 predictions | latency p99 5913 ms", "2 predictions | p99 591 ms"])
    monkeypatch.setattr(tail.stats, "line", lambda: next(lines))
    tail.show()
    tail.show(final=True)
    drawn = screen.getvalue().split(tail_module.CLEAR_LINE)
    assert drawn == ["", "1 predictions | latency p99 5913 ms", "2 predictions | p99 591 ms\n"]


def test_every_prediction_names_its_label_as_the_model_does(workdir, cal):
    """Issue 30 item 6: label_pred was a bare integer; the names lived only in the work folder."""
    from dimee.composition.pipeline import PipelineOptions, run_pipeline
    from dimee.model.spec import load_spec
    from dimee.streaming.config import Settings

    names = load_spec(workdir / "model").label_names
    settings = Settings(broker="memory://names", state="memory://names", topic_prefix="names")
    run = run_pipeline(stream_records(30, seed=5), deployment(workdir, cal), settings, PipelineOptions(progress=False))
    assert len(run.predictions) == 30
    assert all(p.label_name == names[p.label_pred] for p in run.predictions.values())


class SinkCommitAnswerLost(InMemoryBroker):
    """The sink's first transaction commits, but its answer never comes (Unanswered), as when the coordinator's
    broker dies right after writing the commit: seen in the failover test under load, where the in-process
    run then waited for predictions that were committed, and never reported, until its deadline."""

    lost = False

    def producer(self, transactional_id=None, replacing=None):
        from dimee.common.errors import Unanswered

        made = super().producer(transactional_id, replacing)
        if transactional_id is None or ".sink." not in f"{transactional_id}.":
            return made
        broker, commit = self, made.commit

        def commit_then_lose_the_answer(consumer, mark=None):
            commit(consumer, mark)
            if not broker.lost:
                broker.lost = True
                raise Unanswered("Kafka did not answer the transaction's commit in 20 s")

        made.commit = commit_then_lose_the_answer
        return made


def test_a_transaction_that_committed_without_an_answer_is_reported_committed(workdir, cal):
    broker, topics = SinkCommitAnswerLost(), Topics("lost-answer")
    store = InMemoryCentroidStore()
    store.seed(cal.centroid_arrays(), cal.pool_sizes)
    records, stop, collector = stream_records(60), StopFlag(), Collector(topics)
    ctx = context(broker, topics, stop=stop, limits=BatchLimits(max_batch=8, max_wait_s=0.0), events=collector)
    served = deployment(workdir, cal)
    sink = Sink(ctx, None)
    stages = [Router(ctx, served, store), *(TierWorker(ctx, served, t) for t in Tier), sink]
    threads = [_start(stage) for stage in stages]
    produce(broker, topics, records, ProduceOptions(progress=False))
    try:
        _wait(lambda: collector.finished(records, feedback=False))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert broker.lost and sorted(collector.predictions) == sorted(r["id"] for r in records)
    assert collector.duplicates == 0 and sink.processed == len(records)  # committed once, reported once
