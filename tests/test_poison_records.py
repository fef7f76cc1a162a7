"""A record that cannot be processed goes to the dead-letter topic with its reason and the stream goes on
(issue 8): tombstones, oversized or undecodable payloads, fields past their limits, a label the model
does not have, a corrupt hidden state, an output too large for the broker. Each case failed before: the
stage crashed on it, retried it for ever, or let it through."""

from __future__ import annotations

import base64
import hashlib

import pytest

from dimee.config import Settings
from dimee.messages import DeadLetter, Routed, parse
from dimee.pipeline import PipelineOptions, run_pipeline
from dimee.transport.base import Topics
from dimee.transport.memory import shared_broker
from tests.helpers import deployment, stream_records


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


@pytest.mark.parametrize("hidden", ["not base64!", base64.b64encode(b"\x00\x01\x02").decode()])
def test_a_corrupt_hidden_state_is_dead_lettered_by_the_worker(workdir, cal, hidden):
    from dimee.stage import BatchLimits
    from dimee.transport.memory import InMemoryBroker
    from tests.helpers import context
    from workers.tier_worker import TierWorker

    broker, topics = InMemoryBroker(), Topics("hidden")
    producer = broker.producer()
    plan = cal.tier_plan()
    samples = stream_records(6, prefix="h")
    for i, sample in enumerate(samples):
        corrupt = i == 2
        routed = Routed(**sample, tier=plan.tiers[1], pool=1, distances=[], centroid_version=0, router="r",
                        start_layer=plan.caps[0] if corrupt else 0, hidden_fp16=hidden if corrupt else None)
        producer.send(topics.tier(plan.tiers[1].value), sample["id"].encode(), routed.to_bytes())
    worker = TierWorker(context(broker, topics, limits=BatchLimits(max_batch=8, max_wait_s=0.0)),
                        deployment(workdir, cal), plan.tiers[1])
    worker.run(idle_exit_s=0.5)
    answered = {parse(Routed, r.value).id for r in broker.read_all(topics.tier(plan.tiers[2].value))} | {
        r.key.decode() for r in broker.read_all(topics.predictions)}
    letters = [parse(DeadLetter, r.value) for r in broker.read_all(topics.dead_letter)]
    assert answered == {s["id"] for s in samples} - {"h-2"}
    assert [letter.key for letter in letters] == ["h-2"] and "processing failed" in letters[0].error


def test_an_id_reused_for_other_content_is_dead_lettered_not_dropped(workdir, cal):
    good = stream_records(10, prefix="ok")
    replay = dict(good[3])  # the same sample again: a redelivery, dropped as a duplicate
    reused = {"id": good[5]["id"], "text": "a different sentence"}  # another sample under a used id
    run, letters = _run(workdir, cal, "reused", [*good, replay, reused])
    assert sorted(run.predictions) == sorted(r["id"] for r in good)
    assert [letter.key for letter in letters] == [good[5]["id"]] and "id reused" in letters[0].error
    assert letters[0].stage == "sink"
