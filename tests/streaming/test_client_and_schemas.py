"""Consuming predictions: the typed client (deduplicated, committed offsets) and the JSON Schemas of every
message, checked with a real JSON Schema validator against messages the roles write."""

from __future__ import annotations

import json

import jsonschema
import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from dimee.cli import app
from dimee.streaming.client import Predictions, UnsupportedVersion
from dimee.streaming.messages import (
    SCHEMAS,
    CostBreakdown,
    DeadLetter,
    MessageError,
    Prediction,
    Routed,
    Sample,
    Timings,
    parse,
)
from dimee.streaming.schemas import json_schemas
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


def _send(broker_url: str, prefix: str, *values: tuple[str, bytes]) -> None:
    broker = shared_broker(broker_url)
    topic = Topics(prefix).predictions
    broker.ensure_topics([topic], partitions=1)
    producer = broker.producer()
    for key, value in values:
        producer.send(topic, key.encode(), value)
    producer.flush()


def _ids(url: str, prefix: str) -> list[str]:
    """What a new member of the group reads (and leaves uncommitted)."""
    stream = Predictions(url, group="app", topic_prefix=prefix)
    try:
        return [p.id for p in stream.poll(timeout_s=0.2)]
    finally:
        stream.close(commit=False)


def test_a_batch_the_caller_did_not_finish_is_read_again():
    """At least once: a caller that crashes between a poll and the next one reads the batch again (the client
    used to commit it inside poll, so it was lost)."""
    url, prefix = "memory://client-crash", "crash"
    _send(url, prefix, *((i, _prediction(i).to_bytes()) for i in ("a", "b")))
    with pytest.raises(RuntimeError), Predictions(url, group="app", topic_prefix=prefix) as stream:
        assert [p.id for p in stream.poll(timeout_s=0.5)] == ["a", "b"]
        raise RuntimeError("the application crashes while handling the batch")
    assert _ids(url, prefix) == ["a", "b"]


def test_the_next_poll_or_commit_commits_the_batch_before():
    url, prefix = "memory://client-commit", "commit"
    _send(url, prefix, ("a", _prediction("a").to_bytes()))
    with pytest.raises(RuntimeError), Predictions(url, group="app", topic_prefix=prefix) as stream:
        assert [p.id for p in stream.poll(timeout_s=0.5)] == ["a"]
        _send(url, prefix, ("b", _prediction("b").to_bytes()))
        assert [p.id for p in stream.poll(timeout_s=0.5)] == ["b"]  # says "a" is done
        raise RuntimeError("crash while handling b")
    assert _ids(url, prefix) == ["b"]
    with pytest.raises(RuntimeError), Predictions(url, group="app", topic_prefix=prefix) as stream:
        assert [p.id for p in stream.poll(timeout_s=0.5)] == ["b"]
        stream.commit()
        raise RuntimeError("crash after committing b")
    assert _ids(url, prefix) == []


def test_a_loop_broken_mid_batch_leaves_the_rest_to_be_read_again():
    url, prefix = "memory://client-loop", "loop"
    _send(url, prefix, *((i, _prediction(i).to_bytes()) for i in ("a", "b", "c")))
    with Predictions(url, group="app", topic_prefix=prefix) as stream:
        for prediction in stream:
            assert prediction.id == "a"
            break
    assert {"b", "c"} <= set(_ids(url, prefix))  # never handed out: not committed


def test_a_prediction_with_an_added_optional_field_validates_and_is_read(tmp_path):
    """A field added within version 1 is compatible: the shipped schema takes it and the client reads the
    prediction, keeping the field (both used to refuse it, the client silently)."""
    assert CliRunner().invoke(app, ["schema", "--out", str(tmp_path)]).exit_code == 0
    newer = {**json.loads(_prediction("a").to_bytes()), "queue_ms": 7}
    jsonschema.validate(newer, json.loads((tmp_path / "prediction.schema.json").read_text()))
    url, prefix = "memory://client-newer", "newer"
    _send(url, prefix, ("a", json.dumps(newer).encode()))
    with Predictions(url, group="app", topic_prefix=prefix) as stream:
        [read] = stream.poll(timeout_s=0.5)
        assert read.id == "a" and read.model_extra == {"queue_ms": 7} and stream.unreadable == 0
    with pytest.raises(MessageError):  # the pipeline's own stages stay strict about what they take
        parse(Prediction, json.dumps(newer).encode())
    with pytest.raises(jsonschema.ValidationError):  # and so does the schema of what they take
        jsonschema.validate({**json.loads(Sample(id="a", text="t").to_bytes()), "queue_ms": 7},
                            json.loads((tmp_path / "sample.schema.json").read_text()))


def test_a_prediction_of_a_later_version_is_refused_loudly_after_those_before_it():
    url, prefix = "memory://client-v2", "v2"
    later = {**json.loads(_prediction("b").to_bytes()), "v": 2, "renamed": True}
    _send(url, prefix, ("a", _prediction("a").to_bytes()), ("b", json.dumps(later).encode()),
          ("c", _prediction("c").to_bytes()))
    with Predictions(url, group="app", topic_prefix=prefix) as stream:
        assert [p.id for p in stream.poll(timeout_s=0.5)] == ["a"]
        with capture_logs() as said, pytest.raises(UnsupportedVersion) as refused:
            stream.poll(timeout_s=0.5)
        assert (refused.value.version, refused.value.offset) == (2, 1) and "version 2" in str(refused.value)
        assert [(e["log_level"], e["version"], e["offset"]) for e in said] == [("error", 2, 1)]
        assert stream.unsupported == 1 and stream.unreadable == 0
        assert [p.id for p in stream.poll(timeout_s=0.5)] == ["c"]  # caught: the caller goes on past it


def test_a_record_that_is_not_a_prediction_is_logged():
    url, prefix = "memory://client-junk", "junk"
    _send(url, prefix, ("x", b"not a prediction"))
    with Predictions(url, group="app", topic_prefix=prefix) as stream, capture_logs() as said:
        assert stream.poll(timeout_s=0.5) == [] and stream.unreadable == 1
    assert [(e["log_level"], e["offset"]) for e in said] == [("error", 0)]


def test_every_schema_has_an_id_a_dialect_and_every_field_described():
    schemas = json_schemas()
    assert len({s["$id"] for s in schemas.values()}) == len(schemas)
    for name, schema in schemas.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        for owner, node in [(name, schema), *schema.get("$defs", {}).items()]:
            assert node.get("description"), f"{name}: {owner} is not described"
            undescribed = [f for f, spec in node.get("properties", {}).items() if not spec.get("description")]
            assert not undescribed, f"{name}: {owner}'s fields {undescribed} are not described"


def test_the_client_connects_as_the_roles_do_with_tls_and_sasl(monkeypatch):
    """Issue 30 item 2: the client could not reach a secured cluster (no TLS/SASL)."""
    import dimee.streaming.client as client
    from dimee.streaming.config import Settings

    seen: dict = {}
    real = client.open_transport

    def opened(url, api_version=None, client_id="dimee", security=None):
        seen.update(url=url, api_version=api_version, security=security)
        return real("memory://secured")  # the embedded broker stands in for the secured cluster

    monkeypatch.setattr(client, "open_transport", opened)
    settings = Settings(broker="kafka://broker:9093", topic_prefix="secure", kafka_api_version="3.7",
                        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                        kafka_sasl_username="app", kafka_sasl_password="secret", kafka_ssl_cafile="/etc/ca.pem")
    with client.Predictions.from_settings("app", settings) as stream:
        assert stream.poll(timeout_s=0.1) == []
    assert seen["url"] == "kafka://broker:9093" and seen["api_version"] == (3, 7)
    assert seen["security"] == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                                "sasl_plain_username": "app", "sasl_plain_password": "secret",
                                "ssl_cafile": "/etc/ca.pem"}
