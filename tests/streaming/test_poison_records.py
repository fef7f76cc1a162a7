"""A record that cannot be processed goes to the dead-letter topic with its reason and the stream goes on
(issue 8): tombstones, oversized or undecodable payloads, fields past their limits, a label the model
does not have, a corrupt hidden state, an output too large for the broker. Each case failed before: the
stage crashed on it, retried it for ever, or let it through."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from dimee.composition.pipeline import PipelineOptions, run_pipeline
from dimee.streaming.config import Settings
from dimee.streaming.messages import CostBreakdown, DeadLetter, Hop, Routed, parse
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.memory import shared_broker
from tests.support.helpers import deployment, stream_records


def _run(workdir, cal, name: str, records: list, **settings) -> tuple:
    config = Settings(broker=f"memory://{name}", state=f"memory://{name}", topic_prefix=name, **settings)
    run = run_pipeline(records, deployment(workdir, cal), config, PipelineOptions(progress=False, timeout_s=120))
    letters = [parse(DeadLetter, r.value) for r in shared_broker(f"memory://{name}").read_all(Topics(name).dead_letter)]
    return run, letters


def test_hostile_samples_are_dead_lettered_with_their_reasons(workdir, cal):
    good = stream_records(30, prefix="ok")
    binary = bytes(range(128, 256)) * 7200  # ~900 KB that is not UTF-8
    bad = [None, binary, {"id": "big-meta", "text": "fine", "meta": {"x": "y" * 20_000}},
           {"id": "nan", "text": "fine", "produced_at": float("nan")},
           {"id": "inf", "text": "fine", "produced_at": float("inf")},
           {"id": "label", "text": "fine", "label": 7}, {"id": "negative", "text": "fine", "label": -1}]
    run, letters = _run(workdir, cal, "hostile", good[:15] + bad + good[15:])
    assert sorted(run.predictions) == sorted(r["id"] for r in good)  # the stream went on
    assert len(letters) == len(bad)
    reasons = {letter.key: letter.error for letter in letters if letter.key}
    assert "meta has" in reasons["big-meta"] and "finite" in reasons["nan"] and "finite" in reasons["inf"]
    assert "not one of the model's 2 classes" in reasons["label"] and "greater than or equal" in reasons["negative"]
    assert any("tombstone" in letter.error for letter in letters)
    cut = next(letter for letter in letters if letter.payload_truncated)
    assert cut.payload_bytes == len(binary) and cut.payload_sha256 == hashlib.sha256(binary).hexdigest()
    assert len(cut.to_bytes()) < 100_000  # the dead letter itself fits the broker


def test_an_output_too_large_for_the_broker_dead_letters_its_input(workdir, cal):
    good = stream_records(20, prefix="ok")
    near_limit = {"id": "near", "text": "good movie " * 180}  # ~2 KB in, a bigger routed message out
    run, letters = _run(workdir, cal, "outsize", [*good, near_limit], max_message_bytes=2100, max_text_chars=5000)
    assert sorted(run.predictions) == sorted(r["id"] for r in good)
    assert [(letter.key, "exceeds the 2100-byte limit" in letter.error) for letter in letters] == [("near", True)]


@pytest.mark.parametrize(("hidden", "reason"), [
    ("not base64!", "hidden_fp16: .*not base64"),  # parse: no decoding needed to tell
    (base64.b64encode(b"\x00\x01\x02").decode(), "hidden_fp16: .*3 bytes, not a whole number of tokens"),
    ("@" * 86 + "==", "processing failed: .*base64"),  # the size of one token, not base64: the worker decodes it
])
def test_a_corrupt_hidden_state_is_dead_lettered_by_the_worker(workdir, cal, hidden, reason):
    from dimee.workers.tier_worker import TierWorker

    from dimee.streaming.stage import BatchLimits
    from dimee.streaming.transport.memory import InMemoryBroker
    from tests.support.helpers import context

    broker, topics = InMemoryBroker(), Topics("hidden")
    producer = broker.producer()
    plan = cal.plan
    samples = stream_records(6, prefix="h")
    for i, sample in enumerate(samples):
        corrupt = i == 2
        routed = Routed(**sample, tier=plan.tiers[1], pool=1, distances=[], centroid_version=0, router="r",
                        start_layer=plan.caps[0] if corrupt else 0, hidden_fp16=hidden if corrupt else None,
                        hops=[Hop(tier=plan.tiers[0], layers_run=plan.caps[0], cost=CostBreakdown(
                            processing=0, offload=0, cloud=0, total=0))] if corrupt else [])
        producer.send(topics.tier(plan.tiers[1].value), sample["id"].encode(), routed.to_bytes())
    worker = TierWorker(context(broker, topics, limits=BatchLimits(max_batch=8, max_wait_s=0.0)),
                        deployment(workdir, cal), plan.tiers[1])
    worker.run(idle_exit_s=0.5)
    answered = {parse(Routed, r.value).id for r in broker.read_all(topics.tier(plan.tiers[2].value))} | {
        r.key.decode() for r in broker.read_all(topics.predictions)}
    letters = [parse(DeadLetter, r.value) for r in broker.read_all(topics.dead_letter)]
    assert answered == {s["id"] for s in samples} - {"h-2"}
    assert [letter.key for letter in letters] == ["h-2"] and re.search(reason, letters[0].error)


def test_an_id_reused_for_other_content_is_dead_lettered_not_dropped(workdir, cal):
    good = stream_records(10, prefix="ok")
    replay = dict(good[3])  # the same sample again: a redelivery, dropped as a duplicate
    reused = {"id": good[5]["id"], "text": "a different sentence"}  # another sample under a used id
    run, letters = _run(workdir, cal, "reused", [*good, replay, reused])
    assert sorted(run.predictions) == sorted(r["id"] for r in good)
    assert [letter.key for letter in letters] == [good[5]["id"]] and "id reused" in letters[0].error
    assert letters[0].stage == "sink"


def test_message_times_never_make_a_record_the_broker_refuses(workdir, cal, monkeypatch):
    """Audit item 2: Kafka 4.x refuses a record timestamp more than an hour ahead of its clock, and the record's
    timestamp was the latest time the message carried: a sample from the year 3000 crash-looped the router.
    Absurd times are dead-lettered; a producer whose clock is 2 h fast is served, stamped with the stage's clock."""
    import time

    from dimee.streaming.transport import memory

    stamped: list[tuple[str, float | None]] = []
    send = memory._MemoryTransactionalProducer.send

    def recording(self, topic, key, value, *stamp_and_headers):
        stamped.append((topic, stamp_and_headers[0] if stamp_and_headers else None))
        send(self, topic, key, value, *stamp_and_headers)

    monkeypatch.setattr(memory._MemoryTransactionalProducer, "send", recording)
    good = stream_records(12, prefix="ok")
    ahead = [{**r, "id": f"ahead-{i}", "produced_at": time.time() + 2 * 3600} for i, r in enumerate(good[:4])]
    absurd = [{"id": "y3000", "text": "fine", "produced_at": 32_503_680_000.0},
              {"id": "huge", "text": "fine", "produced_at": 1e300},
              {"id": "negative", "text": "fine", "produced_at": -1.0}]
    run, letters = _run(workdir, cal, "clock", [*good, *ahead, *absurd])
    assert sorted(run.predictions) == sorted(r["id"] for r in [*good, *ahead])
    assert sorted(letter.key for letter in letters) == sorted(r["id"] for r in absurd)
    outputs = [t for topic, t in stamped if not topic.endswith("dead-letter")]
    earliest_ahead = min(r["produced_at"] for r in ahead)  # no output carries a time from the fast clock
    assert outputs and all(t is not None and t < earliest_ahead for t in outputs)


def _serve_routed(workdir, cal, tier_index: int, messages: list[tuple[bytes, Routed]], policy: str = "Cascade"):
    """One tier worker over the given routed records: the ids it answered or escalated, and its dead letters."""
    from dimee.workers.tier_worker import TierWorker

    from dimee.streaming.stage import BatchLimits
    from dimee.streaming.transport.memory import InMemoryBroker
    from tests.support.helpers import context

    broker, topics, plan = InMemoryBroker(), Topics("routed"), cal.plan
    producer = broker.producer()
    for key, routed in messages:
        producer.send(topics.tier(plan.tiers[tier_index].value), key, routed.to_bytes())
    worker = TierWorker(context(broker, topics, limits=BatchLimits(max_batch=8, max_wait_s=0.0)),
                        deployment(workdir, cal, policy), plan.tiers[tier_index])
    worker.run(idle_exit_s=0.5)
    onward = [topics.tier(t.value) for t in plan.tiers[tier_index + 1:]]
    served = {r.key.decode() for topic in [*onward, topics.predictions] for r in broker.read_all(topic)}
    letters = {letter.key: letter.error for letter in
               (parse(DeadLetter, r.value) for r in broker.read_all(topics.dead_letter))}
    return worker, served, letters


def _hidden(worker, text: str, tokens_more: int = 0, value: float = 0.0) -> str:
    """A carried hidden state for `text` as the tier below would send it (tokens_more: a wrong token count)."""
    import numpy as np

    from dimee.model.tokenize import encode

    tokens = int(encode(worker.tokenizer, [text], None, worker.model.spec.max_length)["attention_mask"].sum())
    state = np.full((tokens + tokens_more, worker.model.spec.hidden_size), value, dtype=np.float16)
    return base64.b64encode(state.tobytes()).decode()


def test_routed_messages_that_do_not_fit_the_tier_or_the_model_are_dead_lettered(workdir, cal):
    """Audit items 6 and 7: a routed message was served whatever it said (a start layer past the cap clamped,
    a missing or mis-sized hidden state padded with zeros, another tier's message answered as this tier's, an
    unknown pool, impossible hops), and a NaN hidden state was answered with `"confidence": null`."""
    from dimee.workers.tier_worker import TierWorker

    from dimee.method.routing_policy import get

    plan, samples = cal.plan, stream_records(15, prefix="r")
    edge, mobile_cap = plan.tiers[1], plan.caps[0]
    probe, _, _ = _serve_routed(workdir, cal, 1, [])  # for its tokenizer and model facts
    assert isinstance(probe, TierWorker)
    hop = Hop(tier=plan.tiers[0], layers_run=mobile_cap, cost=CostBreakdown(processing=0, offload=0, cloud=0, total=0))

    def routed(i: int, **fields) -> Routed:
        return Routed.model_construct(**{**Routed(**samples[i], tier=edge, pool=1, distances=[], centroid_version=0,
                                                  router="r", policy=get("Cascade")).__dict__, **fields})

    text = samples[1]["text"]
    good = [routed(0), routed(1, start_layer=mobile_cap, hidden_fp16=_hidden(probe, text), hops=[hop])]
    bad = {
        "r-2": (routed(2, tier=plan.tiers[2]), "tier: .*cloud.*edge"),
        "r-3": (routed(3, pool=len(plan)), "pool: .*3 pools"),
        "r-4": (routed(4, start_layer=plan.caps[1], hidden_fp16=_hidden(probe, samples[4]["text"]), hops=[hop]),
                "start_layer: .*below"),
        "r-5": (routed(5, start_layer=mobile_cap, hops=[hop]), "hidden_fp16"),
        "r-6": (routed(6, hidden_fp16=_hidden(probe, samples[6]["text"])), "hidden_fp16"),
        "r-7": (routed(7, start_layer=mobile_cap, hidden_fp16=_hidden(probe, samples[7]["text"])[:-8], hops=[hop]),
                "hidden_fp16: .*bytes"),
        "r-8": (routed(8, start_layer=mobile_cap, hidden_fp16=_hidden(probe, samples[8]["text"], 2), hops=[hop]),
                "processing failed: .*tokens"),
        "r-9": (routed(9, start_layer=mobile_cap, hidden_fp16=_hidden(probe, samples[9]["text"], value=float("nan")),
                       hops=[hop]), "processing failed: .*not finite"),
        "r-10": (routed(10, hops=[hop.model_copy(update={"tier": edge})]), "hops: .*lower tier"),
        "r-11": (routed(11, hops=[hop, hop]), "hops: .*lower tier"),
        "r-12": (routed(12, start_layer=-1), "start_layer"),
        "r-13": (routed(13, start_layer=mobile_cap - 1, hidden_fp16=_hidden(probe, samples[13]["text"]), hops=[hop]),
                 "start_layer: .*where its last hop \\(mobile\\) stopped"),
        "r-14": (routed(14, start_layer=mobile_cap, hidden_fp16=_hidden(probe, samples[14]["text"])), "no hop"),
    }
    messages = [(m.id.encode(), m) for m in [*good, *(m for m, _ in bad.values())]]
    _, served, letters = _serve_routed(workdir, cal, 1, messages)
    assert served == {m.id for m in good}
    assert set(letters) == set(bad)
    for key, (_, reason) in bad.items():
        assert re.search(reason, letters[key]), (key, letters[key])


def test_a_non_finite_result_dead_letters_its_input(workdir, cal, monkeypatch):
    """Audit item 6: a worker published `"confidence": null` for a NaN result; now its input is dead-lettered."""
    import torch

    from dimee.model.early_exit import EarlyExitEncoder

    early_exit = EarlyExitEncoder.early_exit

    def nan_confidence(self, *args, **kwargs):
        result = early_exit(self, *args, **kwargs)
        result.confidence = torch.full_like(result.confidence, float("nan"))
        return result

    monkeypatch.setattr(EarlyExitEncoder, "early_exit", nan_confidence)
    samples = stream_records(3, prefix="n")
    messages = [(s["id"].encode(), Routed(**s, tier=cal.plan.tiers[2], pool=2, distances=[],
                                          centroid_version=0, router="r")) for s in samples]
    _, served, letters = _serve_routed(workdir, cal, 2, messages)
    assert not served and set(letters) == {s["id"] for s in samples}
    assert all("confidence" in error and "finite" in error for error in letters.values())


def test_a_record_whose_key_names_another_id_is_dead_lettered_by_the_stage(workdir, cal):
    """The Kafka key routes a sample to its partition and downstream dedupe trusts the id: a record whose key
    says another id (e.g. duplicate JSON keys, the last one winning) is refused where it is read."""
    from dimee.routers.router import Router
    from dimee.state.memory import InMemoryCentroidStore

    from dimee.streaming.transport.memory import InMemoryBroker
    from tests.support.helpers import context

    broker, topics = InMemoryBroker(), Topics("keyed")
    store = InMemoryCentroidStore()
    store.seed(cal.centroid_arrays(), cal.pool_sizes)
    producer = broker.producer()
    producer.send(topics.samples, b"s-1", b'{"id": "s-2", "text": "the movie was fun"}')
    producer.send(topics.samples, b"s-3", b'{"id": "s-3", "text": "the movie was fun"}')
    Router(context(broker, topics), deployment(workdir, cal), store).run(idle_exit_s=1.0)
    letters = [parse(DeadLetter, r.value) for r in broker.read_all(topics.dead_letter)]
    assert [(letter.key, "s-2" in letter.error) for letter in letters] == [("s-1", True)]
    assert sum(len(broker.read_all(topics.tier(t.value))) for t in cal.plan.tiers) == 1


def test_a_sample_stamped_ahead_of_the_producer_host_gets_a_record_time_the_broker_accepts(monkeypatch):
    from dimee.producers import producer

    from dimee.streaming.transport.memory import InMemoryBroker

    class Stamps(InMemoryBroker):
        """Remembers the record time each sample is sent with (the embedded broker keeps none)."""

        def __init__(self) -> None:
            super().__init__()
            self.stamps: dict[bytes | None, float | None] = {}

        def producer(self, transactional_id=None, replacing=None):
            client, stamps = super().producer(transactional_id, replacing), self.stamps
            send = client.send

            def stamped(topic, key, value, timestamp_s=None, headers=()):
                stamps[key] = timestamp_s
                send(topic, key, value, timestamp_s, headers)

            client.send = stamped
            return client

    host_clock = 1_800_000_000.0  # a fixed clock: the test compares times, it never reads the real one
    monkeypatch.setattr(producer, "now", lambda: host_clock)
    broker = Stamps()
    samples = [{"id": "ahead", "text": "fun", "produced_at": host_clock + 7200},
               {"id": "behind", "text": "fun", "produced_at": host_clock - 5}]
    producer.produce(broker, Topics("stamps"), samples, producer.ProduceOptions(progress=False))
    assert broker.stamps[b"ahead"] == host_clock  # clamped to the host's clock, not two hours ahead
    assert broker.stamps[b"behind"] == host_clock - 5  # a time already behind the clock is kept


def test_an_audit_copy_that_is_not_one_is_dead_lettered(workdir, cal):
    """An audit copy runs the whole model on the last tier, for a lower tier's answer: one sent to another
    tier, carrying hops, or auditing the cloud's own answer is refused; a good one yields an audit, no answer."""
    from dimee.streaming.messages import AuditOf

    plan, samples = cal.plan, stream_records(4, prefix="a")
    cloud = plan.tiers[-1]
    check = AuditOf(tier=plan.tiers[0], label_pred=1, confidence=0.9, exit_layer=1)
    hop = Hop(tier=plan.tiers[0], layers_run=1, cost=CostBreakdown(processing=0, offload=0, cloud=0, total=0))

    def copy(i: int, tier=cloud, **fields) -> Routed:
        good = Routed(**samples[i], tier=tier, pool=0, distances=[], centroid_version=0, router="r", audit_of=check)
        return Routed.model_construct(**{**good.__dict__, **fields})

    _, served, letters = _serve_routed(workdir, cal, 1, [(b"a-0", copy(0, tier=plan.tiers[1]))])
    assert re.search("audit_of: .*the mobile answer on the edge worker", letters["a-0"]) and not served
    bad = {"a-1": copy(1, hops=[hop]), "a-2": copy(2, audit_of=check.model_copy(update={"tier": cloud}))}
    good = copy(3)
    messages = [(m.id.encode(), m) for m in [*bad.values(), good]]
    _, served, letters = _serve_routed(workdir, cal, 2, messages)
    assert set(letters) == set(bad) and not served  # the good copy is audited, never answered again
    assert re.search("no hops", letters["a-1"]) and re.search("lower tier", letters["a-2"])
