"""Consuming predictions: the typed client (deduplicated, committed offsets) and the JSON Schemas of every
message, checked with a real JSON Schema validator against messages the roles write."""

from __future__ import annotations

import json

import jsonschema
from typer.testing import CliRunner

from dimee.cli import app
from dimee.streaming.client import Predictions
from dimee.streaming.messages import SCHEMAS, CostBreakdown, DeadLetter, Prediction, Routed, Sample, Timings
from dimee.streaming.transport.base import Record, Topics
from dimee.streaming.transport.memory import shared_broker


def _prediction(sample_id: str, label_pred: int = 1) -> Prediction:
    return Prediction(id=sample_id, tier="edge", label_pred=label_pred, confidence=0.9, exit_layer=3, layers_run=3,
                      cost=CostBreakdown(processing=0.15, offload=0.2, cloud=0.0, total=0.35), model="m:edge:1-4",
                      timings=Timings(produced_at=1.0, routed_at=2.0, started_at=3.0, finished_at=4.0), worker="w",
                      path=["edge"], label=1, correct=True)


def test_schemas_describe_what_the_roles_write(tmp_path):
    result = CliRunner().invoke(app, ["schema", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.schema.json" for n in SCHEMAS)
    sample = Sample(id="a", text="fine", label=1)
    written = {
        "sample": sample,
        "routed": Routed(**sample.model_dump(), tier="mobile", pool=0, distances=[0.1, None, 2.0], router="r",
                         centroid_version=1),
        "prediction": _prediction("a"),
        "dead-letter": DeadLetter.for_record("router", Record("t", 0, 5, b"k", b"{bad"), "invalid JSON"),
    }
    for name, message in written.items():
        schema = json.loads((tmp_path / f"{name}.schema.json").read_text())
        jsonschema.validate(json.loads(message.to_bytes()), schema)
    schema = json.loads((tmp_path / "prediction.schema.json").read_text())
    bad = {**json.loads(_prediction("a").to_bytes()), "tier": "moon"}
    try:
        jsonschema.validate(bad, schema)
        raise AssertionError("a prediction on an unknown tier passed its schema")
    except jsonschema.ValidationError:
        pass


def test_the_client_yields_each_prediction_once():
    broker = shared_broker("memory://client")
    topics = Topics("client")
    broker.ensure_topics([topics.predictions], partitions=1)
    producer = broker.producer()
    for sample_id in ("a", "b", "a", "c"):  # "a" redelivered
        producer.send(topics.predictions, sample_id.encode(), _prediction(sample_id).to_bytes())
    producer.send(topics.predictions, b"x", b"not a prediction")
    producer.flush()
    with Predictions("memory://client", group="app", topic_prefix="client") as stream:
        got = stream.poll(timeout_s=0.5)
        assert [p.id for p in got] == ["a", "b", "c"] and stream.skipped == 1 and stream.unreadable == 1
        assert all(isinstance(p, Prediction) for p in got)
    with Predictions("memory://client", group="app", topic_prefix="client") as again:  # offsets were committed
        assert again.poll(timeout_s=0.2) == []


def test_a_rebalance_between_the_clients_poll_and_its_commit_hands_out_the_predictions_and_goes_on():
    """The group moving on refuses the commit (the records are read again, and skipped as seen); the caller's loop
    is not ended by it."""
    broker = shared_broker("memory://client-rebalance")
    topics = Topics("rebalance")
    broker.ensure_topics([topics.predictions], partitions=1)
    producer = broker.producer()
    for sample_id in ("a", "b"):
        producer.send(topics.predictions, sample_id.encode(), _prediction(sample_id).to_bytes())
    with Predictions("memory://client-rebalance", group="app", topic_prefix="rebalance") as stream:
        plain_poll = stream.consumer.poll

        def poll_then_a_member_joins(max_records, timeout_s):
            records = plain_poll(max_records, timeout_s)
            broker.consumer([topics.predictions], "app")
            return records

        stream.consumer.poll = poll_then_a_member_joins
        assert [p.id for p in stream.poll(timeout_s=0.5)] == ["a", "b"]
        stream.consumer.poll = plain_poll
        assert stream.poll(timeout_s=0.2) == [] and stream.skipped == 2  # read again, each id handed out once
